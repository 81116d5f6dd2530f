"""Whole frames: dissect's dispatch, to_json, summary, build, encapsulate and flow_entropy."""

import json

import pytest

from netvirt.wire import (BadChecksum, build, dissect, encapsulate, ethernet, flow_entropy, geneve, gre, icmpv4,
                          icmpv6, ipv4, ipv6, nvgre, summary, tcp, to_json, udp, vxlan)
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

A = ip_to_bytes
MAC1, MAC2 = mac_to_bytes("02:00:00:00:00:01"), mac_to_bytes("02:00:00:00:00:02")
OUTER = dict(outer_src="192.0.2.1", outer_dst="192.0.2.2", outer_src_mac="00:00:5e:00:53:01",
             outer_dst_mac="00:00:5e:00:53:02")


def inner_tcp(src_port=41000, body=b"GET /"):
    return build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.TCP),
                  tcp.Repr(src_port, 80, 1, 0, tcp.SYN)], body)


def test_vxlan_frame_json_shape_and_summary():
    frame = encapsulate(inner_tcp(), encap="vxlan", vni=100, src_port=50000, **OUTER)
    layers = dissect(frame)
    rendered = to_json(layers)
    json.dumps(rendered)
    assert [entry["layer"] for entry in rendered] == ["ethernet", "ipv4", "udp", "vxlan", "ethernet", "ipv4", "tcp"]
    assert {k: rendered[0][k] for k in ("src", "dst", "ethertype")} == {
        "src": "00:00:5e:00:53:01", "dst": "00:00:5e:00:53:02", "ethertype": 2048}
    assert {k: rendered[1][k] for k in ("src", "dst", "protocol", "ttl")} == {
        "src": "192.0.2.1", "dst": "192.0.2.2", "protocol": 17, "ttl": 64}
    assert rendered[2] == {"layer": "udp", "src_port": 50000, "dst_port": 4789}
    assert rendered[3] == {"layer": "vxlan", "vni": 100}
    assert summary(layers) == ("192.0.2.1.50000 > 192.0.2.2.4789: udp | vxlan vni 100 | "
                               "10.0.0.1.41000 > 10.0.0.2.80: tcp [S] seq 1")


def test_geneve_and_nvgre_over_ipv6_summary_and_json():
    options = (geneve.Option(0x0102, 0x80, b"\x00\x00\x00\x07"),)
    inner_geneve = encapsulate(inner_tcp(), encap="geneve", vni=7, options=options, src_port=50001,
                               outer_src="fd00::1", outer_dst="fd00::2", outer_src_mac=MAC1, outer_dst_mac=MAC2)
    frame = encapsulate(inner_geneve, encap="nvgre", vni=5000, flow_id=9, **OUTER)
    layers = dissect(frame)
    assert to_json(layers)[2] == {"layer": "nvgre", "vsid": 5000, "flow_id": 9}
    assert to_json(layers)[6]["options"] == [{"class": 0x0102, "type": 0x80, "data": "00000007"}]
    assert summary(layers) == ("192.0.2.1 > 192.0.2.2: ipv4 protocol 47 ttl 64 | nvgre vsid 5000 flow_id 9 | "
                               "fd00::1.50001 > fd00::2.6081: udp | geneve vni 7 options 1 | "
                               "10.0.0.1.41000 > 10.0.0.2.80: tcp [S] seq 1")
    assert ipv6.Repr.parse(frame[14 + 20 + 8 + 14:]).next_header == ipv4.UDP


def test_underlay_family_follows_the_addresses():
    frame = encapsulate(inner_tcp(), encap="vxlan", vni=1, outer_src=A("fd00::1"), outer_dst=A("fd00::2"),
                        outer_src_mac=MAC1, outer_dst_mac=MAC2, ttl=9)
    outer = dissect(frame)[1]
    assert isinstance(outer, ipv6.Repr) and outer.hop_limit == 9
    assert udp.Repr.parse(frame[54:], A("fd00::1"), A("fd00::2"))  # checksum present and valid over IPv6
    with pytest.raises(ValueError, match="different families"):
        encapsulate(inner_tcp(), encap="vxlan", vni=1, outer_src="fd00::1", outer_dst="192.0.2.2",
                    outer_src_mac=MAC1, outer_dst_mac=MAC2)


