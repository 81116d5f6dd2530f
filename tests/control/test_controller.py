"""The controller service on real stores: atomic publishing, only changed hosts move, conflicts,
rejected specs change nothing, concurrent applies, and the embedded single-machine path."""

import hashlib
import threading
from pathlib import Path

import pytest
from control_helpers import eventually
from etcd_server import etcd  # noqa: F401 - fixture

from netvirt.control.compile import compile_host, compile_network
from netvirt.control import controller as controller_module
from netvirt.control.controller import Controller, StaleSpec, run_embedded
from netvirt.control.state import BLOBS, DESIRED, SPEC_KEY, Blob, children, desired_key, host_of, read_tree
from netvirt.control.store import Store, open_store
from netvirt.graph import HostGraph, from_json, to_json
from netvirt.management.spec import SpecError, loads

SPEC = """\
version: 1
name: three-hosts
hosts:
  - {name: h1, underlay: 192.0.2.1/24}
  - {name: h2, underlay: 192.0.2.2/24}
  - {name: h3, underlay: 192.0.2.3/24}
networks:
  - {name: blue, tenant: acme, encap: vxlan, subnet: 10.10.0.0/24}
  - {name: red, tenant: acme, encap: geneve, subnet: 10.20.0.0/24}
endpoints:
  - {name: web-1, kind: container, host: h1, network: blue, listen: [tcp/80]}
  - {name: db-1, kind: vm, host: h2, network: blue}
  - {name: batch-1, kind: pod, host: h3, network: red}
"""


def edited(old: str, new: str, text: str = SPEC) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'store.db'}"
    else:
        etcd = request.getfixturevalue("etcd")
        with open_store(etcd.url) as wipe:  # tests share the module's etcd: start from nothing
            Controller(wipe).delete()
        url = etcd.url
    with open_store(url) as opened:
        yield opened


def desired(store: Store) -> dict[str, tuple[int, HostGraph]]:
    """Each host's desired revision and graph, read the way an agent reads them."""
    return {
        host_of(e.key): (e.mod_revision, from_json(HostGraph, read_tree(store, Blob.pointed(e.value))))
        for e in store.list(DESIRED).entries
    }


def blobs(store: Store) -> set[str]:
    return {e.key.removeprefix(BLOBS).split("/")[0] for e in store.list(BLOBS, keys_only=True).entries}


def test_apply_publishes_every_host_graph_in_one_revision(store: Store):
    spec = loads(SPEC)
    result = Controller(store).apply(spec)
    assert result.changed == ("h1", "h2", "h3") and result.removed == () and result.unchanged == ()
    published = desired(store)
    assert {host: revision for host, (revision, _) in published.items()} == dict.fromkeys(("h1", "h2", "h3"), result.revision)
    assert {host: graph for host, (_, graph) in published.items()} == {g.host: g for g in compile_network(spec).hosts}
    assert store.get(SPEC_KEY).mod_revision == result.revision
    applied = Controller(store).current()  # a fresh controller reads it back
    assert (applied.spec, applied.revision) == (spec, result.revision)


def test_reapplying_the_same_spec_writes_nothing(store: Store):
    controller = Controller(store)
    first = controller.apply(loads(SPEC))
    before = store.revision()
    again = controller.apply(loads(SPEC))
    assert (again.revision, again.changed, again.unchanged) == (first.revision, (), ("h1", "h2", "h3"))
    assert store.revision() == before


def test_only_the_affected_hosts_revisions_move(store: Store):
    controller = Controller(store)
    old_spec, new_spec = loads(SPEC), loads(edited("{name: db-1, kind: vm, host: h2, network: blue}", "{name: db-1, kind: vm, host: h2, network: blue, listen: [tcp/5432]}"))
    first = controller.apply(old_spec)
    before = desired(store)
    result = controller.apply(new_spec)
    affected = {h for h in ("h1", "h2", "h3") if compile_host(old_spec, h) != compile_host(new_spec, h)}
    assert affected and affected != {"h1", "h2", "h3"}, "the edit must touch some hosts, not all"
    assert set(result.changed) == affected and result.revision > first.revision
    assert (first.incremental, result.incremental) == (False, True)
    after = desired(store)
    for host in ("h1", "h2", "h3"):
        moved = after[host][0] != before[host][0]
        assert moved == (host in affected), host
        assert after[host][0] == (result.revision if moved else first.revision), "published in one revision"
        assert after[host][1] == compile_host(new_spec, host)


def used(store: Store) -> set[str]:
    """The blobs the spec and desired pointers reach, following references inside blobs."""
    roots = [Blob.pointed(e.value).id for e in store.list("/netvirt/").entries if e.key == SPEC_KEY or e.key.startswith(DESIRED)]
    seen: set[str] = set()
    while roots:
        blob = roots.pop()
        if blob not in seen:
            seen.add(blob)
            roots += children(Blob(blob, 0).read(store))
    return seen


