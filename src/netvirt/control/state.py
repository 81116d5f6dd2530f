"""What the controller and the agents keep in the store: the key layout and the records.

Contract (keys; values are JSON unless said otherwise):
- ``/netvirt/blobs/<hash>/<n>``  large values, content-addressed (SHA-256), in chunks of at most
                                 ``CHUNK`` bytes: the spec and every desired ``HostGraph``;
- ``/netvirt/spec``              the applied spec: a pointer ``{"blob", "size"}`` to its data;
- ``/netvirt/desired/<host>``    the host's published desired graph: a pointer to its blob;
- ``/netvirt/realized/<host>``   the ``HostGraph`` the host's backend read back, by its agent;
- ``/netvirt/status/<host>``     the agent's ``AgentStatus``, by its agent.
Blobs are written first, in as many transactions as their size needs (etcd refuses requests over
1.5 MiB by default), and nobody looks at them until a pointer names them. Publishing a spec version
is then ONE small transaction: the spec pointer and the desired pointer of every host whose graph
changed. A desired key's ``mod_revision`` is the host's desired revision: it moves only when that
host has something new to do.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from netvirt.control.store import Put, Store

SPEC_KEY = "/netvirt/spec"
BLOBS = "/netvirt/blobs/"
DESIRED = "/netvirt/desired/"
REALIZED = "/netvirt/realized/"
STATUS = "/netvirt/status/"
CHUNK = 512 * 1024


def desired_key(host: str) -> str:
    return DESIRED + host


def realized_key(host: str) -> str:
    return REALIZED + host


def status_key(host: str) -> str:
    return STATUS + host


def host_of(key: str) -> str:
    """The host a per-host key belongs to (``/netvirt/desired/h1`` -> ``h1``)."""
    return key.rsplit("/", 1)[1]


@dataclass(frozen=True, slots=True)
class Blob:
    """A large value by content: ``id`` (SHA-256, hex) and ``size`` in bytes."""

    id: str
    size: int

    @classmethod
    def of(cls, value: bytes) -> "Blob":
        return cls(hashlib.sha256(value).hexdigest(), len(value))

    @property
    def prefix(self) -> str:
        return f"{BLOBS}{self.id}/"

    def puts(self, value: bytes) -> list[Put]:
        """The writes that store ``value`` (whose blob this is), one per chunk."""
        return [Put(f"{self.prefix}{n:06d}", value[at : at + CHUNK]) for n, at in enumerate(range(0, max(len(value), 1), CHUNK))]

    def pointer(self) -> bytes:
        """The value of a key that names this blob."""
        return json.dumps({"blob": self.id, "size": self.size}).encode()

    @classmethod
    def pointed(cls, value: bytes) -> "Blob":
        """The blob a pointer names; ValueError if ``value`` is not a pointer."""
        try:
            data = json.loads(value)
            blob = cls(data["blob"], data["size"])
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"not a blob pointer: {value[:80]!r}") from None
        if not isinstance(blob.id, str) or len(blob.id) != 64 or not isinstance(blob.size, int):
            raise ValueError(f"not a blob pointer: {value[:80]!r}")
        return blob

    def read(self, store: Store) -> bytes | None:
        """The value, or None when it is not (or no longer) stored whole."""
        value = b"".join(entry.value for entry in store.list(self.prefix).entries)
        return value if Blob.of(value) == self else None


class AgentState(StrEnum):
    CONVERGED = "converged"
    """The backend realizes the desired graph of ``desired_revision``."""
    FAILED = "failed"
    """The desired graph could not be realized (``errors`` says why); the last good state is kept."""
    IDLE = "idle"
    """Nothing is desired for this host; the backend holds nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    """An agent's report. Revisions are the desired key's ``mod_revision`` (0: none)."""

    host: str
    backend: str
    state: AgentState
    desired_revision: int
    realized_revision: int
    errors: tuple[str, ...] = ()
    agent: str = ""
    """Who reports: ``pid@machine``."""
    since: float = 0.0
    """Unix time the report last changed (other than this field)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "AgentStatus":
        fields = json.loads(data)
        fields["state"] = AgentState(fields["state"])
        fields["errors"] = tuple(fields["errors"])
        return cls(**fields)

    def same_report(self, other: "AgentStatus | None") -> bool:
        """Equal but for ``since``."""
        return other is not None and asdict(self) | {"since": 0} == asdict(other) | {"since": 0}
