"""What the controller and the agents keep in the store: the key layout, blob trees and the records.

Contract (keys; values are JSON unless said otherwise):
- ``/netvirt/blobs/<hash>/<n>``   blobs, content-addressed (SHA-256), in chunks of at most ``CHUNK``
                                  bytes: the trees of the spec and of every desired ``HostGraph``;
- ``/netvirt/spec``               the applied spec: a pointer ``{"blob", "size"}`` to its tree;
- ``/netvirt/desired/<host>``     the host's published desired graph: a pointer to its tree;
- ``/netvirt/sweep``              advanced by every transaction that deletes blobs (see below);
- ``/netvirt/realized/<host>``    a pointer to the tree of the ``HostGraph`` the host's backend read
                                  back, by its agent, whose blobs live in ``/netvirt/realized-blobs/<host>/``;
- ``/netvirt/status/<host>``      the agent's ``AgentStatus``, written when the report changes;
- ``/netvirt/heartbeat/<host>``   the agent's ``Heartbeat``, refreshed every few seconds.

A *tree* stores a large JSON text as blobs naming other blobs: in a blob's value, ``REF`` (a NUL
byte, which JSON text never holds) followed by 64 hex digits stands for the whole assembled value
of that blob. ``TreeWriter`` cuts a graph's ``to_json`` text so that each namespace and device is
its own blob, and every list longer than ``SPLIT`` items is cut into chunks at content-defined
places (like git trees and restic chunks): equal pieces on many hosts are one blob, stored once,
and one more item changes one chunk. Blobs are written first, in as many transactions as their
size needs (etcd refuses requests over 1.5 MiB by default), and nobody looks at them until a
pointer names them. Publishing a spec version is then ONE small transaction: the spec pointer and
the desired pointer of every host whose graph changed, guarded by the spec's and ``/netvirt/sweep``'s
revisions — so a publish that relied on blobs being there fails (and is retried) if a sweep ran
meanwhile, and a sweep, guarded by the spec revision it kept blobs for, fails if a newer version
was published meanwhile. A desired key's ``mod_revision`` is the host's desired revision: it moves
only when that host has something new to do.
"""

import dataclasses
import functools
import hashlib
import json
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from itertools import chain
from typing import Any

from netvirt.control.store import Operation, Put, Store
from netvirt.graph import Chunks, Device, Namespace
from netvirt.graph.codec import members, to_data
from netvirt.management.spec import Spec, as_data, item_data

SPEC_KEY = "/netvirt/spec"
BLOBS = "/netvirt/blobs/"
DESIRED = "/netvirt/desired/"
SWEEP_KEY = "/netvirt/sweep"
REALIZED = "/netvirt/realized/"
STATUS = "/netvirt/status/"
HEARTBEAT = "/netvirt/heartbeat/"
CHUNK = 512 * 1024
BATCH_BYTES = 1024 * 1024  # per transaction: below etcd's default request limit (1.5 MiB)
BATCH_OPERATIONS = 64  # per transaction: below etcd's default --max-txn-ops (128)
REF = b"\0"
SPLIT = 64
"""A list with more items than this is cut into chunks (of chunks, ...) until each list has at most this many."""
AVERAGE = 32
"""Chunks end after an item whose CRC-32 is a multiple of this (so about this many items), or at 4x."""


def desired_key(host: str) -> str:
    return DESIRED + host


def realized_key(host: str) -> str:
    return REALIZED + host


def realized_blobs(host: str) -> str:
    """Where the blobs of ``host``'s realized tree live (its agent's own space)."""
    return f"/netvirt/realized-blobs/{host}/"


def status_key(host: str) -> str:
    return STATUS + host


def heartbeat_key(host: str) -> str:
    return HEARTBEAT + host


def host_of(key: str) -> str:
    """The host a per-host key belongs to (``/netvirt/desired/h1`` -> ``h1``)."""
    return key.rsplit("/", 1)[1]


