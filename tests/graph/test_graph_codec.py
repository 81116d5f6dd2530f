"""JSON round trip of every graph object, the literal format, and located errors on bad JSON."""

import json
from ipaddress import ip_address, ip_network

import pytest
from graph_strategies import example_host, example_network, host_graphs, network_graphs, rules
from hypothesis import given, settings

from netvirt.graph import (
    ACCEPT,
    Device,
    DeviceKind,
    Dnat,
    GeneveOption,
    GraphError,
    HostGraph,
    Match,
    Mode,
    NatTarget,
    NetworkGraph,
    PortRange,
    Proto,
    Rule,
    Tunnel,
    from_json,
    to_json,
)


@settings(max_examples=60, deadline=None)
@given(host_graphs)
def test_host_graph_round_trip(graph):
    text = to_json(graph)
    assert from_json(HostGraph, text) == graph
    assert to_json(from_json(HostGraph, text)) == text  # deterministic


@settings(max_examples=20, deadline=None)
@given(network_graphs)
def test_network_graph_round_trip(graph):
    assert from_json(NetworkGraph, to_json(graph, indent=2)) == graph


@settings(max_examples=100, deadline=None)
@given(rules)
def test_rule_round_trip(rule):
    assert from_json(Rule, to_json(rule)) == rule


def test_examples_round_trip():
    assert from_json(NetworkGraph, to_json(example_network())) == example_network()


def test_literal_format():
    rule = Rule(
        match=Match(dst=ip_network("10.96.0.10/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
        action=Dnat(targets=(NatTarget(ip_address("10.244.1.5"), 8080),)),
    )
    assert json.loads(to_json(rule)) == {
        "match": {"dst": "10.96.0.10/32", "proto": "tcp", "dst_ports": {"first": 80, "last": 80}},
        "action": {"type": "dnat", "targets": [{"address": "10.244.1.5", "port": 8080}]},
    }
    vxlan = Device.of(DeviceKind.VXLAN, "vx1", "h1", config=Tunnel(vni=7, remote=ip_address("fd00::2")))
    assert json.loads(to_json(vxlan)) == {
        "name": "vx1",
        "namespace": "h1",
        "kind": "vxlan",
        "mode": "Kernel",
        "level": "Linux Kernel",
        "technique": "VXLAN Encapsulation",
        "config": {"type": "tunnel", "vni": 7, "remote": "fd00::2"},
    }


def test_geneve_options_literal_format_and_round_trip():
    options = (GeneveOption(0x0102, 0x80, bytes.fromhex("0000abcd")), GeneveOption(0xFFFF, 1))
    geneve = Device.of(DeviceKind.GENEVE, "gnv1", "h1", config=Tunnel(vni=7, dst_port=6081, options=options))
    assert json.loads(to_json(geneve))["config"] == {
        "type": "tunnel",
        "vni": 7,
        "dst_port": 6081,
        "options": [{"option_class": 258, "type": 128, "data": "0000abcd"}, {"option_class": 65535, "type": 1}],
    }
    assert from_json(Device, to_json(geneve)) == geneve


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("abc", r"\$.config.options\[0\].data: expected hex digits"),
        (7, r"\$.config.options\[0\].data: expected hex digits"),
        ("00ab", r"\$.config.options\[0\]: geneve option class 0x0001 data: 2 bytes; expected whole 4-byte words"),
    ],
)
def test_bad_geneve_option_data_is_located(data, message):
    text = json.dumps({
        "name": "gnv1", "namespace": "h1", "kind": "geneve", "mode": "Kernel", "level": "Linux Kernel",
        "technique": "Geneve Encapsulation",
        "config": {"type": "tunnel", "vni": 7, "options": [{"option_class": 1, "type": 2, "data": data}]},
    })
    with pytest.raises(GraphError, match=message):
        from_json(Device, text)


def _device_json(**changes):
    data = json.loads(to_json(Device.of(DeviceKind.NIC, "eth0", "h1")))
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        (_device_json(mtu="1500"), "$.mtu: expected int"),
        (_device_json(mtu=True), "$.mtu: expected int"),
        (_device_json(mtu=10), "$: device h1/eth0 mtu: 10 is out of range; expected an integer 68..65535"),
        (_device_json(kind="router"), "$.kind: expected one of nic, veth,"),
        (_device_json(mode="kernel"), "$.mode: expected one of Hardware, Kernel, User, Kernel/User"),
        (_device_json(colour="red"), "$: unknown field(s) ['colour'] for Device"),
        (_device_json(addresses=["10.0.0.300/24"]), "$.addresses[0]:"),
        (_device_json(config={"type": "bogus"}), '$.config: expected an object with "type" one of veth, bridge'),
        (_device_json(mac="02:00:00:00:00"), "is not a MAC address"),
        (_device_json(backends=["sim"]), "$: unknown field(s) ['backends'] for Device"),
    ],
)
def test_bad_json_is_located(text, message):
    with pytest.raises(GraphError) as error:
        from_json(Device, text)
    assert message in str(error.value)


def test_missing_field_is_named():
    data = json.loads(to_json(Device.of(DeviceKind.NIC, "eth0", "h1")))
    del data["technique"]
    with pytest.raises(GraphError, match=r"\$: missing field 'technique' of Device"):
        from_json(Device, json.dumps(data))


def test_wrong_config_for_kind_is_rejected():
    data = json.loads(to_json(Device.of(DeviceKind.NIC, "eth0", "h1")))
    data["config"] = {"type": "tunnel", "vni": 1}
    with pytest.raises(GraphError, match="kind nic takes no config, got Tunnel"):
        from_json(Device, json.dumps(data))


def test_nested_path_in_errors():
    data = json.loads(to_json(example_host()))
    data["namespaces"][0]["filter"][0]["rules"][1]["match"]["dst_ports"]["last"] = 70000
    with pytest.raises(GraphError, match=r"\$\.namespaces\[0\]\.filter\[0\]\.rules\[1\]\.match\.dst_ports: .*70000"):
        from_json(HostGraph, json.dumps(data))


def test_defaults_are_omitted_and_restored():
    rule = Rule(action=ACCEPT)
    assert to_json(rule) == '{"action": {"type": "accept"}}'
    assert from_json(Rule, to_json(rule)) == rule
    assert from_json(Device, to_json(Device.of(DeviceKind.NIC, "e", "n"))).mode is Mode.HARDWARE
