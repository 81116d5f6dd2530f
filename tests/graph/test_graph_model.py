"""Graph constructors: per-kind defaults, value checks with clear messages, frozen and hashable."""

import dataclasses
from ipaddress import ip_address, ip_interface, ip_network

import pytest
from graph_strategies import example_host

from netvirt.graph import (
    ACCEPT,
    KINDS,
    Bridge,
    Chain,
    Chunks,
    CtState,
    Device,
    DeviceKind,
    Dnat,
    GeneveOption,
    FdbEntry,
    GraphError,
    HostGraph,
    Match,
    Mode,
    NatTarget,
    NetfilterHook,
    PortRange,
    Proto,
    Route,
    RouteType,
    Rule,
    Socket,
    Tunnel,
    Veth,
    from_json,
    to_json,
    validate,
)
from netvirt.graph.values import copier


def test_every_kind_has_defaults():
    assert set(KINDS) == set(DeviceKind)
    for info in KINDS.values():
        assert info.level and info.technique


def test_device_of_takes_defaults_and_overrides():
    veth = Device.of(DeviceKind.VETH, "veth0", "pod1", config=Veth("eth0", "host"))
    assert (veth.mode, veth.level, veth.technique) == (Mode.KERNEL, "Namespace", "Veth Pair (Namespace crossover)")
    switch = Device.of(DeviceKind.NDIS_FILTER, "ndis", "win", level="Network Stack (Windows)")
    assert switch.level == "Network Stack (Windows)" and switch.mode is Mode.KERNEL


def test_config_must_fit_kind():
    with pytest.raises(GraphError, match="kind veth needs config Veth, got None"):
        Device.of(DeviceKind.VETH, "veth0", "pod1")
    with pytest.raises(GraphError, match="kind tap takes no config"):
        Device.of(DeviceKind.TAP, "tap0", "h", config=Bridge())


def test_swapping_a_tunnel_fdb_equals_building_it_and_checks_what_changed():
    entries = (FdbEntry("02:00:00:00:00:01", remote=ip_address("192.0.2.2")),)
    fields = dict(vni=7, local=ip_address("192.0.2.1"), flood=(ip_address("192.0.2.2"),))
    before = Device.of(DeviceKind.VXLAN, "vx", "h", config=Tunnel(**fields), parent="eth0")
    after = before.with_config(before.config.with_fdb(entries))
    assert after == Device.of(DeviceKind.VXLAN, "vx", "h", config=Tunnel(**fields, fdb=entries), parent="eth0")
    assert before.config.fdb == () and hash(after) != hash(before)
    with pytest.raises(GraphError, match="fdb: expected a tuple of FdbEntry, got list"):
        before.config.with_fdb(list(entries))
    with pytest.raises(GraphError, match="kind vxlan needs config Tunnel"):
        before.with_config(Bridge())
    geneve = Tunnel(vni=7, options=(GeneveOption(0x0102, 1, b"\x00" * 4),))
    with pytest.raises(GraphError, match="only geneve tunnels carry options"):
        before.with_config(geneve)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Device.of(DeviceKind.NIC, "eth 0", "h"), "'eth 0' is not a valid name"),
        (lambda: Device.of(DeviceKind.NIC, "eth0", "h", mtu=67), "mtu: 67 is out of range"),
        (lambda: Device.of(DeviceKind.NIC, "eth0", "h", mac="zz:00:00:00:00:00"), "not a MAC address"),
        (lambda: Tunnel(vni=1 << 24), "tunnel vni: 16777216 is out of range"),
        (lambda: GeneveOption(0x10000, 1), "geneve option class: 65536 is out of range"),
        (lambda: GeneveOption(1, 256), "geneve option class 0x0001 type: 256 is out of range"),
        (lambda: GeneveOption(1, 1, b"abc"), "3 bytes; expected whole 4-byte words, at most 124"),
        (lambda: GeneveOption(1, 1, bytes(128)), "128 bytes; expected whole 4-byte words, at most 124"),
        (lambda: GeneveOption(1, 1, "0000abcd"), "data: expected bytes, got str"),
        (lambda: Tunnel(vni=1, options=[GeneveOption(1, 1, bytes(60))] * 5), "options: 320 bytes; Geneve carries at most 252"),
        (
            lambda: Device.of(DeviceKind.VXLAN, "vx", "h", config=Tunnel(vni=1, options=(GeneveOption(1, 1),))),
            "only geneve tunnels carry options; remove them from this vxlan device",
        ),
        (lambda: PortRange(10, 9), "out of range; expected an integer 10..65535"),
        (lambda: Match(dst_ports=PortRange(1, 2)), "ports need proto tcp or udp"),
        (lambda: Match(proto=Proto.TCP, icmp_type=3), "icmp_type needs proto icmp"),
        (lambda: Match(proto=Proto.ICMP, icmp_code=3), "icmp_code 3 needs an icmp_type"),
        (lambda: Match(proto=Proto.ICMP, icmp_type=3, icmp_code=256), "icmp_code: 256 is out of range"),
        (lambda: Match(src=ip_network("10.0.0.0/8"), dst=ip_network("fd00::/8")), "mixes IPv4 and IPv6"),
        (lambda: Match(src=ip_network("fd00::/8"), proto=Proto.ICMP), "mixes IPv4 and IPv6"),
        (lambda: Match(ct_states=frozenset()), "empty set never matches"),
        (lambda: Dnat(targets=()), "at least one target"),
        (lambda: Dnat(targets=(NatTarget(ip_address("10.0.0.1")), NatTarget(ip_address("fd00::1")))), "mix"),
        (lambda: Route(dst=ip_network("10.0.0.0/8")), "needs via or dev"),
        (lambda: Route(dst=ip_network("10.0.0.0/8"), via=ip_address("fd00::1")), "not an IPv4 address"),
        (lambda: FdbEntry("02:00:00:00:00:01"), "exactly one of device"),
        (lambda: Socket(proto=Proto.ICMP, port=1), "must be tcp or udp"),
    ],
)
def test_impossible_values_are_refused(build, message):
    with pytest.raises(GraphError, match=message):
        build()