def test_blobs_nothing_points_to_are_swept(store: Store):
    controller = Controller(store)
    controller.apply(loads(SPEC))
    first = blobs(store)
    assert first == used(store) and len(first) > 4, "the spec, three host graphs and their pieces"
    controller.apply(loads(edited("tcp/80", "tcp/81")))
    second = blobs(store)
    assert second == used(store), "exactly what the pointers reach"
    assert len(second - first) == len(first - second) == 3, "h1's root, its socket device and the spec changed"
    fresh = Controller(store)  # after a restart it compiles everything and compares hashes
    again = fresh.apply(loads(edited("tcp/80", "tcp/81")))
    assert (again.changed, again.incremental) == ((), False)
    assert blobs(store) == second
    fresh.delete()
    assert blobs(store) == set()


ROUTED = """\
version: 1
name: routed
hosts:
  - {name: h1, underlay: 192.0.2.1/24}
  - {name: h2, underlay: 192.0.2.2/24}
  - {name: h3, underlay: 192.0.2.3/24}
networks:
  - {name: blue, tenant: acme, encap: vxlan, subnet: 10.10.0.0/24}
  - {name: red, tenant: acme, encap: geneve, subnet: 10.20.0.0/24}
routers:
  - {name: r1, networks: [blue, red]}
endpoints:
  - {name: a-1, kind: container, host: h1, network: blue}
  - {name: b-1, kind: vm, host: h2, network: red}
  - {name: c-1, kind: pod, host: h3, network: blue}
"""


def test_pieces_many_hosts_share_are_stored_once_and_kept_while_used(store: Store):
    """The router namespace (a neighbour per endpoint address) is the same on every host: one blob,
    swept only when no host uses it any more."""
    controller = Controller(store)
    spec = loads(ROUTED)
    controller.apply(spec)
    router = to_json(compile_host(spec, "h1").namespace("r1"))
    assert all(to_json(compile_host(spec, host).namespace("r1")) == router for host in ("h2", "h3"))
    piece = hashlib.sha256(router.encode()).hexdigest()
    assert piece in blobs(store) and blobs(store) == used(store)
    text = ROUTED
    for host in ("h3", "h2"):  # its endpoint moves to h1 (the router's neighbours stay), the host leaves
        text = edited(f"host: {host},", "host: h1,", edited(f"  - {{name: {host}, underlay: 192.0.2.{host[1]}/24}}\n", "", text))
        result = controller.apply(loads(text))
        assert result.removed == (host,) and result.incremental
        assert piece in blobs(store) and blobs(store) == used(store), f"h1 still has the router after {host} left"
    last = loads(edited("{name: a-1, kind: container, host: h1, network: blue}", "{name: a-1, kind: container, host: h1, network: red}", text))
    controller.apply(last)
    assert piece not in blobs(store) and blobs(store) == used(store), "the last user changed it"
    assert {host: graph for host, (_, graph) in desired(store).items()} == {"h1": compile_host(last, "h1")}


def test_a_large_spec_is_published(store: Store):
    """10 hosts x 30 endpoints: 1.2 MB of graphs, more than one etcd request may carry."""
    from netvirt.management.spec.generate import generate

    spec = generate(10, 30)
    result = Controller(store).apply(spec)
    assert len(result.changed) == 10
    assert {h: g for h, (_, g) in desired(store).items()} == {g.host: g for g in compile_network(spec).hosts}
    assert Controller(store).current().spec == spec


def test_blob_chunks_round_trip(store: Store):
    value = bytes(range(256)) * 5000  # 1.28 MB: three chunks
    blob = Blob.of(value)
    assert len(blob.puts(value)) == 3
    for put in blob.puts(value):
        store.put(put.key, put.value)
    assert blob.read(store) == value
    store.delete(blob.puts(value)[1].key)
    assert blob.read(store) is None, "an incomplete blob reads as missing"
    assert Blob.pointed(blob.pointer()) == blob
    with pytest.raises(ValueError, match="not a blob pointer"):
        Blob.pointed(b'{"blob": "short", "size": 1}')


def test_removing_a_host_deletes_its_desired_graph_only(store: Store):
    controller = Controller(store)
    controller.apply(loads(SPEC))
    before = desired(store)
    smaller = edited("  - {name: batch-1, kind: pod, host: h3, network: red}\n", "")
    smaller = edited("  - {name: h3, underlay: 192.0.2.3/24}\n", "", smaller)
    result = controller.apply(loads(smaller))
    assert result.removed == ("h3",) and "h3" not in desired(store)
    assert desired(store)["h1"][0] == before["h1"][0] or "h1" in result.changed


