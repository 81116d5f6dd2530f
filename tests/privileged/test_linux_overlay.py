"""Two hosts on an underlay, each with a bridge, a VXLAN device and two endpoints: real ping and
real TCP across the overlay (IPv4 and IPv6), VXLAN with the right VNI on the wire, and a rebuild
that converges after the topology was damaged."""

import pytest
from linux_testbed import (  # noqa: F401 (deployment is a fixture)
    UNDERLAY,
    VNI,
    TcpServer,
    build_overlay,
    deployment,
    new_deployment,
    ping,
    tcp_request,
)
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from netvirt.dataplane.kernel import links, netns
from netvirt.dataplane.kernel.capture import Capture
from netvirt.dataplane.kernel.cleanup import cleanup


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    dep = new_deployment(tmp_path_factory.mktemp("state"))
    try:
        with dep.builder() as build:
            topology = build_overlay(build)
        yield dep, topology
    finally:
        cleanup(dep.names, dep.state_dir)
        assert dep.namespaces() == []


@pytest.mark.parametrize("version", [4, 6])
def test_ping_within_and_across_hosts(overlay, version):
    _, topo = overlay
    source = topo.endpoints["h1a"]
    for target in ("h1b", "h2a", "h2b"):
        assert ping(source.namespace, topo.endpoints[target].address(version)), f"{source.local} -> {target}"
    assert ping(topo.endpoints["h2b"].namespace, source.address(version))


@pytest.mark.parametrize("version", [4, 6])
def test_tcp_across_the_overlay(overlay, version):
    _, topo = overlay
    server, client = topo.endpoints["h2b"], topo.endpoints["h1a"]
    payload = bytes(range(256)) * 64  # 16 KiB: several segments through the tunnel
    with TcpServer(server.namespace, server.address(version), 7000, name=b"h2b:"):
        reply = tcp_request(client.namespace, server.address(version), 7000, payload)
    assert reply == b"h2b:" + payload


def test_underlay_carries_vxlan_with_the_vni(overlay):
    _, topo = overlay
    src, dst = topo.endpoints["h1a"], topo.endpoints["h2a"]
    host1, host2 = topo.hosts["h1"], topo.hosts["h2"]
    with Capture([(host1, "eth0"), (dst.namespace, "eth0")]) as capture:
        assert ping(src.namespace, dst.ipv4)

        def vxlan_echo(frame):
            packet = Ether(frame.data)
            # the echo itself, not IPv6 ND/MLD chatter that the endpoints also tunnel
            return frame.device == "eth0" and frame.namespace == host1 and frame.outgoing \
                and UDP in packet and packet[UDP].dport == 4789 \
                and VXLAN in packet and ICMP in packet[VXLAN].payload
        tunnelled = capture.wait_for(vxlan_echo)
        delivered = capture.wait_for(lambda f: f.namespace == dst.namespace and ICMP in Ether(f.data))
    assert tunnelled is not None and delivered is not None
    outer = Ether(tunnelled.data)
    assert (outer[IP].src, outer[IP].dst) == (UNDERLAY["h1"], UNDERLAY["h2"])
    assert outer[VXLAN].vni == VNI
    inner = outer[VXLAN].payload
    assert inner.src == src.mac and inner.dst == dst.mac
    assert (inner[IP].src, inner[IP].dst, inner[ICMP].type) == (src.ipv4, dst.ipv4, 8)
    assert Ether(delivered.data)[IP].src == src.ipv4  # decapsulated at host2, unchanged inside
    assert tunnelled.timestamp <= delivered.timestamp
    # no flood-and-learn: nothing but unicast VXLAN to the one remote VTEP left host1
    vxlan_out = [Ether(f.data) for f in capture.frames()
                 if f.namespace == host1 and f.outgoing and UDP in Ether(f.data) and Ether(f.data)[UDP].dport == 4789]
    assert {p[IP].dst for p in vxlan_out} == {UNDERLAY["h2"]}


def test_ipv6_inner_packets_are_tunnelled_too(overlay):
    _, topo = overlay
    src, dst = topo.endpoints["h2b"], topo.endpoints["h1b"]

    def tunnelled_echo(frame) -> bool:  # the probe only: the host's own MLD reports ride the VXLAN too
        packet = Ether(frame.data)
        if not (frame.outgoing and VXLAN in packet):
            return False
        inner = packet[VXLAN].payload
        return IPv6 in inner and ICMPv6EchoRequest in inner and (inner[IPv6].src, inner[IPv6].dst) == (src.ipv6, dst.ipv6)

    with Capture([(topo.hosts["h2"], "eth0")]) as capture:
        assert ping(src.namespace, dst.ipv6)
        frame = capture.wait_for(tunnelled_echo)
    assert frame is not None
    assert Ether(frame.data)[UDP].dport == 4789


def test_rebuild_is_a_no_op_then_repairs_damage(deployment):
    with deployment.builder() as build:
        topo = build_overlay(build)
        before = build.record.objects
    with deployment.builder() as build:  # a second run changes nothing and records nothing new
        build_overlay(build)
        assert build.record.objects == before
    host1, h1a, h2a = topo.hosts["h1"], topo.endpoints["h1a"], topo.endpoints["h2a"]
    ipr = netns.netlink(host1)
    try:  # damage: a deleted veth, a deleted VXLAN device, flushed addresses
        assert links.delete(ipr, "h1a") and links.delete(ipr, "vx100")
    finally:
        ipr.close()
    netns.run(h2a.namespace, ["ip", "addr", "flush", "dev", "eth0"])
    assert not ping(h1a.namespace, h2a.ipv4, timeout=1)
    with deployment.builder() as build:
        build_overlay(build)
    for target in ("h1b", "h2a"):
        for version in (4, 6):
            assert ping(h1a.namespace, topo.endpoints[target].address(version))
