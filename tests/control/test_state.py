"""Blob trees (control.state): a tree's whole value is exactly the graph's ``to_json`` text, pieces
that hosts share are one blob, one more list item changes one chunk, reference counts, and trees
read back from a real store (missing blobs read as missing)."""

import json
from ipaddress import ip_address
from pathlib import Path

import pytest
from control_helpers import host_with_pods

from netvirt.control.compile import compile_network
from netvirt.control.state import (
    AVERAGE,
    CHUNK,
    REF,
    SPLIT,
    Blob,
    Heartbeat,
    Live,
    TreeWriter,
    assemble,
    children,
    read_tree,
    write_blobs,
)
from netvirt.control.store import Store, open_store
from netvirt.graph import HostGraph, Namespace, NamespaceKind, Neighbour, from_json, to_json
from netvirt.management.spec import as_data, generate, load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with open_store(f"sqlite://{tmp_path / 'store.db'}") as opened:
        yield opened


def router(neighbours: int, extra: int | None = None) -> Namespace:
    """A router namespace with a static neighbour per address (and one more, ``extra``, in the middle)."""
    numbers = list(range(neighbours))
    if extra is not None:
        numbers.insert(neighbours // 2, extra)
    entries = tuple(Neighbour(ip_address(0x0A000000 + n), f"02:00:00:00:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}", "gw-blue") for n in numbers)
    return Namespace(name="r1", kind=NamespaceKind.ROUTER, neighbours=entries, ip_forward=True)


def test_a_tree_assembles_to_exactly_to_json_and_decodes_to_the_graph():
    graphs = [*compile_network(load(ROOT / "examples/quickstart.yaml")).hosts, *compile_network(generate(6, 40)).hosts]
    writer = TreeWriter()
    roots = [writer.graph(graph) for graph in graphs]
    for graph, root in zip(graphs, roots):
        text = assemble(root.id, writer.blobs)
        assert text.decode() == to_json(graph)
        assert from_json(HostGraph, text) == graph
    assert all(REF not in to_json(graph).encode() for graph in graphs), "JSON text never holds the reference byte"
    spec = as_data(generate(6, 40))
    assert assemble(writer.data(spec).id, writer.blobs) == json.dumps(spec, sort_keys=True).encode()


def test_pieces_are_blobs_and_shared_objects_are_encoded_once():
    graphs = compile_network(generate(6, 40)).hosts
    writer = TreeWriter()
    for graph in graphs:
        writer.graph(graph)
        for piece, reference in zip((*graph.namespaces, *graph.devices), writer.references(graph)):
            assert reference[:1] == REF and assemble(reference[1:].decode(), writer.blobs).decode() == to_json(piece)
    routers = {id(ns) for graph in graphs for ns in graph.namespaces if ns.kind is NamespaceKind.ROUTER}
    texts = {to_json(ns) for graph in graphs for ns in graph.namespaces if ns.kind is NamespaceKind.ROUTER}
    assert len(routers) < sum(ns.kind is NamespaceKind.ROUTER for g in graphs for ns in g.namespaces), "the compiler shares them"
    assert sum(assemble(b, writer.blobs).decode() in texts for b in writer.blobs) == len(texts), "one blob per distinct router"


def test_one_more_item_in_a_long_list_changes_one_chunk_per_level():
    before, after = TreeWriter(), TreeWriter()
    old, new = before.graph(router(20_000)), after.graph(router(20_000, extra=60_000))
    assert assemble(new.id, after.blobs).decode() == to_json(router(20_000, extra=60_000))
    fresh = after.blobs.keys() - before.blobs.keys()
    levels = 1 + 3  # the namespace itself, then chunks of 20,000 items: ~625, ~20 (fits SPLIT)
    assert len(fresh) <= levels + 1, f"{len(fresh)} new blobs"
    assert old.id in before.blobs and new.id in fresh
    sizes = [len(value) for value in after.blobs.values()]
    assert max(sizes) < 4 * AVERAGE * 100 and max(sizes) < CHUNK, "every blob is a small request"
    assert all(len(children(value)) <= max(SPLIT, 4 * AVERAGE) for value in after.blobs.values())


def test_a_writer_taking_over_literals_writes_the_same_trees():
    first = TreeWriter()
    before = router(3_000)
    first.graph(before)
    known = first.literals()
    assert len(known) == 3_000 and all(REF not in text for _, text in known.values()), "the neighbours, no pieces"
    after = Namespace(name="r1", kind=NamespaceKind.ROUTER, neighbours=before.neighbours[1:], ip_forward=True)
    carried, fresh = TreeWriter(known), TreeWriter()
    assert carried.graph(after) == fresh.graph(after)
    assert carried.blobs == fresh.blobs and assemble(fresh.graph(after).id, fresh.blobs).decode() == to_json(after)


def test_a_spec_tree_is_its_as_data_json_and_a_new_version_reuses_unchanged_items():
    spec = generate(6, 40)
    first = TreeWriter()
    root = first.spec(spec)
    assert assemble(root.id, first.blobs) == json.dumps(as_data(spec), sort_keys=True).encode()
    assert first.data(as_data(spec)) == root
    known = first.literals()
    assert all(id(item) in known for item in spec.endpoints), "every item's text is carried over"
    edited = spec.model_copy(update={"endpoints": spec.endpoints[:-1]})  # shares the other items
    carried = TreeWriter(known)
    assert carried.spec(edited) == TreeWriter().data(as_data(edited))
    assert all(carried.literals()[id(item)] is known[id(item)] for item in edited.endpoints), "not encoded again"


def test_read_tree_from_a_store_and_a_missing_blob(store: Store):
    graph = host_with_pods("h1", 200)
    writer = TreeWriter()
    root = writer.graph(graph)
    write_blobs(store, [(Blob.of(value), value) for value in writer.blobs.values()])
    cache: dict[str, bytes] = {}
    assert read_tree(store, root, cache=cache).decode() == to_json(graph)
    assert cache == writer.blobs, "the cache holds exactly the tree"
    store.close()  # blobs never change: a tree in the cache needs no store at all
    assert read_tree(store, root, cache=cache).decode() == to_json(graph)


def test_a_tree_with_a_blob_gone_reads_as_missing(store: Store):
    writer = TreeWriter()
    root = writer.graph(router(2_000))
    write_blobs(store, [(Blob.of(value), value) for value in writer.blobs.values()])
    leaf = next(blob for blob, value in writer.blobs.items() if not children(value))
    store.delete(Blob(leaf, len(writer.blobs[leaf])).keys()[0])
    assert read_tree(store, root) is None


def test_live_counts_references_and_reports_what_falls_out_of_use():
    one, two = TreeWriter(), TreeWriter()
    first = one.graph(HostGraph(host="h1", namespaces=(router(500),)))
    second = two.graph(HostGraph(host="h2", namespaces=(router(500),)))
    live = Live()
    came = live.add(first.id, one.blobs)
    assert {blob.id for blob, _ in came} == one.blobs.keys()
    assert {blob.id for blob, _ in live.add(second.id, two.blobs)} == {second.id}, "the router is already there"
    live.drop(first.id)
    assert [blob.id for blob in live.dropped] == [first.id], "h2 still uses the router"
    live.drop(second.id)
    assert {blob.id for blob in live.dropped} == one.blobs.keys() | {second.id}
    assert not any(blob in live for blob in one.blobs)


def test_heartbeat_staleness():
    beat = Heartbeat(agent="1@m", at=1000.0, interval=2.0)
    assert Heartbeat.from_json(beat.to_json()) == beat
    assert not beat.stale(now=1005.9) and beat.stale(now=1006.1)
    assert beat.age(now=1042.0) == 42.0 and beat.age(now=990.0) == 0.0
