"""The incremental engine: for random edit sequences, incremental == full recompute, and the hosts
it reports are exactly the hosts whose graph changed."""

import json

import pytest
from compile_specs import SPEC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netvirt.control.compile import CompileError, Engine, compile_network
from netvirt.control.compile.engine import INPUTS, ORDER, WIRING, common_prefix, common_suffix
from netvirt.control.compile.parts import PartKind, part_key, part_keys
from netvirt.graph import validate
from netvirt.management.spec import SpecError, as_data, loads
from netvirt.management.spec.analyze import Analysis

INPUT_KINDS = ("hosts", "networks", "routers", "endpoints", "policies", "services")

HOSTS = [f"h{i}" for i in range(5)]
NETWORKS = [f"n{i}" for i in range(4)]
ENDPOINTS = [f"e{i}" for i in range(10)]
ROUTERS = ["r0", "r1"]
POLICIES = ["p0", "p1", "p2"]
SERVICES = ["s0", "s1"]
LABELS = [{}, {"app": "web"}, {"app": "db"}]
PEERS = [[], ["app=web"], ["e1"], ["10.0.0.0/8"], ["e2", "app=db"]]


def base() -> dict:
    return {
        "version": 1,
        "name": "engine-test",
        "hosts": [{"name": "h0", "underlay": "192.0.2.10/24"}, {"name": "h1", "underlay": "192.0.2.11/24"}],
        "networks": [
            {"name": "n0", "tenant": "t0", "subnet": "10.0.0.0/24", "subnet6": "fd00::/64"},
            {"name": "n1", "tenant": "t0", "subnet": "10.1.0.0/24"},
        ],
        "routers": [{"name": "r0", "networks": ["n0", "n1"], "snat": True}],
        "endpoints": [
            {"name": "e0", "host": "h0", "network": "n0", "labels": {"app": "web"}, "listen": ["tcp/80"]},
            {"name": "e1", "host": "h1", "network": "n1", "kind": "vm"},
        ],
        "policies": [{"name": "p0", "network": "n0", "rules": [{"action": "allow", "proto": "tcp", "dst_port": 80, "to": "app=web"}]}],
        "services": [{"name": "s0", "port": "tcp/80", "backends": ["e0"]}],
    }


def item(data: dict, kind: str, name: str) -> dict | None:
    return next((x for x in data[kind] if x["name"] == name), None)


def put(data: dict, kind: str, value: dict) -> None:
    data[kind] = [x for x in data[kind] if x["name"] != value["name"]] + [value]


def drop(data: dict, kind: str, name: str) -> None:
    data[kind] = [x for x in data[kind] if x["name"] != name]


@st.composite
def edits(draw, data: dict) -> dict:
    """One random edit of spec data (it may make the spec invalid: the test then skips it)."""
    data = json.loads(json.dumps(data))
    kind = draw(st.sampled_from(["hosts", "networks", "routers", "endpoints", "endpoints", "policies", "services"]))
    names = {"hosts": HOSTS, "networks": NETWORKS, "routers": ROUTERS, "endpoints": ENDPOINTS, "policies": POLICIES, "services": SERVICES}[kind]
    name = draw(st.sampled_from(names))
    if draw(st.integers(0, 4)) == 0:
        drop(data, kind, name)
        return data
    networks = [n["name"] for n in data["networks"]] or ["n0"]
    if kind == "hosts":
        index = HOSTS.index(name)
        subnet = draw(st.sampled_from(["192.0.2", "198.51.100"]))
        put(data, kind, {"name": name, "underlay": f"{subnet}.{10 + index}/24", "mtu": draw(st.sampled_from([1500, 9000]))})
    elif kind == "networks":
        index = NETWORKS.index(name)
        value = {"name": name, "tenant": draw(st.sampled_from(["t0", "t1"])), "subnet": f"10.{index}.0.0/24"}
        value["encap"] = draw(st.sampled_from(["vxlan", "vxlan", "geneve", "nvgre", "none"]))
        if draw(st.booleans()):
            value["subnet6"] = f"fd00:{index}::/64"
        put(data, kind, value)
    elif kind == "routers":
        joined = draw(st.lists(st.sampled_from(networks), min_size=1, max_size=3, unique=True))
        value = {"name": name, "networks": joined, "snat": draw(st.booleans())}
        if draw(st.booleans()):
            value["routes"] = [{"to": "203.0.113.0/24", "via": f"10.{NETWORKS.index(joined[0])}.0.254"}]
        put(data, kind, value)
    elif kind == "endpoints":
        hosts = [h["name"] for h in data["hosts"]] or ["h0"]
        attached = draw(st.lists(st.sampled_from(networks), min_size=1, max_size=2, unique=True))
        value = {
            "name": name,
            "kind": draw(st.sampled_from(["container", "vm", "pod", "host"])),
            "host": draw(st.sampled_from(hosts)),
            "attachments": [{"network": n} for n in attached],
            "labels": draw(st.sampled_from(LABELS)),
            "listen": draw(st.sampled_from([[], ["tcp/80"], ["tcp/80", "udp/53"]])),
        }
        put(data, kind, value)
    elif kind == "policies":
        scope = draw(st.sampled_from([{"network": n} for n in networks] + [{"tenant": "t0"}, {"tenant": "t1"}]))
        rules = [
            {"action": draw(st.sampled_from(["allow", "drop", "reject", "log"])), "from": draw(st.sampled_from(PEERS)), "to": draw(st.sampled_from(PEERS)), "proto": draw(st.sampled_from(["any", "tcp", "icmp"]))}
            for _ in range(draw(st.integers(0, 3)))
        ]
        value = {"name": name, **scope, "direction": draw(st.sampled_from(["ingress", "egress"])), "rules": rules}
        value["default"] = draw(st.sampled_from(["allow", "drop", "reject"]))
        put(data, kind, value)
    else:
        listeners = [e["name"] for e in data["endpoints"] if "tcp/80" in e.get("listen", [])]
        backends = draw(st.lists(st.sampled_from(listeners or ["e0"]), min_size=1, max_size=2, unique=True))
        put(data, kind, {"name": name, "port": "tcp/80", "backends": backends, "affinity": draw(st.sampled_from(["none", "client-ip"]))})
    return data


