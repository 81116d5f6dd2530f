"""The embedded store: one SQLite file (WAL mode), shared by threads and processes on one machine.

URL: ``sqlite://`` followed by the file's path — ``sqlite:///var/lib/netvirt/store.db`` (absolute),
``sqlite://netvirt.db`` (relative to the working directory), ``sqlite://:memory:`` (this process only).

Tables: ``kv`` (the current entries), ``log`` (one row per change, for watch), ``meta`` (the store
revision and the compacted revision). Writers take SQLite's write lock (``BEGIN IMMEDIATE``), so
transactions from any process are serialised. Watchers in this process are woken by the writer;
changes from other processes are noticed by one poller thread per store (every ``poll_interval``).
History older than ``retain`` revisions is compacted automatically.
"""

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from netvirt.control.store.base import (
    Compacted,
    Compare,
    Conflict,
    Delete,
    Entry,
    Event,
    EventType,
    Events,
    Listing,
    Operation,
    Store,
    StoreError,
    Unavailable,
    Watch,
    check_txn,
    prefix_end,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY, value BLOB NOT NULL,
    create_revision INTEGER NOT NULL, mod_revision INTEGER NOT NULL, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, key BLOB NOT NULL,
    value BLOB NOT NULL, PRIMARY KEY (revision, seq));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
