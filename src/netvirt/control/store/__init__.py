"""Where desired and realized state live: one revisioned key-value contract, two implementations.

Contract (``base``): revisions, atomic multi-key transactions with compare-revision, watch from a
revision, ``Unavailable`` naming the URL. ``open_store(url)`` picks the implementation by scheme:
``sqlite://PATH`` (embedded, the default) or ``etcd://HOST:PORT`` (etcd v3 over its JSON gateway).
"""

from netvirt.control.store.base import (
    Compacted,
    Compare,
    Conflict,
    Delete,
    Entry,
    Event,
    EventType,
    Listing,
    Operation,
    Put,
    Store,
    StoreError,
    Unavailable,
    Watch,
)
from netvirt.control.store.etcd import EtcdStore
from netvirt.control.store.sqlite import SqliteStore

DEFAULT_URL = "sqlite://netvirt.db"
"""The default store: an SQLite file in the working directory (override with NETVIRT_STORE)."""


def open_store(url: str) -> Store:
    """The store at ``url`` (``sqlite://PATH`` or ``etcd://HOST:PORT``); StoreError for other schemes."""
    if url.startswith("sqlite://"):
        return SqliteStore(url)
    if url.startswith("etcd://"):
        return EtcdStore(url)
    raise StoreError(f"unknown store URL {url!r}: use sqlite://PATH (embedded) or etcd://HOST:PORT")


__all__ = [
    "DEFAULT_URL",
    "Compacted",
    "Compare",
    "Conflict",
    "Delete",
    "Entry",
    "EtcdStore",
    "Event",
    "EventType",
    "Listing",
    "Operation",
    "Put",
    "SqliteStore",
    "Store",
    "StoreError",
    "Unavailable",
    "Watch",
    "open_store",
]
