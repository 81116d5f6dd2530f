"""Views read what Reprs hold, and in-place writes with incremental checksum updates (RFC 1624)
give exactly the bytes a full re-emit gives."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.wire import arp, build, ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, nvgre, tcp, udp, vxlan
from wire_strategies import (arp_repr, ethernet_repr, geneve_repr, gre_repr, ipv4_address, ipv4_repr, ipv6_address,
                             ipv6_repr, mac, nvgre_repr, payload, tcp_repr, u8, u16, u24, udp_repr, vxlan_repr)

EXAMPLES = settings(max_examples=150, deadline=None)
address_pairs = st.one_of(st.tuples(ipv4_address, ipv4_address, ipv4_address),
                          st.tuples(ipv6_address, ipv6_address, ipv6_address))


@EXAMPLES
@given(ipv4_repr, payload, st.integers(1, 255), u8)
def test_ipv4_view_ttl(layer, body, ttl, new_ttl):
    layer = layer._replace(ttl=ttl)
    buffer = bytearray(layer.emit(body))
    view = ipv4.View(buffer)
    assert (view.ttl, view.src, view.dst, view.protocol) == (ttl, layer.src, layer.dst, layer.protocol)
    assert (view.identification, view.dont_fragment, view.more_fragments, view.fragment_offset) == (
        layer.identification, layer.dont_fragment, layer.more_fragments, layer.fragment_offset)
    assert (view.dscp, view.ecn, view.options, bytes(view.payload)) == (layer.dscp, layer.ecn, layer.options, body)
    assert view.decrement_ttl() == ttl - 1
    assert buffer == layer._replace(ttl=ttl - 1).emit(body)
    view.ttl = new_ttl
    assert buffer == layer._replace(ttl=new_ttl).emit(body)


def test_ipv4_view_refuses_to_decrement_ttl_zero():
    buffer = bytearray(ipv4.Repr(bytes(4), bytes(4), ipv4.UDP, ttl=0).emit())
    with pytest.raises(ValueError, match="TTL 0"):
        ipv4.View(buffer).decrement_ttl()


@EXAMPLES
@given(ipv4_repr, payload, ipv4_address, ipv4_address)
def test_ipv4_view_address_rewrite(layer, body, src, dst):
    buffer = bytearray(layer.emit(body))
    view = ipv4.View(buffer)
    view.src, view.dst = src, dst
    assert buffer == layer._replace(src=src, dst=dst).emit(body)


@EXAMPLES
@given(udp_repr, payload, address_pairs, u16, u16, st.booleans())
def test_udp_view_rewrites(layer, body, addresses, src_port, dst_port, zero):
    src, dst, new_src = addresses
    zero = zero and len(src) == 4
    buffer = bytearray(layer.emit(body, src=src, dst=dst, zero_checksum=zero))
    view = udp.View(buffer)
    assert (view.src_port, view.dst_port, view.length, bytes(view.payload)) == (*layer, 8 + len(body), body)
    view.src_port, view.dst_port = src_port, dst_port
    view.update_pseudo_header(src, new_src)
    expected = udp.Repr(src_port, dst_port).emit(body, src=new_src, dst=dst, zero_checksum=zero)
    assert buffer == expected  # a zero checksum ("none") stays zero


@EXAMPLES
@given(tcp_repr, payload, address_pairs, u16, u16)
def test_tcp_view_rewrites(layer, body, addresses, src_port, dst_port):
    src, dst, new_dst = addresses
    buffer = bytearray(layer.emit(body, src=src, dst=dst))
    view = tcp.View(buffer)
    assert (view.src_port, view.dst_port, view.sequence_number, view.acknowledgment_number, view.flags,
            view.window, view.urgent_pointer) == layer[:7]
    assert bytes(view.payload) == body
    view.dst_port, view.src_port = dst_port, src_port
    view.update_pseudo_header(dst, new_dst)
    assert buffer == layer._replace(src_port=src_port, dst_port=dst_port).emit(body, src=src, dst=new_dst)


@EXAMPLES
@given(u16, u16, u16, payload)
def test_icmpv4_view_identifier(identifier, sequence_number, new_identifier, body):
    layer = icmpv4.Repr(icmpv4.ECHO_REQUEST, 0, identifier, sequence_number)
    buffer = bytearray(layer.emit(body))
    view = icmpv4.View(buffer)
    assert (view.type, view.code, view.identifier, view.sequence_number) == (8, 0, identifier, sequence_number)
    view.identifier = new_identifier
    assert buffer == layer._replace(identifier=new_identifier).emit(body)


@EXAMPLES
@given(u16, u16, u16, payload, ipv6_address, ipv6_address, ipv6_address)
def test_icmpv6_view_identifier_and_pseudo_header(identifier, sequence_number, new_identifier, body, src, dst, new_src):
    layer = icmpv6.Repr(icmpv6.ECHO_REQUEST, 0, identifier, sequence_number)
    buffer = bytearray(layer.emit(body, src=src, dst=dst))
    view = icmpv6.View(buffer)
    view.identifier = new_identifier
    view.update_pseudo_header(src, new_src)
    assert buffer == layer._replace(identifier=new_identifier).emit(body, src=new_src, dst=dst)


@EXAMPLES
@given(ipv6_repr, payload, st.integers(1, 255), ipv6_address)
def test_ipv6_view(layer, body, hop_limit, src):
    layer = layer._replace(hop_limit=hop_limit, fragment=None)
    buffer = bytearray(layer.emit(body))
    view = ipv6.View(buffer)
    assert (view.traffic_class, view.flow_label, view.payload_length, view.next_header) == (
        layer.traffic_class, layer.flow_label, len(body), layer.next_header)
    assert view.decrement_hop_limit() == hop_limit - 1
    view.src = src
    assert buffer == layer._replace(hop_limit=hop_limit - 1, src=src).emit(body)


@EXAMPLES
@given(ethernet_repr, mac, mac, arp_repr)
def test_ethernet_and_arp_views(layer, src, dst, message):
    layer = layer._replace(vlans=())
    buffer = bytearray(layer.emit(message.emit()))
    view = ethernet.View(buffer)
    assert (view.src, view.dst, view.ethertype) == (layer.src, layer.dst, layer.ethertype)
    view.src, view.dst = src, dst
    assert buffer == layer._replace(src=src, dst=dst).emit(message.emit())
    arp_view = arp.View(view.payload)
    assert (arp_view.operation, arp_view.sender_hardware_address, arp_view.sender_protocol_address,
            arp_view.target_hardware_address, arp_view.target_protocol_address) == tuple(message)  # a Repr equals only a Repr


@EXAMPLES
@given(vxlan_repr, geneve_repr, nvgre_repr, gre_repr, u24, u8, payload)
def test_tunnel_views(vxlan_layer, geneve_layer, nvgre_layer, gre_layer, vni, flow_id, body):
    buffer = bytearray(vxlan_layer.emit(body))
    vxlan.View(buffer).vni = vni
    assert buffer == vxlan.Repr(vni).emit(body)

    buffer = bytearray(geneve_layer.emit(body))
    view = geneve.View(buffer)
    assert (view.vni, view.protocol, view.oam, bytes(view.payload)) == (
        geneve_layer.vni, geneve_layer.protocol, geneve_layer.oam, body)
    assert view.critical == any(option.type & geneve.CRITICAL for option in geneve_layer.options)
    view.vni = vni
    assert buffer == geneve_layer._replace(vni=vni).emit(body)

    buffer = bytearray(nvgre_layer.emit(body))
    view = nvgre.View(buffer)
    view.vsid, view.flow_id = vni, flow_id
    assert buffer == nvgre.Repr(vni, flow_id).emit(body)

    view = gre.View(gre_layer.emit(body))
    assert (view.protocol, view.checksum_present, view.key, bytes(view.payload)) == (
        gre_layer.protocol, gre_layer.checksum_present, gre_layer.key, body)


@EXAMPLES
@given(ipv4_address, ipv4_address, ipv4_address, u16, payload)
def test_source_nat_in_place_equals_rebuilding(src, dst, public, public_port, body):
    """A NAT rewrite through Views on a whole frame: the IPv4 header and UDP checksums stay right."""
    frame = [ethernet.Repr(b"\x02" * 6, b"\x04" * 6, ethernet.IPV4), ipv4.Repr(src, dst, ipv4.UDP), udp.Repr(40000, 53)]
    buffer = bytearray(build(frame, body))
    ip_view = ipv4.View(buffer, 14)
    udp_view = udp.View(buffer, 14 + ip_view.header_length)
    ip_view.src = public
    udp_view.update_pseudo_header(src, public)
    udp_view.src_port = public_port
    ip_view.decrement_ttl()
    expected = build([frame[0], frame[1]._replace(src=public, ttl=63), udp.Repr(public_port, 53)], body)
    assert buffer == expected
