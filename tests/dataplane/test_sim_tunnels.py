"""Simulator overlays: VXLAN, Geneve and NVGRE between two hosts — outer headers, UDP source-port
entropy, checksums, byte-for-byte inner frames — and MTU: bridge drops, DF drops with ICMP
fragmentation needed / packet too big, fragmentation and reassembly."""

from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_graphs import Lab, assert_valid

from netvirt.dataplane.events import Action, Disposition
from netvirt.dataplane.sim import Simulator
from netvirt.wire.builders import probe
from netvirt.dataplane.sim.packets import entropy
from netvirt.graph import DeviceKind, PortRange, Proto, Socket, Tunnel
from netvirt.wire import dissect, flow_entropy, geneve, icmpv4, icmpv6, nvgre, udp, vxlan
from netvirt.wire.fields import headers

A, B = ip_address("10.0.0.2"), ip_address("10.0.0.3")
UNDERLAY = {"h1": "192.0.2.1", "h2": "192.0.2.2"}
OUTER = {DeviceKind.VXLAN: vxlan.Repr, DeviceKind.GENEVE: geneve.Repr, DeviceKind.NVGRE: nvgre.Repr}


def overlay(kind=DeviceKind.VXLAN, *, underlay_mtu=1500, overlay_mtu=1450, pod_mtu=None, udp_checksum=True):
    """Two hosts, each with a pod on br0 and a tunnel port; a on h1, b (listening tcp/80, udp/53) on h2."""
    lab = Lab("h1")
    ends = []
    for host, pod, address in (("h1", "a", "10.0.0.2/24"), ("h2", "b", "10.0.0.3/24")):
        lab.host(host)
        lab.ns("host")
        nic = lab.add(DeviceKind.NIC, "eth0", "host", addresses=[f"{UNDERLAY[host]}/24"], mtu=underlay_mtu)
        ends.append((host, nic))
        lab.bridge(address=None, mtu=overlay_mtu)
        other = UNDERLAY["h2" if host == "h1" else "h1"]
        lab.add(kind, "tun0", "host", master="br0", mtu=overlay_mtu, config=Tunnel(
            vni=5000, local=ip_address(UNDERLAY[host]), dst_port=6081 if kind is DeviceKind.GENEVE else 4789,
            udp_checksum=udp_checksum, flood=(ip_address(other),)))
        lab.pod(pod, address, gateway=None, mtu=pod_mtu or overlay_mtu, listen=("tcp", 80) if pod == "b" else None)
        if pod == "b":
            lab.add(DeviceKind.SOCKET, "udp-53", "b", config=Socket(proto=Proto.UDP, port=53, app="dns"))
    lab.segment("underlay", *ends, mtu=underlay_mtu)
    return lab.network()


@pytest.mark.parametrize("kind", [DeviceKind.VXLAN, DeviceKind.GENEVE, DeviceKind.NVGRE])
def test_encapsulation_crosses_hosts_and_restores_the_inner_frame(kind):
    walk = Simulator(overlay(kind)).send("h1", "a", probe(A, B, "tcp", src_port=40000, dst_port=80))
    assert walk.disposition is Disposition.DELIVERED and walk.delivered_in == ("h2", "b")
    encap = next(e for e in walk.events if e.action is Action.ENCAP)
    decap = next(e for e in walk.events if e.action is Action.DECAP)
    sent = next(e for e in walk.events if e.action is Action.FORWARD and e.host == "h1")
    layers = dissect(encap.packet)
    outer_ip = layers[1]
    assert (outer_ip.src, outer_ip.dst) == (ip_address("192.0.2.1").packed, ip_address("192.0.2.2").packed)
    tunnel = next(layer for layer in layers if isinstance(layer, OUTER[kind]))
    assert (tunnel.vsid if kind is DeviceKind.NVGRE else tunnel.vni) == 5000
    # the inner frame is carried and restored byte for byte
    assert encap.packet.endswith(sent.packet)
    assert decap.packet == sent.packet
    assert encap.overhead == {DeviceKind.NVGRE: 42}.get(kind, 50) and decap.overhead == 0
    if kind is not DeviceKind.NVGRE:
        port = next(layer for layer in layers if isinstance(layer, udp.Repr)).src_port
        assert port == 32768 + (flow_entropy(sent.packet) - 49152) % (61000 - 32768 + 1)
    for event in walk.events:
        assert_valid(event.packet)


def test_source_port_entropy_follows_the_flow_and_the_tunnel_range():
    network = overlay()
    ports = set()
    for source_port in range(40000, 40032):
        walk = Simulator(network).send("h1", "a", probe(A, B, "tcp", src_port=source_port, dst_port=80))
        encap = next(e for e in walk.events if e.action is Action.ENCAP)
        ports.add(headers(encap.packet).src_port)
    assert len(ports) > 24  # different flows spread over the ECMP range
    assert all(32768 <= port <= 61000 for port in ports)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=40), st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(["tcp", "udp"]))
def test_entropy_equals_wire_flow_entropy(payload, sport, dport, proto):
    packet = probe(A, B, proto, src_port=sport, dst_port=dport, size=40 + len(payload))
    frame = bytes(6) + bytes(6) + b"\x08\x00" + packet
    assert entropy(frame) == flow_entropy(frame)
    assert entropy(b"\x01" * 20) == flow_entropy(b"\x01" * 20)


def test_zero_udp_checksum_when_the_tunnel_says_so():
    walk = Simulator(overlay(udp_checksum=False)).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    encap = next(e for e in walk.events if e.action is Action.ENCAP)
    assert encap.packet[14 + 20 + 6:14 + 20 + 8] == b"\0\0"
    assert walk.disposition is Disposition.DELIVERED