def test_stale_revision_is_a_conflict_and_changes_nothing(store: Store):
    controller = Controller(store)
    first = controller.apply(loads(SPEC))
    second = controller.apply(loads(edited("tcp/80", "tcp/8080")))
    before = store.revision()
    with pytest.raises(StaleSpec, match=f"the applied spec is at revision {second.revision}, not at revision {first.revision}; get it again"):
        controller.apply(loads(edited("tcp/80", "tcp/443")), expected_revision=first.revision)
    assert store.revision() == before
    assert controller.apply(loads(edited("tcp/80", "tcp/443")), expected_revision=second.revision).revision > before
    with pytest.raises(StaleSpec, match="not at revision"):
        controller.delete(expected_revision=first.revision)
    fresh = Controller(store)
    with pytest.raises(StaleSpec):
        fresh.apply(loads(SPEC), expected_revision=0)


def test_invalid_spec_is_rejected_with_located_problems_and_changes_nothing(store: Store):
    controller = Controller(store)
    controller.apply(loads(SPEC))
    before = store.revision()
    bad = edited("host: h3, network: red", "host: h9, network: red")
    with pytest.raises(SpecError) as raised:
        controller.apply_text(bad, "three.yaml")
    assert [str(p) for p in raised.value.problems] == ["three.yaml:13:38: error: endpoints[2].host: unknown host 'h9' (did you mean 'h1'?)"]
    assert store.revision() == before


def test_delete_removes_spec_and_every_desired_graph(store: Store):
    controller = Controller(store)
    controller.apply(loads(SPEC))
    result = controller.delete()
    assert result.removed == ("h1", "h2", "h3")
    assert controller.current() is None and desired(store) == {}
    assert controller.delete().removed == ()


def test_concurrent_applies_are_serialised(store: Store):
    """Two controllers (as two processes would be), four threads each: every apply lands whole."""
    variants = [loads(edited("tcp/80", f"tcp/{8000 + i}")) for i in range(8)]
    controllers = [Controller(store), Controller(open_store(store.url))]
    results = []

    def apply(i: int) -> None:
        results.append((i, controllers[i % 2].apply(variants[i])))

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    revisions = [result.revision for _, result in results]
    assert len(set(revisions)) == len(revisions) == 8, "each apply is its own revision"
    winner = max(results, key=lambda item: item[1].revision)[0]
    applied = Controller(store).current()
    assert applied.spec == variants[winner] and applied.revision == max(revisions)
    assert {h: g for h, (_, g) in desired(store).items()} == {g.host: g for g in compile_network(variants[winner]).hosts}
    controllers[1].store.close()


def test_embedded_path_converges_and_reports():
    spec = loads(SPEC)
    with run_embedded(spec, "sim") as embedded:
        states = embedded.controller.hosts()
        assert [(s.host, s.summary, s.in_sync) for s in states] == [(h, "converged", True) for h in ("h1", "h2", "h3")]
        for host in ("h1", "h2", "h3"):
            assert embedded.backend(host).realized() == compile_host(spec, host)
            assert embedded.controller.host(host).differences == ()
        embedded.apply(loads(edited("tcp/80", "tcp/81")))
        embedded.wait_converged(10)
        assert embedded.backend("h1").realized() == compile_host(loads(edited("tcp/80", "tcp/81")), "h1")
        embedded.teardown()
        assert all(embedded.backend(h).realized() == HostGraph(host=h) for h in ("h1", "h2", "h3"))
        assert [s.summary for s in embedded.controller.hosts()] == ["idle"] * 3


def test_host_detail_reads_again_when_the_graph_it_reads_is_replaced(tmp_path: Path, monkeypatch):
    with open_store(f"sqlite://{tmp_path / 's.db'}") as store:
        controller = Controller(store)
        controller.apply(loads(SPEC))
        newer = loads(edited("tcp/80", "tcp/81"))
        reading = controller_module.read_tree

        def replaced_meanwhile(*args, **kwargs):
            monkeypatch.setattr(controller_module, "read_tree", reading)
            controller.apply(newer)  # publishes h1's new graph and sweeps the blobs being read
            return reading(*args, **kwargs)

        monkeypatch.setattr(controller_module, "read_tree", replaced_meanwhile)
        detail = controller.host("h1")
        assert detail.desired == compile_host(newer, "h1") != compile_host(loads(SPEC), "h1")
        assert detail.state.desired_revision == store.get(desired_key("h1")).mod_revision


def test_host_detail_shows_what_is_not_realized_yet(tmp_path: Path):
    with open_store(f"sqlite://{tmp_path / 's.db'}") as store:
        controller = Controller(store)
        controller.apply(loads(SPEC))
        detail = controller.host("h1")
        assert detail.state.summary == "no agent" and detail.realized is None
        assert detail.desired == compile_host(loads(SPEC), "h1")
        assert any(line.startswith("add device ") for line in detail.differences)
        assert controller.host("nowhere") is None
        with pytest.raises(TimeoutError, match=r"not converged after 0.1s: h1 \(no agent\)"):
            controller.wait_converged(0.1)
        store.put(desired_key("h1") + "x", b"")  # an unrelated key does not confuse h1's state
        eventually(lambda: controller.host("h1").state.desired_revision > 0)
