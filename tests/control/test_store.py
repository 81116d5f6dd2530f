"""The store contract, run unchanged against the embedded SQLite store and a real etcd v3."""

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from etcd_server import etcd, free_port  # noqa: F401 - etcd is a fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netvirt.control.store.base import LISTS_PER_CALL
from netvirt.control.store import (
    Compacted,
    Compare,
    Conflict,
    Delete,
    EventType,
    Put,
    SqliteStore,
    Store,
    StoreError,
    Unavailable,
    open_store,
)


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("etcd").url
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own (etcd is shared by the module's tests)."""
    return f"/test-{uuid.uuid4().hex[:8]}/"


def test_put_get_and_entry_revisions(store: Store, ns: str):
    assert store.get(ns + "a") is None
    first = store.put(ns + "a", b"one")
    second = store.put(ns + "a", b"two")
    assert second == first + 1 == store.revision()
    entry = store.get(ns + "a")
    assert (entry.key, entry.value) == (ns + "a", b"two")
    assert (entry.create_revision, entry.mod_revision, entry.version) == (first, second, 2)
    assert store.put(ns + "empty", b"") == second + 1
    assert store.get(ns + "empty").value == b""


def test_delete(store: Store, ns: str):
    store.put(ns + "a", b"1")
    revision = store.delete(ns + "a")
    assert store.get(ns + "a") is None
    assert revision == store.revision()
    assert store.delete(ns + "a") == revision, "deleting an absent key changes nothing"
    created = store.put(ns + "a", b"again")
    assert store.get(ns + "a").create_revision == created
    assert store.get(ns + "a").version == 1


def test_list_by_prefix_sorted_with_revision(store: Store, ns: str):
    for key in ("b", "a", "dir/x", "dir/y"):
        store.put(ns + key, key.encode())
    store.put(ns.rstrip("/") + "-sibling", b"not under the prefix")
    listing = store.list(ns)
    assert [e.key for e in listing.entries] == [ns + k for k in ("a", "b", "dir/x", "dir/y")]
    assert listing.revision == store.revision()
    assert [e.value for e in store.list(ns + "dir/").entries] == [b"dir/x", b"dir/y"]
    assert store.list(ns + "nothing/").entries == ()


def test_lists_reads_many_prefixes_at_one_revision_in_batches(store: Store, ns: str):
    prefixes = [f"{ns}{n:03d}/" for n in range(LISTS_PER_CALL + 6)]  # two etcd transactions
    store.txn([Put(f"{prefix}{part}", f"{prefix}{part}".encode()) for prefix in prefixes[:60] for part in "ab"])
    store.txn([Put(f"{prefix}{part}", f"{prefix}{part}".encode()) for prefix in prefixes[60:] for part in "ab"])
    listings = store.lists([*prefixes, ns + "missing/"])
    assert [listing.entries for listing in listings[:-1]] == [store.list(prefix).entries for prefix in prefixes]
    assert [e.value for e in listings[3].entries] == [f"{prefixes[3]}a".encode(), f"{prefixes[3]}b".encode()]
    assert listings[-1].entries == () and store.lists([]) == ()
    assert {listing.revision for listing in listings[:LISTS_PER_CALL]} == {store.revision()}


def test_transaction_is_atomic_and_one_revision(store: Store, ns: str):
    store.put(ns + "old", b"x")
    before = store.revision()
    revision = store.txn([Put(ns + "a", b"1"), Put(ns + "b", b"2"), Delete(ns + "old")])
    assert revision == before + 1
    assert {e.key: e.mod_revision for e in store.list(ns).entries} == {ns + "a": revision, ns + "b": revision}
    events = store.watch(ns, revision).next(5)
    assert [(e.type, e.key, e.revision) for e in events] == [
        (EventType.PUT, ns + "a", revision),
        (EventType.PUT, ns + "b", revision),
        (EventType.DELETE, ns + "old", revision),
    ]


def test_compare_revision_conflict_changes_nothing(store: Store, ns: str):
    revision = store.put(ns + "spec", b"v1")
    store.put(ns + "other", b"o")
    store.put(ns + "spec", b"v2")
    before = store.revision()
    with pytest.raises(Conflict) as raised:
        store.txn([Put(ns + "spec", b"v3"), Put(ns + "host", b"h")], [Compare(ns + "spec", revision)])
    assert (raised.value.key, raised.value.expected, raised.value.actual) == (ns + "spec", revision, before)
    assert "conflict on" in str(raised.value) and ns + "spec" in str(raised.value)
    assert store.revision() == before
    assert store.get(ns + "spec").value == b"v2" and store.get(ns + "host") is None
    current = store.get(ns + "spec").mod_revision
    store.txn([Put(ns + "spec", b"v3")], [Compare(ns + "spec", current), Compare(ns + "other", revision + 1)])
    assert store.get(ns + "spec").value == b"v3"


def test_compare_zero_means_absent(store: Store, ns: str):
    store.txn([Put(ns + "lock", b"me")], [Compare(ns + "lock", 0)])
    with pytest.raises(Conflict, match="expected it absent"):
        store.txn([Put(ns + "lock", b"you")], [Compare(ns + "lock", 0)])
    assert store.get(ns + "lock").value == b"me"


def test_a_key_twice_in_one_transaction_is_refused(store: Store, ns: str):
    with pytest.raises(ValueError, match="appears in two operations"):
        store.txn([Put(ns + "a", b"1"), Delete(ns + "a")])
    assert store.get(ns + "a") is None


def test_watch_replays_history_then_follows(store: Store, ns: str):
    start = store.put(ns + "a", b"1")
    store.put(ns + "elsewhere", b"x")
    store.put(ns.rstrip("/") + "x/b", b"not watched")
    store.delete(ns + "a")
    with store.watch(ns, start) as watch:
        replay = watch.next(5)
        assert [(e.type, e.key, e.value) for e in replay] == [
            (EventType.PUT, ns + "a", b"1"),
            (EventType.PUT, ns + "elsewhere", b"x"),
            (EventType.DELETE, ns + "a", b""),
        ]
        assert watch.next(0.05) == []
        threading.Timer(0.1, store.put, (ns + "later", b"2")).start()
        later = watch.next(5)
        assert [(e.key, e.value) for e in later] == [(ns + "later", b"2")]
        assert later[0].revision == store.get(ns + "later").mod_revision


def test_watch_from_a_compacted_revision(store: Store, ns: str):
    first = store.put(ns + "a", b"1")
    store.put(ns + "a", b"2")
    last = store.put(ns + "a", b"3")
    store.compact(last)
    with pytest.raises(Compacted, match="compacted"):
        store.watch(ns, first).next(1)
    with store.watch(ns, last) as watch:
        assert [e.value for e in watch.next(5)] == [b"3"]
    store.compact(first)  # already compacted: nothing to do


def test_concurrent_compare_and_swap_loses_no_update(store: Store, ns: str):
    """Four writers, each with its own connection, increment one counter by compare-and-swap."""
    store.put(ns + "counter", b"0")

    def increment(times: int) -> None:
        with open_store(store.url) as own:
            for _ in range(times):
                while True:
                    entry = own.get(ns + "counter")
                    try:
                        own.txn([Put(ns + "counter", str(int(entry.value) + 1).encode())], [Compare(entry.key, entry.mod_revision)])
                        break
                    except Conflict:
                        continue

    writers = [threading.Thread(target=increment, args=(15,)) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    entry = store.get(ns + "counter")
    assert entry.value == b"60" and entry.version == 61


def test_watch_sees_writes_from_another_process(store: Store, ns: str):
    code = "import sys; from netvirt.control.store import open_store; open_store(sys.argv[1]).put(sys.argv[2], b'hi')"
    with store.watch(ns, store.revision() + 1) as watch:
        subprocess.run([sys.executable, "-c", code, store.url, ns + "from-child"], check=True)
        events = watch.next(5)
    assert [(e.key, e.value) for e in events] == [(ns + "from-child", b"hi")]


operations = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), st.sampled_from(["a", "b", "c/d", "c/e"]), st.binary(max_size=8)),
    min_size=1,
    max_size=4,
    unique_by=lambda op: op[1],
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operations, min_size=1, max_size=6))
def test_model_state_and_watch_replay(store: Store, transactions):
    """Random transactions: the store matches a dict, and replaying its watch rebuilds the same dict."""
    ns = f"/model-{uuid.uuid4().hex[:8]}/"
    model: dict[str, bytes] = {}
    start = store.revision() + 1
    for transaction in transactions:
        store.txn([Put(ns + key, value) if op == "put" else Delete(ns + key) for op, key, value in transaction])
        for op, key, value in transaction:
            if op == "put":
                model[ns + key] = value
            else:
                model.pop(ns + key, None)
    assert {e.key: e.value for e in store.list(ns).entries} == model
    replayed: dict[str, bytes] = {}
    end, seen = store.revision(), start - 1
    with store.watch(ns, start) as watch:
        while seen < end:
            batch = watch.next(5)
            seen = batch[-1].revision
            for event in batch:
                if event.type is EventType.PUT:
                    replayed[event.key] = event.value
                else:
                    replayed.pop(event.key, None)
    assert replayed == model