def test_bridge_drops_frames_bigger_than_the_overlay_port_mtu():
    # pods think the MTU is 1500, the overlay port leaves room for VXLAN: 1450
    network = overlay(pod_mtu=1500)
    walk = Simulator(network).send("h1", "a", probe(A, B, "tcp", dst_port=80, size=1480))
    assert walk.disposition is Disposition.DROPPED
    drop = walk.events[-1]
    assert drop.cause == "mtu" and drop.device == "tun0" and "silently" in drop.message
    small = Simulator(network).send("h1", "a", probe(A, B, "tcp", dst_port=80, size=1400))
    assert small.disposition is Disposition.DELIVERED


def test_outer_packets_fragment_when_the_underlay_is_too_small():
    network = overlay(underlay_mtu=1400, overlay_mtu=1500, pod_mtu=1500)
    walk = Simulator(network).send("h1", "a", probe(A, B, "udp", src_port=5000, dst_port=53, size=1450,
                                                     dont_fragment=False))
    fragment = next(e for e in walk.events if e.action is Action.FRAGMENT)
    assert fragment.overhead == 50 and "2 fragments" in fragment.message
    held, whole = [e for e in walk.events if e.action is Action.REASSEMBLE]
    assert "held" in held.message and "reassembled" in whole.message
    assert walk.disposition is Disposition.DELIVERED
    for event in walk.events:
        assert_valid(event.packet)


def test_routed_packet_with_df_gets_fragmentation_needed_and_ipv6_packet_too_big():
    lab = Lab()
    lab.ns("host", ip_forward=True, ipv6_forward=True)
    lab.bridge(address="10.0.0.1/24")
    lab.bridge(name="br1", address="10.1.0.1/24", mtu=1280)
    lab.pod("a", "10.0.0.2/24", mtu=1500)
    lab.pod("z", "10.1.0.2/24", gateway="10.1.0.1", bridge="br1", mtu=1280, listen=("udp", 53))
    network = lab.network()
    z = ip_address("10.1.0.2")
    walk = Simulator(network).send("h1", "a", probe(A, z, "udp", src_port=5000, dst_port=53, size=1400))
    assert walk.disposition is Disposition.REJECTED and "fragmentation needed" in walk.reason
    error = dissect(next(e for e in walk.events if e.action is Action.REPLY).packet)
    assert (error[2].type, error[2].code, error[2].next_hop_mtu) == (icmpv4.DESTINATION_UNREACHABLE, 4, 1280)
    assert walk.events[-1].namespace == "a" and walk.events[-1].reply
    fragmented = Simulator(network).send("h1", "a", probe(A, z, "udp", src_port=5000, dst_port=53, size=1400,
                                                          dont_fragment=False))
    assert fragmented.disposition is Disposition.DELIVERED
    assert any(e.action is Action.FRAGMENT for e in fragmented.events)
    for event in walk.events + fragmented.events:
        assert_valid(event.packet)


def test_ipv6_is_never_fragmented_by_routers_packet_too_big_goes_back():
    lab = Lab()
    lab.ns("host", ipv6_forward=True)
    lab.bridge(address="fd00::1/64")
    lab.bridge(name="br1", address="fd01::1/64", mtu=1280)
    lab.pod("a", "fd00::2/64", gateway="fd00::1")
    lab.pod("z", "fd01::2/64", gateway="fd01::1", bridge="br1", mtu=1280, listen=("udp", 53))
    walk = Simulator(lab.network()).send("h1", "a", probe(ip_address("fd00::2"), ip_address("fd01::2"), "udp",
                                                          src_port=5000, dst_port=53, size=1400))
    assert walk.disposition is Disposition.REJECTED and "packet too big" in walk.reason
    error = dissect(next(e for e in walk.events if e.action is Action.REPLY).packet)
    assert (error[2].type, error[2].mtu) == (icmpv6.PACKET_TOO_BIG, 1280)
    for event in walk.events:
        assert_valid(event.packet)


def test_no_fdb_entry_drops_at_the_tunnel():
    lab = Lab()
    lab.ns("host")
    lab.add(DeviceKind.NIC, "eth0", "host", addresses=["192.0.2.1/24"])
    lab.bridge(address=None)
    lab.add(DeviceKind.VXLAN, "tun0", "host", master="br0", config=Tunnel(vni=7, local=ip_address("192.0.2.1"),
                                                                          src_ports=PortRange(49152, 65535)))
    lab.pod("a", "10.0.0.2/24", gateway=None)
    network = lab.network()
    unresolved = Simulator(network).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert unresolved.disposition is Disposition.DROPPED and unresolved.events[-1].cause == "neighbour"
    assert not any(e.reply for e in unresolved.events)  # a local send fails, no ICMP to itself
    simulator = Simulator(network)
    simulator.state.neighbours[("h1", "a", "eth0")] = {B.packed: bytes.fromhex("020000000099")}
    walk = simulator.send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert walk.events[-1].cause == "no-fdb" and walk.events[-1].device == "tun0"


@settings(max_examples=80, deadline=None)
@given(st.ip_addresses(v=4) | st.ip_addresses(v=6), st.integers(0, 2**128 - 1), st.sampled_from(["tcp", "udp", "icmp"]),
       st.integers(1, 65535), st.integers(1, 65535), st.integers(0, 200))
def test_probes_from_templates_equal_probes_built_whole(src, other, proto, sport, dport, size):
    from ipaddress import IPv4Address, IPv6Address

    from netvirt.wire.builders import _probe

    dst = IPv4Address(other % 2**32) if src.version == 4 else IPv6Address(other)
    assert probe(src, dst, proto, src_port=sport, dst_port=dport, size=size) == \
        _probe(src, dst, proto, sport, dport, size, 64, True, 1)
