"""validate(): every invariant, reported all at once with its location."""

import dataclasses
from ipaddress import ip_address, ip_network

from graph_strategies import example_host, example_network

from netvirt.graph import (
    ACCEPT,
    Attachment,
    Bridge,
    Chain,
    Device,
    DeviceHook,
    DeviceKind,
    DeviceRef,
    Dnat,
    FdbEntry,
    HookKind,
    Link,
    Masquerade,
    Match,
    Namespace,
    NamespaceKind,
    NatTarget,
    Neighbour,
    NetfilterHook,
    NetworkGraph,
    Route,
    Rule,
    Mode,
    Segment,
    Stage,
    Verdict,
    Veth,
    validate,
)


def messages(graph):
    return [str(problem) for problem in validate(graph)]


def with_devices(*devices, namespaces=None, links=()):
    graph = example_host()
    return dataclasses.replace(
        graph,
        devices=graph.devices + devices,
        namespaces=graph.namespaces if namespaces is None else namespaces,
        links=links,
    )


def test_examples_are_valid():
    assert messages(example_host()) == []
    assert messages(example_network()) == []


def test_duplicates():
    graph = example_host()
    graph = dataclasses.replace(graph, namespaces=graph.namespaces + graph.namespaces[1:], devices=graph.devices + graph.devices[:1])
    assert messages(graph) == [
        "host1:pod1: duplicate namespace name",
        "host1:host1/eth0: duplicate device name in its namespace",
    ]


def test_device_in_unknown_namespace_and_long_names_are_for_backends():
    """A name's length limit is a backend's (linux: IFNAMSIZ, in its ``check``), not the graph's."""
    graph = with_devices(Device.of(DeviceKind.NIC, "eth1", "nowhere"), Device.of(DeviceKind.NIC, "a-very-long-ifname", "host1"))
    assert messages(graph) == ["host1:nowhere/eth1: namespace 'nowhere' does not exist; add it or fix the name"]


def test_dangling_and_one_sided_veth_peers():
    graph = with_devices(
        Device.of(DeviceKind.VETH, "v1", "host1", config=Veth("v9", "pod1")),
        Device.of(DeviceKind.VETH, "v2", "host1", config=Veth("http", "pod1")),
        Device.of(DeviceKind.VETH, "v3", "host1", config=Veth("eth0", "pod1")),
    )
    assert messages(graph) == [
        "host1:host1/v1: veth peer pod1/v9 does not exist",
        "host1:host1/v2: veth peer pod1/http does not point back",
        "host1:host1/v3: veth peer pod1/eth0 does not point back",
    ]


def test_master_parent_and_fdb_references():
    graph = with_devices(
        Device.of(DeviceKind.TAP, "tap0", "host1", master="eth0", parent="eth7"),
        Device.of(
            DeviceKind.BRIDGE, "br1", "host1", config=Bridge(fdb=(FdbEntry("02:00:00:00:00:09", device="tap0"),))
        ),
    )
    assert messages(graph) == [
        "host1:host1/tap0: master 'eth0' is not a bridge or switch in host1",
        "host1:host1/tap0: parent 'eth7' does not exist in host1",
        "host1:host1/br1: fdb entry 02:00:00:00:00:09 names 'tap0', not a port of this bridge",
    ]


def test_links():
    nic = DeviceRef("host1", "eth0")
    graph = with_devices(
        Device.of(DeviceKind.TAP, "tap0", "host1"),
        links=(
            Link(a=nic, b=DeviceRef("host1", "tap0")),
            Link(a=nic, b=DeviceRef("host1", "ghost")),
            Link(a=DeviceRef("pod1", "http"), b=DeviceRef("pod1", "http")),
            Link(a=DeviceRef("pod1", "eth0"), b=DeviceRef("pod1", "http")),
        ),
    )
    assert messages(graph) == [
        "host1:link host1/eth0<->host1/ghost: end host1/ghost does not exist",
        "host1:link pod1/http<->pod1/http: a link needs two different ends",
        "host1:link pod1/eth0<->pod1/http: end pod1/eth0 is a veth: wire it by its peer",
        "host1:host1/eth0: on 2 links; a device has at most one wire",
    ]