def test_unreachable_etcd_names_the_url():
    url = f"etcd://127.0.0.1:{free_port()}"
    with open_store(url) as store:
        with pytest.raises(Unavailable, match=f"store {url} is unreachable.*is etcd running"):
            store.get("/x")
        with pytest.raises(Unavailable, match=url):
            store.watch("/x", 1)


def test_sqlite_in_a_missing_directory_names_the_url(tmp_path: Path):
    url = f"sqlite://{tmp_path}/no/such/dir/store.db"
    with pytest.raises(Unavailable, match=f"store {url}: directory .* does not exist"):
        open_store(url)


def test_unknown_scheme():
    with pytest.raises(StoreError, match="use sqlite://PATH .* or etcd://HOST:PORT"):
        open_store("redis://localhost")


def test_sqlite_in_memory_and_history_retention(tmp_path: Path):
    with SqliteStore("sqlite://:memory:") as memory:
        memory.put("/k", b"v")
        assert memory.get("/k").value == b"v"
    with SqliteStore(f"sqlite://{tmp_path}/retain.db", retain=500) as small:
        for i in range(1000):
            small.put("/k", str(i).encode())
        with pytest.raises(Compacted):
            small.watch("/", 1)
        assert [e.value for e in small.watch("/", 600).next(1)][:1] == [b"599"]


def test_closing_a_watch_wakes_a_blocked_next(store: Store, ns: str):
    watch = store.watch(ns, store.revision() + 1)
    returned = []
    reader = threading.Thread(target=lambda: returned.append(watch.next(30)))
    reader.start()
    threading.Timer(0.1, watch.close).start()
    reader.join(5)
    assert not reader.is_alive() and returned == [[]]


def test_list_keys_only(store: Store, ns: str):
    store.put(ns + "a", b"big value")
    listing = store.list(ns, keys_only=True)
    assert [(e.key, e.value, e.version) for e in listing.entries] == [(ns + "a", b"", 1)]