@pytest.mark.parametrize("arguments, message", [
    (dict(encap="vxlan-gpe", vni=1), "encap must be"),
    (dict(encap="vxlan", vni=1, options=(geneve.Option(1, 1),)), "options are for geneve"),
    (dict(encap="geneve", vni=1, flow_id=3), "flow_id is for nvgre"),
    (dict(encap="nvgre", vni=1, src_port=1), "no UDP source port"),
    (dict(encap="vxlan", vni=1 << 24), "does not fit 24 bits"),
])
def test_encapsulate_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        encapsulate(inner_tcp(), **arguments, **OUTER)


def test_bad_address_text_is_a_clear_error():
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address: '192.0.2.300'"):
        encapsulate(inner_tcp(), encap="vxlan", vni=1, **{**OUTER, "outer_src": "192.0.2.300"})
    with pytest.raises(ValueError, match="not a MAC address"):
        encapsulate(inner_tcp(), encap="vxlan", vni=1, **{**OUTER, "outer_src_mac": "00:11"})


def test_flow_entropy_is_per_flow():
    ports = {flow_entropy(inner_tcp(src_port)) for src_port in range(40000, 40064)}
    assert all(49152 <= port <= 65535 for port in ports)
    assert len(ports) > 48  # 64 flows spread over the range
    assert flow_entropy(inner_tcp(41000, b"one")) == flow_entropy(inner_tcp(41000, b"another payload"))
    frame = encapsulate(inner_tcp(), encap="vxlan", vni=1, **OUTER)
    assert dissect(frame)[2].src_port == flow_entropy(inner_tcp())
    assert 49152 <= flow_entropy(b"\x01" * 20) <= 65535  # not decodable: hashes the Ethernet header


def test_fragments_stop_at_the_ip_layer():
    first = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4),
                   ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.UDP, identification=7, more_fragments=True)],
                  udp.Repr(1, 2).emit(bytes(100), src=A("10.0.0.1"), dst=A("10.0.0.2"))[:48])
    layers = dissect(first)
    assert [layer.layer for layer in layers] == ["ethernet", "ipv4"]
    assert summary(layers) == "10.0.0.1 > 10.0.0.2: ipv4 protocol 17 ttl 64 fragment id 7 offset 0 +"
    later = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV6),
                   ipv6.Repr(A("fd00::1"), A("fd00::2"), ipv4.UDP, fragment=ipv6.Fragment(7, 6))], bytes(16))
    assert [layer.layer for layer in dissect(later)] == ["ethernet", "ipv6"]
    assert dissect(later)[1].is_fragment


def test_gre_shapes():
    def over_gre(header, inner=inner_tcp()):
        return build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("192.0.2.1"), A("192.0.2.2"), ipv4.GRE),
                      header], inner)
    assert dissect(over_gre(nvgre.Repr(10, 1)))[2] == nvgre.Repr(10, 1)
    with_sequence = gre.Repr(0x6558, key=10 << 8, sequence_number=3)  # not NVGRE's shape: plain GRE
    layers = dissect(over_gre(with_sequence))
    assert layers[2] == with_sequence and layers[3].layer == "ethernet"
    assert summary(layers).startswith("192.0.2.1 > 192.0.2.2: ipv4 protocol 47 ttl 64 | gre protocol 0x6558 key 2560 seq 3 | ")
    ip_over_gre = over_gre(gre.Repr(ethernet.IPV4, checksum_present=True), inner_tcp()[14:])
    assert [layer.layer for layer in dissect(ip_over_gre)[2:4]] == ["gre", "ipv4"]


def test_icmp_errors_quote_the_datagram():
    quoted = build([ipv6.Repr(A("fd00::1"), A("fd00::9"), ipv4.UDP), udp.Repr(33434, 33435)], bytes(1400))
    frame = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV6), ipv6.Repr(A("fd00::fe"), A("fd00::1"), ipv4.ICMPV6),
                   icmpv6.Repr(icmpv6.PACKET_TOO_BIG, mtu=1280)], quoted[:1232])
    layers = dissect(frame)
    assert [layer.layer for layer in layers] == ["ethernet", "ipv6", "icmpv6", "ipv6", "udp"]
    assert summary(layers) == ("fd00::fe > fd00::1: icmpv6 packet too big mtu 1280 | "
                               "quoted fd00::1.33434 > fd00::9.33435: udp")
    frame = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("10.0.0.254"), A("10.0.0.1"), ipv4.ICMP),
                   icmpv4.Repr(icmpv4.TIME_EXCEEDED)],
                  build([ipv4.Repr(A("10.0.0.1"), A("10.9.9.9"), ipv4.ICMP, ttl=1), icmpv4.Repr(icmpv4.ECHO_REQUEST, 0, 5, 6)],
                        bytes(56))[:28])
    assert summary(dissect(frame)) == ("10.0.0.254 > 10.0.0.1: icmp time exceeded code 0 | "
                                       "quoted 10.0.0.1 > 10.9.9.9: icmp echo request id 5 seq 6")