@dataclass(frozen=True, slots=True)
class Blob:
    """A value by content: ``id`` (SHA-256, hex) and ``size`` in bytes."""

    id: str
    size: int

    @classmethod
    def of(cls, value: bytes) -> "Blob":
        return cls(hashlib.sha256(value).hexdigest(), len(value))

    def keys(self, space: str = BLOBS) -> list[str]:
        """The keys of its chunks in ``space``."""
        return [f"{space}{self.id}/{n:06d}" for n in range(max(1, -(-self.size // CHUNK)))]

    def puts(self, value: bytes, space: str = BLOBS) -> list[Put]:
        """The writes that store ``value`` (whose blob this is), one per chunk."""
        return [Put(key, value[n * CHUNK : (n + 1) * CHUNK]) for n, key in enumerate(self.keys(space))]

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

    def read(self, store: Store, space: str = BLOBS) -> bytes | None:
        """Its own value (references not followed), or None when it is not (or no longer) stored whole."""
        return _fetch_all(store, space, [self.id])[0]


def _fetch_all(store: Store, space: str, blobs: list[str]) -> list[bytes | None]:
    """The values of ``blobs`` (None for one not stored whole), read with ``Store.lists``."""
    found = []
    for blob, listing in zip(blobs, store.lists([f"{space}{blob}/" for blob in blobs])):
        value = b"".join(entry.value for entry in listing.entries)
        found.append(value if hashlib.sha256(value).hexdigest() == blob else None)
    return found


def children(value: bytes) -> list[str]:
    """The ids of the blobs a blob's value refers to, in order (repeats kept)."""
    return [part[:64].decode() for part in value.split(REF)[1:]]


def assemble(root: str, values: Mapping[str, bytes]) -> bytes:
    """The whole value of the tree rooted at blob ``root``, from ``values`` (every blob of it, by id)."""
    done: dict[str, bytes] = {}

    def whole(blob: str) -> bytes:
        if blob not in done:
            first, *rest = values[blob].split(REF)
            done[blob] = first + b"".join(whole(part[:64].decode()) + part[64:] for part in rest)
        return done[blob]

    return whole(root)


def read_tree(store: Store, root: Blob, space: str = BLOBS, cache: dict[str, bytes] | None = None) -> bytes | None:
    """The whole value of the tree rooted at ``root``, or None when a blob of it is missing (swept:
    a newer version replaced it). ``cache`` (blob id -> value; blobs never change) saves reading
    blobs again; it is left holding exactly this tree's blobs."""
    known = cache if cache is not None else {}
    values: dict[str, bytes] = {}
    level = [root.id]
    while level:  # one round trip per level of the tree for the blobs not in the cache
        missing = [blob for blob in level if blob not in known]
        fetched = dict(zip(missing, _fetch_all(store, space, missing))) if missing else {}
        for blob in level:
            value = known[blob] if blob in known else fetched[blob]
            if value is None:
                return None
            values[blob] = value
        level = list(dict.fromkeys(child for blob in level for child in children(values[blob]) if child not in values))
    if cache is not None:
        cache.clear()
        cache.update(values)
    whole = assemble(root.id, values)
    return whole if len(values[root.id]) == root.size else None


def write_blobs(store: Store, blobs: Iterable[tuple[Blob, bytes]], space: str = BLOBS) -> None:
    """Store ``blobs`` in transactions of at most ``BATCH_BYTES`` and ``BATCH_OPERATIONS``."""
    batch: list[Operation] = []
    size = 0
    for put in (put for blob, value in blobs for put in blob.puts(value, space)):
        if batch and (size + len(put.value) > BATCH_BYTES or len(batch) == BATCH_OPERATIONS):
            store.txn(batch)
            batch, size = [], 0
        batch.append(put)
        size += len(put.value)
    if batch:
        store.txn(batch)


def stored_blobs(store: Store, space: str = BLOBS) -> dict[str, list[str]]:
    """Every blob stored in ``space`` and the keys of its chunks (keys only are read)."""
    chunks: dict[str, list[str]] = {}
    for entry in store.list(space, keys_only=True).entries:
        chunks.setdefault(entry.key.removeprefix(space).split("/")[0], []).append(entry.key)
    return chunks


PIECES = (Namespace, Device)
"""Graph objects stored as blobs of their own."""
SEQUENCES = (tuple, Chunks)
"""What graph objects hold lists in (encoded as JSON lists)."""


class TreeWriter:
    """Cuts JSON texts into trees of blobs (module docstring): ``graph(obj)`` for a graph object (its
    ``to_json`` text), ``data(value)`` for JSON data (``json.dumps(value, sort_keys=True)``).

    ``blobs`` holds every blob made (id -> value). A graph object is encoded once per writer: its
    text is remembered by identity, so graphs that share objects (the compiler shares them between
    hosts) cost one encoding. ``known`` (a previous writer's ``literals()``) saves encoding long
    lists' items again. Remembered objects are kept alive, so their identities stay valid."""

    def __init__(self, known: Mapping[int, tuple[object, bytes]] | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self._memo: dict[int, tuple[object, bytes]] = {}
        self._literals: dict[int, tuple[object, bytes]] = {}  # the memo's texts that name no blob
        self._known = known or {}

    def literals(self) -> dict[int, tuple[object, bytes]]:
        """The remembered texts of long lists' items and spec items: they name no blob, so never go stale."""
        return self._literals

    def reuse(self, pieces: Sequence[object], references: Sequence[bytes]) -> None:
        """Take each of ``references`` (``references(graph)`` of a graph written before, its blobs
        stored) as the text of the piece at its position instead of encoding the piece again."""
        self._memo.update(zip(map(id, pieces), zip(pieces, references)))

    def references(self, graph: Any) -> tuple[bytes, ...]:
        """The texts of ``graph``'s pieces (its namespaces, then its devices: each REF and its blob
        id), once ``graph`` was written."""
        memo = self._memo
        return tuple(memo[id(piece)][1] for piece in chain(graph.namespaces, graph.devices))

    def _remember(self, remembered: tuple[object, bytes]) -> None:
        """Remember (value, text) of a shared value: a piece's reference, a list item's or a spec item's text."""
        self._memo[id(remembered[0])] = remembered
        if REF not in remembered[1]:
            self._literals[id(remembered[0])] = remembered

    def graph(self, obj: object) -> Blob:
        """The root blob of the tree of ``to_json(obj)``."""
        return self._root(self._fragment(obj))

    def data(self, value: Any) -> Blob:
        """The root blob of the tree of ``json.dumps(value, sort_keys=True)``."""
        return self._root(self._data(value))

    def spec(self, spec: Spec) -> Blob:
        """``data(as_data(spec))``, each item of the spec's lists encoded once: its text is
        remembered by identity, as a long list's items are (spec versions share unchanged items)."""
        return self.data(as_data(spec, self._item))

    def _item(self, item: object) -> "_Text":
        remembered = self._memo.get(id(item)) or self._known.get(id(item))
        if remembered is None:
            remembered = (item, _Text(json.dumps(item_data(item), sort_keys=True).encode()))  # type: ignore[arg-type]
        self._remember(remembered)
        return remembered[1]  # type: ignore[return-value]

    def _root(self, text: bytes) -> Blob:
        blob = Blob.of(text)
        self.blobs[blob.id] = text
        return blob

    def _ref(self, text: bytes) -> bytes:
        blob = hashlib.sha256(text).hexdigest()
        self.blobs[blob] = text
        return REF + blob.encode()

    def _fragment(self, value: Any, shared: bool = False) -> bytes:
        """The text of ``value``; ``shared``: remember it (an item of a long list, e.g. an FDB entry
        or a neighbour: the same object on many hosts)."""
        remembered = self._memo.get(id(value))
        if remembered is not None:
            return remembered[1]
        if shared and (remembered := self._known.get(id(value))) is not None:
            self._remember(remembered)
            return remembered[1]
        if isinstance(value, SEQUENCES):
            long = len(value) > SPLIT
            text = self._list([self._fragment(item, long) for item in value])
            if long:  # e.g. an FDB that many hosts' tunnels share: cut and hashed once
                self._memo[id(value)] = (value, text)
            return text
        if _is_dataclass(value.__class__):
            fields = members(value)
            if any(_cut(item) for _, item in fields):
                text = b"{" + b", ".join(json.dumps(name).encode() + b": " + self._member(item) for name, item in fields) + b"}"
            else:
                text = json.dumps(to_data(value)).encode()
            if isinstance(value, PIECES):
                text, shared = self._ref(text), True
        else:
            text = json.dumps(to_data(value)).encode()
        if shared:
            self._remember((value, text))
        return text

    def _member(self, item: Any) -> bytes:
        return self._fragment(item) if _cut(item) else json.dumps(to_data(item)).encode()

    def _data(self, value: Any) -> bytes:
        if isinstance(value, dict):
            return b"{" + b", ".join(json.dumps(key).encode() + b": " + self._data(value[key]) for key in sorted(value)) + b"}"
        if isinstance(value, list):
            return self._list([item if isinstance(item, _Text) else json.dumps(item, sort_keys=True).encode() for item in value])
        return json.dumps(value).encode()

    def _list(self, parts: list[bytes]) -> bytes:
        while len(parts) > SPLIT:
            parts = [self._ref(b", ".join(chunk)) for chunk in _chunks(parts)]
        return b"[" + b", ".join(parts) + b"]"


class _Text(bytes):
    """JSON text already encoded (a spec item's, from ``TreeWriter._item``)."""


@functools.cache
def _is_dataclass(cls: type) -> bool:
    return dataclasses.is_dataclass(cls)


def _long(value: Any) -> bool:
    """A tuple cut into blobs of its own: long, or holding pieces."""
    return isinstance(value, SEQUENCES) and (len(value) > SPLIT or (bool(value) and isinstance(value[0], PIECES)))


def _cut(value: Any) -> bool:
    """Whether the text of ``value`` has blobs of its own: a long list, pieces, or a graph object
    with a member that does (one level down: a device's tunnel or bridge config and its FDB)."""
    if isinstance(value, SEQUENCES):
        return _long(value)
    return _is_dataclass(value.__class__) and any(_long(item) for _, item in members(value))


def _chunks(parts: list[bytes]) -> Iterable[list[bytes]]:
    """``parts`` cut after each part whose CRC-32 is a multiple of ``AVERAGE`` (at least 2 parts a
    chunk, at most 4 x ``AVERAGE``): where the cuts fall depends on the parts, not their positions."""
    start, most = 0, 4 * AVERAGE
    for end in [at + 1 for at, crc in enumerate(map(zlib.crc32, parts)) if crc % AVERAGE == 0] + [len(parts)]:
        while end - start > most:
            yield parts[start : start + most]
            start += most
        if end - start >= 2 or end - start == 1 and end == len(parts):
            yield parts[start:end]
            start = end


class Live:
    """The blobs that published trees use, by reference count (a root pointer or a reference
    inside a live blob's value counts one). ``add`` a root with the new blobs it may need, then
    ``drop`` the root it replaces; ``dropped`` collects the blobs that fell out of use."""

    def __init__(self) -> None:
        self._count: dict[str, int] = {}
        self._blobs: dict[str, tuple[int, list[str]]] = {}  # live blob -> (size, children)
        self.dropped: list[Blob] = []

    def __contains__(self, blob: str) -> bool:
        return blob in self._count

    def add(self, root: str, new: Mapping[str, bytes]) -> list[tuple[Blob, bytes]]:
        """Count a reference to ``root``; the blobs (from ``new``) that came into use by it."""
        came: list[tuple[Blob, bytes]] = []
        wanted = [root]
        while wanted:
            blob = wanted.pop()
            count = self._count.get(blob, 0)
            self._count[blob] = count + 1
            if count == 0:
                value = new[blob]
                self._blobs[blob] = (len(value), children(value))
                came.append((Blob(blob, len(value)), value))
                wanted += self._blobs[blob][1]
        return came

    def drop(self, root: str) -> None:
        """Count one reference to ``root`` less."""
        wanted = [root]
        while wanted:
            blob = wanted.pop()
            self._count[blob] -= 1
            if self._count[blob] == 0:
                del self._count[blob]
                size, below = self._blobs.pop(blob)
                self.dropped.append(Blob(blob, size))
                wanted += below


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


STALE_AFTER = 3
"""A heartbeat is stale when this many of its intervals passed without a new one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """An agent's sign of life: ``agent`` (``pid@machine``) was running at unix time ``at`` and
    refreshes this every ``interval`` seconds. Compared with the reader's clock: hosts need
    synchronised clocks (NTP) to within a fraction of ``STALE_AFTER x interval``."""

    agent: str
    at: float
    interval: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Heartbeat":
        return cls(**json.loads(data))

    def age(self, now: float | None = None) -> float:
        """Seconds since the agent was last seen (never negative)."""
        return max(0.0, (time.time() if now is None else now) - self.at)

    def stale(self, now: float | None = None) -> bool:
        return self.age(now) > STALE_AFTER * self.interval
