"""Blobs: content-addressed values in the store, the trees they form, and which ones are live.

Contract: a ``Blob`` is a value by content (SHA-256 id, size), stored in chunks of at most
``CHUNK`` bytes under a space (``keys.BLOBS``, or an agent's realized-blobs space). A *tree*
stores a large JSON text as blobs naming other blobs: in a blob's value, ``REF`` (a NUL byte,
which JSON text never holds) followed by 64 hex digits stands for the whole assembled value of
that blob (``trees.TreeWriter`` makes them). Blobs are written first, in as many transactions as
their size needs (``write_blobs``: etcd refuses requests over 1.5 MiB by default), and nobody
looks at them until a pointer names them. Publishing a spec version is then ONE small
transaction: the spec pointer and the desired pointer of every host whose graph changed, guarded
by the spec's and ``/netvirt/sweep``'s revisions — so a publish that relied on blobs being there
fails (and is retried) if a sweep ran meanwhile, and a sweep, guarded by the spec revision it kept
blobs for, fails if a newer version was published meanwhile. ``Live`` counts which blobs the
published trees use, so a sweep knows which to delete.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from netvirt.control.state.keys import BLOBS
from netvirt.control.store import Operation, Put, Store

CHUNK = 512 * 1024
BATCH_BYTES = 1024 * 1024  # per transaction: below etcd's default request limit (1.5 MiB)
BATCH_OPERATIONS = 64  # per transaction: below etcd's default --max-txn-ops (128)
REF = b"\0"
"""Starts a reference to a blob in a blob's value (then its 64 hex digits)."""


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
