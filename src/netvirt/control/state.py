"""What the controller and the agents keep in the store: the key layout and the records.

Contract (keys; values are JSON):
- ``/netvirt/spec``             the applied spec (``{"spec": <spec as data>}``), written by the controller;
- ``/netvirt/desired/<host>``   the host's desired ``HostGraph``, written by the controller;
- ``/netvirt/realized/<host>``  the ``HostGraph`` the host's backend read back, written by its agent;
- ``/netvirt/status/<host>``    the agent's ``AgentStatus``, written by its agent.
The controller publishes the spec and every changed desired graph in one transaction, and writes a
host's desired key only when its graph changed: a key's ``mod_revision`` is the host's desired
revision, which moves only when that host has something new to do.
"""

import json
from dataclasses import asdict, dataclass
from enum import StrEnum

SPEC_KEY = "/netvirt/spec"
DESIRED = "/netvirt/desired/"
REALIZED = "/netvirt/realized/"
STATUS = "/netvirt/status/"


def desired_key(host: str) -> str:
    return DESIRED + host


def realized_key(host: str) -> str:
    return REALIZED + host


def status_key(host: str) -> str:
    return STATUS + host


def host_of(key: str) -> str:
    """The host a per-host key belongs to (``/netvirt/desired/h1`` -> ``h1``)."""
    return key.rsplit("/", 1)[1]


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