def share_unchanged(old, new):
    """``new`` with every item equal to one of ``old`` replaced by that very object (what an
    editing client does), so the engine's identity fast path runs as well as the equality path."""
    update = {}
    for kind in INPUT_KINDS:
        before = {x.name: x for x in getattr(old, kind)}
        update[kind] = tuple(before[x.name] if before.get(x.name) == x else x for x in getattr(new, kind))
    return new.model_copy(update=update)


def load(data: dict):
    return loads(json.dumps(data), "edit.json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_incremental_equals_full_recompute(data):
    current = base()
    spec = load(current)
    engine = Engine(spec)
    before = {g.host: g for g in compile_network(spec).hosts}
    assert engine.graphs == before
    for _ in range(data.draw(st.integers(1, 8), label="edits")):
        edited = data.draw(edits(current), label="edit")
        try:
            new = load(edited)
        except SpecError:
            continue
        if data.draw(st.booleans(), label="share"):
            new = share_unchanged(spec, new)
        try:
            network = compile_network(new)
        except CompileError:
            continue
        assert validate(network) == []
        full = {g.host: g for g in network.hosts}
        changed = engine.update(new)
        assert engine.graphs == full
        assert set(changed) == {h for h, g in full.items() if before.get(h) != g}
        assert all(changed[h] == full[h] for h in changed)
        assert engine.network == network
        current, spec, before = edited, new, full


@pytest.fixture(scope="module")
def spec():
    return loads(SPEC)


def test_a_port_add_touches_only_what_it_must(spec):
    engine = Engine(spec)
    blue = spec.endpoint("web-1").model_copy(update={"name": "web-3", "host": "host-b"})
    blue = blue.model_copy(
        update={"attachments": (blue.attachments[0].model_copy(update={"ip": None, "ip6": None, "mac": "02:00:00:00:00:33"}),)}
    )
    new = spec.model_copy(update={"endpoints": (*spec.endpoints, blue)})
    changed = engine.update(new)
    # blue is on every host (the router brings it): FDBs everywhere, the new namespace on host-b
    assert set(changed) == {"host-a", "host-b", "host-c"}
    assert engine.stats["endpoints"].path == "incremental" and engine.stats["endpoints"].touched == 1
    assert engine.stats["hosts"].path == "unchanged" and engine.stats["policies"].path == "unchanged"
    assert engine.stats["uplinks"].path == "unchanged"
    assert engine.graphs == {g.host: g for g in compile_network(new).hosts}
    assert engine.update(new) == {}  # nothing changed the second time
    assert all(s.path == "unchanged" for name, s in engine.stats.items())


def test_a_port_add_rebuilds_a_host_graph_in_chunks_sharing_the_unchanged_parts(spec):
    engine = Engine(spec)
    before = dict(engine.graphs)
    web = spec.endpoint("web-1")
    moved = web.attachments[0].model_copy(update={"mac": "02:00:00:00:00:44"})
    new = spec.model_copy(update={"endpoints": tuple(e.model_copy(update={"attachments": (moved,)}) if e is web else e for e in spec.endpoints)})
    changed = engine.update(new)
    for host, graph in changed.items():
        old, now = before[host].devices.chunks, graph.devices.chunks
        assert len(old) == len(now) == len(engine.keys[host])  # a chunk per part
        kept = sum(a is b for a, b in zip(old, now))
        assert 0 < kept < len(old), host  # only the parts the MAC is in were rebuilt
    assert engine.graphs == {g.host: g for g in compile_network(new).hosts}


def test_a_change_of_nothing_the_graphs_use_reports_no_host(spec):
    engine = Engine(spec)
    new = spec.model_copy(update={"description": "edited", "stacks": ()})
    assert engine.update(new) == {}


def test_a_service_subnet_change_recomputes(spec):
    engine = Engine(spec)
    new = spec.model_copy(update={"service_subnet": spec.service_subnet.supernet(1)})
    changed = engine.update(new)
    assert engine.stats["settings"].path == "recompute"
    assert set(changed) == {"host-a", "host-b", "host-c"}  # every endpoint routes the service subnet
    assert engine.graphs == {g.host: g for g in compile_network(new).hosts}


def test_the_wiring_runs_inputs_first_and_a_handlerless_input_recomputes(spec):
    for at, name in enumerate(ORDER):
        assert all(i in INPUTS or ORDER.index(i) < at for i, _ in WIRING[name].inputs), name
        node = WIRING[name]
        assert (node.recompute is not None) == any(handler is None for _, handler in node.inputs), name
        assert (node.run is not None) == any(handler is not None for _, handler in node.inputs), name
    engine = Engine(spec)
    network = spec.networks[0].model_copy(update={"mtu": spec.networks[0].mtu - 10})
    new = spec.model_copy(update={"networks": (network, *spec.networks[1:])})
    engine.update(new)
    # networks has no handler in selections and services_nat: they recompute; the rest is incremental
    assert engine.stats["networks"].path == "incremental"
    assert engine.stats["selections"].path == engine.stats["services_nat"].path == "recompute"
    assert engine.stats["parts"].path == "incremental" and engine.stats["uplinks"].path == "unchanged"
    assert engine.graphs == {g.host: g for g in compile_network(new).hosts}


def test_part_keys_sort_in_assembly_order():
    keys = part_keys(["n1", "n0"], ["r0"], ["e0"])
    assert [(key.kind, key.name) for key in keys] == [
        (PartKind.HOST, ""), (PartKind.BRIDGE, "n0"), (PartKind.TUNNEL, "n0"), (PartKind.BRIDGE, "n1"),
        (PartKind.TUNNEL, "n1"), (PartKind.ROUTER_NAMESPACE, "r0"), (PartKind.ROUTER_LEGS, "r0"), (PartKind.ENDPOINT, "e0"),
    ]
    assert part_key(PartKind.TUNNEL, "n0") == keys[2]


def test_a_failed_update_leaves_the_engine_as_it_was(spec, monkeypatch):
    engine = Engine(spec)
    graphs = dict(engine.graphs)
    monkeypatch.setattr(Analysis, "namespaces", lambda self: None)  # validation would refuse it
    bad = loads(SPEC.replace("name: edge,", "name: web-1,"))  # router and endpoint share a namespace
    with pytest.raises(CompileError):
        engine.update(bad)
    assert engine.graphs == graphs
    assert engine.update(spec) == {}


def test_removing_a_host_drops_its_graph():
    data = base()
    engine = Engine(load(data))
    data["hosts"].append({"name": "h2", "underlay": "192.0.2.12/24"})
    changed = engine.update(load(data))
    assert set(changed) == {"h2"}
    data["hosts"] = data["hosts"][:2]
    assert engine.update(load(data)) == {} and "h2" not in engine.graphs


@pytest.mark.parametrize("encap", ["vxlan", "none"])
def test_a_network_on_no_host_comes_and_goes_without_changing_a_graph(encap):
    data = base()
    engine = Engine(load(data))
    data["networks"].append({"name": "unused", "tenant": "t0", "subnet": "10.9.0.0/24", "encap": encap})
    assert engine.update(load(data)) == {}
    data["networks"].pop()
    assert engine.update(load(data)) == {} and engine.graphs == {g.host: g for g in compile_network(load(data)).hosts}


def test_spec_roundtrip_is_no_change(spec):
    engine = Engine(spec)
    assert engine.update(loads(json.dumps(as_data(spec)), "same.json")) == {}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_common_prefix_and_suffix_find_the_changed_window(a, b):
    a, b = tuple(a), tuple(b)
    start = common_prefix(a, b)
    assert a[:start] == b[:start] and (start == min(len(a), len(b)) or a[start] != b[start])
    limit = min(len(a), len(b)) - start
    end = common_suffix(a, b, limit)
    assert end <= limit and a[len(a) - end :] == b[len(b) - end :]
    assert end == limit or a[len(a) - end - 1] != b[len(b) - end - 1]