def test_a_quote_stays_a_quote_through_nested_icmp_errors():
    """An error quoting an error: every layer after the first ICMP error is quoted, so the inner
    ICMP checksum (over a message cut short) is not checked and a cut-short header ends the list."""
    innermost = build([ipv4.Repr(A("10.0.0.1"), A("10.9.9.9"), ipv4.TCP), tcp.Repr(40000, 80)], bytes(100))
    error = build([ipv4.Repr(A("10.0.0.9"), A("10.0.0.1"), ipv4.ICMP),
                   icmpv4.Repr(icmpv4.DESTINATION_UNREACHABLE, icmpv4.PORT_UNREACHABLE)], innermost[:28])
    frame = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("10.0.0.254"), A("10.0.0.1"), ipv4.ICMP),
                   icmpv4.Repr(icmpv4.TIME_EXCEEDED)], error[:50])
    layers = dissect(frame)
    assert [layer.layer for layer in layers] == ["ethernet", "ipv4", "icmpv4", "ipv4", "icmpv4", "ipv4"]
    assert layers[4].type == icmpv4.DESTINATION_UNREACHABLE and layers[5].protocol == ipv4.TCP
    with pytest.raises(BadChecksum):  # the same inner message outside a quote: its checksum fails
        icmpv4.Repr.parse(error[20:50])

def test_other_summaries():
    arp_frame = bytes.fromhex("ffffffffffff001122334455080600010800060400010011223344550a0000010000000000000a000002")
    assert summary(dissect(arp_frame)) == "arp who-has 10.0.0.2 tell 10.0.0.1"
    tagged = build([ethernet.Repr(MAC1, MAC2, 0x88CC, (ethernet.Tag(100), ethernet.Tag(200)))], b"lldp")
    assert summary(dissect(tagged)) == "vlan 100,200 | 02:00:00:00:00:01 > 02:00:00:00:00:02 ethertype 0x88cc"
    solicitation = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV6), ipv6.Repr(A("fe80::1"), A("ff02::1:ff00:2"), 58, 255),
                          icmpv6.Repr(icmpv6.NEIGHBOR_SOLICITATION, target_address=A("fe80::2"), link_layer_address=MAC1)])
    assert summary(dissect(solicitation)) == "fe80::1 > ff02::1:ff00:2: icmpv6 neighbor solicitation target fe80::2"
    ip_in_ip = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("192.0.2.1"), A("192.0.2.2"), ipv4.IPV4_IN_IP),
                      ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.UDP), udp.Repr(5, 6)])
    assert summary(dissect(ip_in_ip)) == "192.0.2.1 > 192.0.2.2: ipv4 protocol 4 ttl 64 | 10.0.0.1.5 > 10.0.0.2.6: udp"
    synack = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("10.0.0.2"), A("10.0.0.1"), ipv4.TCP),
                    tcp.Repr(80, 41000, 7, 2, tcp.SYN | tcp.ACK)])
    assert summary(dissect(synack)) == "10.0.0.2.80 > 10.0.0.1.41000: tcp [S.] seq 7 ack 2"


def test_dissect_takes_any_bytes_like_object():
    frame = encapsulate(inner_tcp(), encap="geneve", vni=3, **OUTER)
    assert dissect(bytearray(frame)) == dissect(memoryview(frame)) == dissect(frame)


def test_build_needs_an_ip_layer_for_pseudo_headers():
    with pytest.raises(ValueError, match="udp at position 1 needs an enclosing ipv4/ipv6 layer"):
        build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), udp.Repr(1, 2)])


def test_vxlan_and_geneve_over_ipv4_carry_a_zero_udp_checksum_plain_udp_does_not():
    for encap in ("vxlan", "geneve"):
        frame = encapsulate(inner_tcp(), encap=encap, vni=1, **OUTER)
        assert frame[40:42] == b"\0\0"
    plain = build([ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.UDP),
                   udp.Repr(1, 4789)], vxlan.Repr(1).emit(inner_tcp()))  # raw bytes, not a vxlan layer
    assert plain[40:42] != b"\0\0"