def test_blackhole_route_needs_no_device():
    assert Route(dst=ip_network("10.0.0.0/8"), kind=RouteType.BLACKHOLE).dev is None


def test_lists_become_tuples_and_graphs_are_hashable():
    chain = Chain(hook=NetfilterHook.INPUT, rules=[Rule(action=ACCEPT)])
    assert isinstance(chain.rules, tuple)
    dev = Device.of(DeviceKind.NIC, "eth0", "h", addresses=[ip_interface("10.0.0.1/24")])
    assert isinstance(dev.addresses, tuple)
    match = Match(ct_states={CtState.NEW})
    assert match.ct_states == frozenset({CtState.NEW})
    graph = example_host()
    assert hash(graph) == hash(example_host())
    with pytest.raises(dataclasses.FrozenInstanceError):
        graph.host = "other"  # type: ignore[misc]


def test_chunks_are_the_tuple_of_their_items():
    items = ("a", "b", "c", "d")
    chunks = Chunks([("a",), (), ("b", "c"), ("d",)])
    assert chunks == items and items == chunks and chunks == Chunks([items]) and hash(chunks) == hash(items)
    assert chunks != ("a", "b") and chunks != Chunks([("a", "b")]) and chunks != ["a", "b", "c", "d"]
    fresh = Chunks(chunks.chunks)  # indexing walks the chunks until something made the flat tuple
    assert [fresh[at] for at in range(4)] == [chunks[at] for at in range(4)] == list(items)
    assert (len(chunks), list(chunks), chunks[-1], chunks[1:3]) == (4, list(items), "d", ("b", "c"))
    assert "c" in chunks and "e" not in chunks and chunks.index("d") == 3 and bool(Chunks([(), ()])) is False
    assert chunks.count("b") == 1 and list(reversed(chunks)) == list(reversed(items))
    assert chunks + ("e",) == items + ("e",) and ("z",) + chunks == ("z", *items)
    with pytest.raises(IndexError):
        Chunks([("a",)])[1]
    assert repr(chunks) == "Chunks(('a', 'b', 'c', 'd'))"


def test_a_graph_in_chunks_equals_and_encodes_as_the_flat_one():
    flat = example_host()
    chunked = dataclasses.replace(
        flat, namespaces=Chunks([flat.namespaces[:1], flat.namespaces[1:]]), devices=Chunks([(), flat.devices])
    )
    assert isinstance(chunked.devices, Chunks)  # the constructor keeps them: they are immutable
    assert chunked == flat and flat == chunked and hash(chunked) == hash(flat)
    assert to_json(chunked) == to_json(flat) and from_json(HostGraph, to_json(chunked)) == chunked
    assert chunked.device(*flat.devices[-1].key) is flat.devices[-1] and validate(chunked) == validate(flat)


def test_copier_copies_without_the_constructors_checks_and_names_unknown_fields():
    with pytest.raises(TypeError, match="Tunnel has no field 'fbd'"):
        copier(Tunnel, "fbd")
    tunnel = Tunnel(vni=7)
    assert copier(Tunnel, "vni")(tunnel, 1 << 30).vni == 1 << 30  # unchecked: the with_* methods check


def test_mac_is_canonical_and_family_is_derived():
    assert Device.of(DeviceKind.NIC, "e", "h", mac="02:AB:00:00:00:01").mac == "02:ab:00:00:00:01"
    assert Match(dst=ip_network("fd00::/64")).family == 6
    assert Match(proto=Proto.ICMP).family == 4
    assert Match(proto=Proto.TCP).family is None
    assert Proto.ICMPV6.number == 58


def test_lookups_name_what_is_missing():
    graph = example_host()
    assert graph.device("pod1", "eth0").config == Veth("veth-pod1", "host1")
    assert [d.name for d in graph.devices_in("pod1")] == ["eth0", "http"]
    assert graph.namespace("host1").chain("nat", "prerouting") is not None
    assert graph.namespace("host1").chain("filter", "input") is None
    with pytest.raises(KeyError, match="host host1 has no device pod1/eth9"):
        graph.device("pod1", "eth9")