"""


class SqliteStore(Store):
    """The embedded store (see the module docstring)."""

    def __init__(self, url: str, *, retain: int = 10_000, poll_interval: float = 0.02) -> None:
        self.url = url
        self.path = url.removeprefix("sqlite://")
        self.retain = retain
        self.poll_interval = poll_interval
        if not self.path:
            raise StoreError(f"store URL {url!r} names no file; use sqlite:///abs/path.db or sqlite://rel/path.db")
        if self.path != ":memory:" and not Path(self.path).parent.is_dir():
            raise Unavailable(f"store {url}: directory {Path(self.path).parent} does not exist; create it first")
        self._lock = threading.Lock()  # one connection, used by one thread at a time
        self._changed = threading.Condition()  # notified whenever _latest advances
        self._closed = False
        self._poller: threading.Thread | None = None
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as error:
            raise Unavailable(f"store {url}: cannot open {self.path}: {error}") from None
        self._latest = self.revision()

    # --- reads ------------------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._session():
            row = self._db.execute("SELECT * FROM kv WHERE key = ?", (key.encode(),)).fetchone()
        return _entry(row) if row else None

    def list(self, prefix: str, keys_only: bool = False) -> Listing:
        return self._read([prefix], keys_only)[0]

    def lists(self, prefixes: Sequence[str]) -> tuple[Listing, ...]:
        return self._read(prefixes, False)

    def _read(self, prefixes: Sequence[str], keys_only: bool) -> tuple[Listing, ...]:
        """The entries under each prefix, in one read transaction."""
        columns = "key, x'', create_revision, mod_revision, version" if keys_only else "*"
        found = []
        with self._session():
            self._db.execute("BEGIN")
            try:
                for prefix in prefixes:
                    rows = self._db.execute(f"SELECT {columns} FROM kv WHERE key >= ? AND key < ? ORDER BY key", _bounds(prefix))
                    found.append(tuple(_entry(row) for row in rows))
                revision = self._meta("revision")
            finally:
                self._db.execute("COMMIT")
        return tuple(Listing(entries, revision) for entries in found)

    def revision(self) -> int:
        with self._session():
            return self._meta("revision")

    # --- writes -----------------------------------------------------------------------------------

    def txn(self, operations: Sequence[Operation], compares: Sequence[Compare] = ()) -> int:
        check_txn(operations, compares)
        with self._session():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                revision = self._apply(operations, compares)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        self._advance(revision)
        return revision

    def _apply(self, operations: Sequence[Operation], compares: Sequence[Compare]) -> int:
        """Inside a write transaction: check, write, log; the resulting store revision."""
        for compare in compares:
            row = self._db.execute("SELECT mod_revision FROM kv WHERE key = ?", (compare.key.encode(),)).fetchone()
            actual = row[0] if row else 0
            if actual != compare.mod_revision:
                raise Conflict(compare.key, compare.mod_revision, actual)
        current = self._meta("revision")
        revision = current + 1
        changes = 0
        for operation in operations:
            key = operation.key.encode()
            if isinstance(operation, Delete):
                if self._db.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 0:
                    continue
                kind, value = EventType.DELETE, b""
            else:
                kind, value = EventType.PUT, operation.value
                self._db.execute(
                    "INSERT INTO kv VALUES (?, ?, ?, ?, 1) ON CONFLICT (key) DO UPDATE SET "
                    "value = excluded.value, mod_revision = excluded.mod_revision, version = version + 1",
                    (key, value, revision, revision),
                )
            self._db.execute("INSERT INTO log VALUES (?, ?, ?, ?, ?)", (revision, changes, kind.value, key, value))
            changes += 1
        if not changes:
            return current
        self._db.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
        if revision % 1000 == 0 and revision > self.retain:
            self._compact(revision - self.retain)
        return revision

    def compact(self, revision: int) -> None:
        with self._session():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if revision > self._meta("revision"):
                    raise StoreError(f"{self.url}: cannot compact at {revision}, a future revision")
                self._compact(revision)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _compact(self, revision: int) -> None:
        if revision > self._meta("compacted"):
            self._db.execute("DELETE FROM log WHERE revision < ?", (revision,))
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'compacted'", (revision,))

    # --- watch ------------------------------------------------------------------------------------

    def watch(self, prefix: str, start_revision: int) -> Watch:
        with self._session():
            compacted = self._meta("compacted")
        if start_revision < compacted:
            raise Compacted(self.url, start_revision, compacted)
        watch = _SqliteWatch(self, prefix, start_revision)
        if self.path != ":memory:":
            self._start_poller()
        return watch

    def events(self, prefix: str, start_revision: int) -> tuple[Events, int]:
        """The logged changes under ``prefix`` from ``start_revision`` on (``Compacted`` if gone),
        and the store revision they were read at."""
        low, high = _bounds(prefix)
        with self._session():
            self._db.execute("BEGIN")
            try:
                compacted = self._meta("compacted")
                revision = self._meta("revision")
                rows = self._db.execute(
                    "SELECT type, key, value, revision FROM log WHERE revision >= ? AND key >= ? AND key < ? "
                    "ORDER BY revision, seq",
                    (start_revision, low, high),
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        if start_revision < compacted:
            raise Compacted(self.url, start_revision, compacted)
        events = [Event(EventType(kind), key.decode(), value, at) for kind, key, value, at in rows]
        return events, revision

    def wait_beyond(self, revision: int, timeout: float, watch: "_SqliteWatch") -> None:
        """Block until the store revision exceeds ``revision``, the store or ``watch`` closes, or
        ``timeout`` passes."""
        with self._changed:
            self._changed.wait_for(lambda: self._latest > revision or self._closed or watch.closed, timeout)

    def wake(self) -> None:
        """Wake every blocked watcher (one of them was closed)."""
        with self._changed:
            self._changed.notify_all()

    def _advance(self, revision: int) -> None:
        with self._changed:
            if revision > self._latest:
                self._latest = revision
                self._changed.notify_all()

    def _start_poller(self) -> None:
        with self._changed:
            if self._poller is None:
                self._poller = threading.Thread(target=self._poll, name=f"poll {self.url}", daemon=True)
                self._poller.start()

    def _poll(self) -> None:
        """Notice other processes' commits (this process's writers notify directly)."""
        while not self._closed:
            try:
                self._advance(self.revision())
            except StoreError:
                pass  # the watchers see the error themselves on their next read
            time.sleep(self.poll_interval)

    # --- plumbing ---------------------------------------------------------------------------------

    def _meta(self, name: str) -> int:
        value: int = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0]
        return value

    def _session(self) -> "_Session":
        return _Session(self)

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            self._changed.notify_all()
        if self._poller is not None:
            self._poller.join()
        with self._lock:
            self._db.close()


class _Session:
    """Hold the connection lock; turn SQLite failures into store errors naming the URL."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store._lock.acquire()
        if self.store._closed:
            self.store._lock.release()
            raise StoreError(f"store {self.store.url} is closed")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: object) -> None:
        self.store._lock.release()
        if isinstance(error, sqlite3.OperationalError):
            raise Unavailable(f"store {self.store.url}: {error}") from error
        if isinstance(error, sqlite3.Error):
            raise StoreError(f"store {self.store.url}: {error}") from error


class _SqliteWatch(Watch):
    def __init__(self, store: SqliteStore, prefix: str, start_revision: int) -> None:
        self.store = store
        self.prefix = prefix
        self.next_revision = max(start_revision, 1)
        self.closed = False

    def next(self, timeout: float) -> list[Event]:
        deadline = time.monotonic() + timeout
        while not self.closed:
            events, revision = self.store.events(self.prefix, self.next_revision)
            # Nothing else under our prefix up to ``revision``: later reads start after it.
            self.next_revision = max(self.next_revision, revision + 1)
            if events:
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self.store.wait_beyond(revision, remaining, self)
        return []

    def close(self) -> None:
        self.closed = True
        self.store.wake()


def _bounds(prefix: str) -> tuple[bytes, bytes]:
    low = prefix.encode()
    high = prefix_end(low) if low else b"\xff" * 8
    return low, high


def _entry(row: tuple[bytes, bytes, int, int, int]) -> Entry:
    key, value, create_revision, mod_revision, version = row
    return Entry(key.decode(), bytes(value), create_revision, mod_revision, version)
