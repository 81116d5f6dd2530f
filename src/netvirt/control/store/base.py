"""The store contract: a revisioned key-value store with atomic transactions and watch (etcd v3's model).

Contract:
- Every transaction that changes something advances the store's ``revision`` by exactly one; all of
  its changes carry that revision, so a reader or watcher sees either none or all of them.
- An ``Entry`` remembers the revision that created it and the one that last changed it
  (``create_revision``, ``mod_revision``) and how many times it was written (``version``).
- ``txn`` checks every ``Compare`` first (a key's ``mod_revision``; 0 means "absent") and applies its
  operations only if all hold, else raises ``Conflict`` naming the key. A key appears at most once.
- ``watch(prefix, start_revision)`` yields every change to keys under ``prefix`` from that revision
  on, in revision order, without gaps; ``Compacted`` if that history was discarded.
- An unreachable store raises ``Unavailable`` naming the store's URL. Every error is a ``StoreError``.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self


class StoreError(Exception):
    """Anything that went wrong in a store."""


class Unavailable(StoreError):
    """The store cannot be reached (the message names its URL)."""


class Conflict(StoreError):
    """A transaction's ``Compare`` did not hold: ``key`` is at ``actual``, not ``expected``."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        self.key, self.expected, self.actual = key, expected, actual
        want = "absent" if expected == 0 else f"at revision {expected}"
        have = "absent" if actual == 0 else f"at revision {actual}"
        super().__init__(f"conflict on {key!r}: expected it {want}, it is {have}")


class Compacted(StoreError):
    """The history from the requested revision was discarded; re-read the current state instead."""

    def __init__(self, url: str, requested: int, compacted: int) -> None:
        self.requested, self.compacted = requested, compacted
        super().__init__(f"{url}: revision {requested} is compacted (history starts after {compacted})")


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class Listing:
    """Entries under a prefix (sorted by key) and the store revision they were read at."""

    entries: tuple[Entry, ...]
    revision: int


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """A change to ``key`` at ``revision``; ``value`` is empty for a delete."""

    type: EventType
    key: str
    value: bytes
    revision: int


Events = list[Event]
"""A batch of events in revision order (whole transactions)."""


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when ``key``'s ``mod_revision`` equals ``mod_revision`` (0: the key does not exist)."""

    key: str
    mod_revision: int


Operation = Put | Delete


class Watch(ABC):
    """A stream of events; ``next`` blocks up to ``timeout`` seconds. Close it (or use ``with``)."""

    @abstractmethod
    def next(self, timeout: float) -> list[Event]:
        """The next batch of events in revision order ([] after ``timeout`` seconds without any)."""

    @abstractmethod
    def close(self) -> None:
        """Stop watching (idempotent, from any thread); a blocked ``next`` returns [] at once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


LISTS_PER_CALL = 64
"""Prefixes read in one ``lists`` call: under etcd's default --max-txn-ops (128)."""


class Store(ABC):
    """A revisioned key-value store; see the module docstring for the contract."""

    url: str

    @abstractmethod
    def get(self, key: str) -> Entry | None:
        """The entry of ``key``, or None."""

    @abstractmethod
    def list(self, prefix: str, keys_only: bool = False) -> Listing:
        """Every entry whose key starts with ``prefix``, and the revision they were read at
        (``keys_only``: every value reads as b"")."""

    def lists(self, prefixes: Sequence[str]) -> tuple[Listing, ...]:
        """``list`` of each of ``prefixes``, in as few round trips as the store allows (etcd: one
        transaction per ``LISTS_PER_CALL`` prefixes); the listings of one round trip are read at
        one revision."""
        return tuple(self.list(prefix) for prefix in prefixes)

    @abstractmethod
    def txn(self, operations: Sequence[Operation], compares: Sequence[Compare] = ()) -> int:
        """Apply ``operations`` atomically if every compare holds (else ``Conflict``); the new revision."""

    @abstractmethod
    def revision(self) -> int:
        """The store's current revision."""

    @abstractmethod
    def watch(self, prefix: str, start_revision: int) -> Watch:
        """Changes under ``prefix`` from ``start_revision`` on (``Compacted`` if that is gone)."""

    @abstractmethod
    def compact(self, revision: int) -> None:
        """Discard the history before ``revision`` (watching from earlier gives ``Compacted``)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (idempotent)."""

    def put(self, key: str, value: bytes) -> int:
        """Set ``key`` to ``value``; the new revision."""
        return self.txn([Put(key, value)])

    def delete(self, key: str) -> int:
        """Remove ``key`` (nothing happens if it is absent); the store revision afterwards."""
        return self.txn([Delete(key)])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def check_txn(operations: Sequence[Operation], compares: Sequence[Compare]) -> None:
    """ValueError if a key appears twice among ``operations`` or among ``compares`` (etcd refuses it)."""
    for what, keys in (("operation", [op.key for op in operations]), ("compare", [c.key for c in compares])):
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                raise ValueError(f"key {key!r} appears in two {what}s of one transaction")
            seen.add(key)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with ``prefix`` (b"\\0": no end)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return b"\0"
    return trimmed[:-1] + bytes([trimmed[-1] + 1])

