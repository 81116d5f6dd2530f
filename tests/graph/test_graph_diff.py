"""diff(): changes by identity (name), with the fields that differ; counts add up."""

import dataclasses

from graph_strategies import example_host, example_network, host_graphs
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.graph import (
    Device,
    DeviceKind,
    DeviceRef,
    Link,
    NetworkGraph,
    ObjectKind,
    Op,
    diff,
)


def summary(changes):
    return [(c.op.value, c.kind.value, c.host, c.key, c.fields) for c in changes.changes]


def test_same_graph_has_no_changes():
    graph = example_host()
    result = diff(graph, example_host())
    assert result.empty and result.unchanged == len(graph.namespaces) + len(graph.devices) + len(graph.links)


def test_add_remove_change_by_name():
    old = example_host()
    vxlan = old.device("host1", "vxlan100")
    new = dataclasses.replace(
        old,
        devices=tuple(d for d in old.devices if d.name != "http")
        + (Device.of(DeviceKind.TAP, "tap0", "host1"),),
        links=(Link(a=DeviceRef("host1", "tap0"), b=DeviceRef("host1", "eth0")),),
    )
    new = dataclasses.replace(
        new, devices=tuple(dataclasses.replace(d, mtu=1400) if d is vxlan else d for d in new.devices)
    )
    result = diff(old, new)
    assert summary(result) == [
        ("add", "device", "host1", "host1/tap0", ()),
        ("change", "device", "host1", "host1/vxlan100", ("mtu",)),
        ("remove", "device", "host1", "pod1/http", ()),
        ("add", "link", "host1", "host1/eth0<->host1/tap0", ()),
    ]
    assert [c.key for c in result.of(Op.ADD)] == ["host1/tap0", "host1/eth0<->host1/tap0"]
    assert result.of(Op.REMOVE)[0].old == old.device("pod1", "http")
    assert result.unchanged == 2 + 4


def test_links_are_identified_by_unordered_ends():
    a, b = DeviceRef("h", "tap0"), DeviceRef("h", "eth0")
    old = dataclasses.replace(example_host(), links=(Link(a=a, b=b),))
    new = dataclasses.replace(example_host(), links=(Link(a=b, b=a, technique="VM NIC"),))
    assert summary(diff(old, new)) == [("change", "link", "host1", "h/eth0<->h/tap0", ("a", "b", "technique"))]


def test_network_diff_by_host():
    old = example_network()
    host2 = old.host("host2")
    host3 = dataclasses.replace(old.host("host1"), host="host3")
    changed2 = dataclasses.replace(host2, namespaces=host2.namespaces[:1])
    new = NetworkGraph(hosts=(old.host("host1"), changed2, host3), segments=())
    assert summary(diff(old, new)) == [
        ("remove", "segment", "", "underlay", ()),
        ("remove", "namespace", "host2", "pod1", ()),
        ("add", "host", "host3", "host3", ()),
    ]


@st.composite
def edited(draw, graph):
    """``graph`` with some objects kept, some edited, some dropped and some from another graph."""
    other = draw(host_graphs)

    def edit(objects, change):
        out = []
        for obj in objects:
            fate = draw(st.sampled_from(["keep", "edit", "drop"]))
            if fate != "drop":
                out.append(change(obj) if fate == "edit" else obj)
        return tuple(out)

    return dataclasses.replace(
        graph,
        namespaces=edit(graph.namespaces, lambda n: dataclasses.replace(n, ip_forward=not n.ip_forward))
        + other.namespaces,
        devices=edit(graph.devices, lambda d: dataclasses.replace(d, up=not d.up)) + other.devices,
        links=edit(graph.links, lambda link: dataclasses.replace(link, technique=link.technique + "!")) + other.links,
    )


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_changes_account_for_every_object(data):
    old = data.draw(host_graphs)
    new = data.draw(edited(old))
    def identities(graph):
        return (
            {("namespace", n.name) for n in graph.namespaces}
            | {("device", f"{d.namespace}/{d.name}") for d in graph.devices}
            | {("link", "<->".join(map(str, link.key))) for link in graph.links}
        )

    result = diff(old, new)
    added = {(c.kind.value, c.key) for c in result.of(Op.ADD)}
    removed = {(c.kind.value, c.key) for c in result.of(Op.REMOVE)}
    changed = {(c.kind.value, c.key) for c in result.of(Op.CHANGE)}
    before, after = identities(old), identities(new)
    assert added == after - before
    assert removed == before - after
    assert len(changed) + result.unchanged == len(before & after)
    assert all(c.fields for c in result.of(Op.CHANGE) if c.kind is not ObjectKind.HOST)
    assert diff(new, new).empty
