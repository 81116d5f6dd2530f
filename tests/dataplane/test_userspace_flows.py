"""The userspace switch's flow cache against its slow path (the simulator): the action compiled
from a flow's first packet must give, for every later packet of the flow, exactly the bytes the
simulator gives for that packet — encapsulation (VXLAN, Geneve with options, NVGRE; outer UDP
checksum per packet), routing (MAC rewrite, TTL, checksum delta) and decapsulation."""

from ipaddress import ip_interface
from pathlib import Path

import pytest

from netvirt.control.compile import compile_network
from netvirt.dataplane.userspace.flows import compile_output, full_key, key_of, keyable, run_output
from netvirt.dataplane.userspace.oracle import Oracle
from netvirt.dataplane.userspace.rings import TX_DATA
from netvirt.management.spec import load
from netvirt.wire import ethernet, ipv4, udp
from netvirt.wire.addresses import mac_to_bytes
from netvirt.wire.builders import build

SPEC = Path(__file__).parents[2] / "examples" / "encapsulations.yaml"


@pytest.fixture(scope="module")
def network():
    return compile_network(load(SPEC))


def endpoint(network, host, name):
    graph = next(g for g in network.hosts if g.host == host)
    dev = graph.device(name, "eth0")
    return mac_to_bytes(dev.mac), ip_interface(dev.addresses[0]).ip.packed


def udp_frame(src, dst, dst_mac, ident, payload, ttl=64):
    return build([ethernet.Repr(dst=dst_mac, src=src[0], ethertype=0x0800),
                  ipv4.Repr(src=src[1], dst=dst, protocol=17, ttl=ttl, identification=ident),
                  udp.Repr(src_port=40000, dst_port=53)], payload)


def port(oracle, name):
    return oracle.names.index(name)


def check_flow(oracle, in_port, frames):
    """Compile from frames[0]; every frame's fast-path bytes equal the simulator's."""
    first = oracle.decide(in_port, frames[0])
    assert first.outputs and first.cacheable
    compiled = [compile_output(frames[0], out, data) for out, data in first.outputs]
    assert all(c is not None for c in compiled)
    for frame in frames:
        assert key_of(frame) == key_of(frames[0])
        expected = oracle.decide(in_port, frame).outputs
        got = [(c.port, run_output(c, frame)[TX_DATA:]) for c in compiled]
        assert got == list(expected)
    return first.outputs


@pytest.mark.parametrize("net", ["vx", "gen", "nv"])
def test_encapsulation_per_packet_equals_the_simulator(network, net):
    oracle = Oracle(network, "host-a")
    src = endpoint(network, "host-a", f"{net}-a")
    dst_mac, dst = endpoint(network, "host-b", f"{net}-b")
    frames = [udp_frame(src, dst, dst_mac, ident, payload)
              for ident, payload in ((1, b"first"), (2, b"second!"[:5]), (999, b"\xff" * 5))]
    outputs = check_flow(oracle, port(oracle, f"ve-{net}-a-0"), frames)
    assert all(keyable(frame) for frame in frames)
    (out, data), = outputs
    assert oracle.names[out] == "eth0" and data.endswith(frames[0])
    assert len(data) - len(frames[0]) == {"vx": 50, "gen": 62, "nv": 42}[net]


def test_routed_packet_rewrites_macs_ttl_and_checksum_then_encapsulates(network):
    oracle = Oracle(network, "host-a")
    src = endpoint(network, "host-a", "vx-a")
    _, dst = endpoint(network, "host-b", "gen-b")
    gateway = mac_to_bytes(next(g for g in network.hosts if g.host == "host-a").device("lab-router", "gw-vx").mac)
    frames = [udp_frame(src, dst, gateway, ident, b"hello") for ident in (7, 8, 4242)]
    (out, data), = check_flow(oracle, port(oracle, "ve-vx-a-0"), frames)
    inner = data[62:]
    assert inner[22] == 63  # the router decremented the TTL


def test_decapsulation_at_the_remote_host(network):
    sender = Oracle(network, "host-a")
    src = endpoint(network, "host-a", "nv-a")
    dst_mac, dst = endpoint(network, "host-b", "nv-b")
    frames = [udp_frame(src, dst, dst_mac, ident, b"x" * 9) for ident in (1, 2, 3)]
    wire = [sender.decide(port(sender, "ve-nv-a-0"), frame).outputs[0][1] for frame in frames]
    receiver = Oracle(network, "host-b")
    assert not any(keyable(packet) for packet in wire)  # the key must include the inner frame
    (out, data), = check_flow(receiver, port(receiver, "eth0"), wire)
    assert receiver.names[out] == "ve-nv-b-0" and data == frames[0]


def test_full_key_ignores_what_changes_per_packet_only():
    """(For frames the fast key is incomplete for, e.g. with IPv4 options; plain UDP here.)"""
    frame = udp_frame((b"\x02" * 6, ip_interface("10.0.0.1/24").ip.packed), ip_interface("10.0.0.2/24").ip.packed,
                      b"\x02\0\0\0\0\1", 5, b"abc")
    other = udp_frame((b"\x02" * 6, ip_interface("10.0.0.1/24").ip.packed), ip_interface("10.0.0.2/24").ip.packed,
                      b"\x02\0\0\0\0\1", 6, b"abd")
    assert full_key(frame) == full_key(other)  # identification, checksums and payload masked
    assert full_key(frame) != full_key(other[:-1])  # the length is part of the key