def test_tables_routes_and_neighbours():
    ns = Namespace(
        name="r1",
        kind=NamespaceKind.ROUTER,
        routes=(Route(dst=ip_network("10.0.0.0/8"), dev="eth5"),),
        neighbours=(Neighbour(ip_address("10.0.0.1"), "02:00:00:00:00:01", "eth6"),),
        filter=(
            Chain(hook=NetfilterHook.INPUT, rules=(Rule(action=Masquerade()),)),
            Chain(hook=NetfilterHook.INPUT),
            Chain(hook=NetfilterHook.OUTPUT, rules=(Rule(match=Match(in_iface="lan"), action=ACCEPT),)),
        ),
        nat=(
            Chain(hook=NetfilterHook.FORWARD),
            Chain(hook=NetfilterHook.POSTROUTING, policy=Verdict.DROP,
                  rules=(Rule(action=Dnat(targets=(NatTarget(ip_address("10.0.0.2")),))),)),
            Chain(hook=NetfilterHook.PREROUTING, rules=(Rule(match=Match(out_iface="lan"), action=ACCEPT),)),
        ),
    )
    graph = with_devices(namespaces=example_host().namespaces + (ns,))
    assert messages(graph) == [
        "host1:r1: route 10.0.0.0/8 uses device 'eth5', which is not in r1",
        "host1:r1: neighbour 10.0.0.1 on device 'eth6', not in r1",
        "host1:r1: two filter chains at hook input; merge them into one",
        "host1:r1 filter/input rule 0: action masquerade not allowed here; allowed: accept, drop, reject",
        "host1:r1 filter/output rule 0: matches in_iface at output, where packets have no input interface",
        "host1:r1 filter/output rule 0: matches interface 'lan', which is not in this namespace",
        "host1:r1 nat/forward: no NAT happens at hook forward; use prerouting/output (dnat) or postrouting/input (snat)",
        "host1:r1 nat/postrouting: a NAT chain's policy must be accept; filter in the filter table",
        "host1:r1 nat/postrouting rule 0: action dnat not allowed here; allowed: accept, snat, masquerade",
        "host1:r1 nat/prerouting rule 0: matches out_iface at prerouting, before the output interface is known",
        "host1:r1 nat/prerouting rule 0: matches interface 'lan', which is not in this namespace",
    ]


def test_device_hooks():
    hooks = (
        DeviceHook(kind=HookKind.XDP, program="a", rules=(Rule(action=Masquerade()),)),
        DeviceHook(kind=HookKind.XDP, program="b"),
    )
    graph = with_devices(Device.of(DeviceKind.NIC, "eth1", "host1", hooks=hooks))
    assert messages(graph) == [
        "host1:host1/eth1: two xdp programs attached; attach one per hook",
        "host1:host1/eth1 xdp rule 0: action masquerade not allowed; allowed: accept, drop, reject, dnat, snat",
    ]


def test_network_hosts_segments_and_attachments():
    net = example_network()
    net = NetworkGraph(
        hosts=net.hosts + net.hosts[:1],
        segments=net.segments
        + (Segment(name="underlay", attachments=(Attachment("host1", "host1", "eth0"), Attachment("host3", "h", "e"))),),
    )
    assert messages(net) == [
        "host host1: duplicate host name",
        "segment underlay: duplicate segment name",
        "segment underlay: attachment host3:h/e names no device",
        "host1:host1/eth0: attached to 2 segments; a device plugs into one",
    ]


def test_stage_places():
    def stage(name, *places):
        return Stage(name=name, mode=Mode.KERNEL, level="Namespace", technique="Veth Pair", places=places)

    good = dataclasses.replace(example_host(), stages=(stage("pod", "pod1", "pod1/eth0"), stage("nic", "host1/eth0:driver")))
    assert messages(good) == []
    bad = dataclasses.replace(example_host(), stages=(stage("a", "pod9", "pod1/eth9", "host1/eth0:napi"), stage("b", "pod1"), stage("c", "pod1")))
    assert messages(bad) == [
        "host1:stage a: place 'pod9' names no namespace or device (write NS, NS/DEV or NS/DEV:driver)",
        "host1:stage a: place 'pod1/eth9' names no namespace or device (write NS, NS/DEV or NS/DEV:driver)",
        "host1:stage a: place 'host1/eth0:napi' names no namespace or device (write NS, NS/DEV or NS/DEV:driver)",
        "host1:stage b: place 'pod1' is in more than one stage",
        "host1:stage c: place 'pod1' is in more than one stage",
    ]
