"""emit -> parse -> emit is byte-identical for every header and for nested stacks."""

from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.wire import (arp, build, dissect, ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, nvgre, tcp,
                          udp, vxlan)
from wire_strategies import (arp_repr, ethernet_repr, geneve_repr, gre_repr, icmpv4_repr, icmpv6_repr,
                             ipv4_address, ipv4_repr, ipv6_address, ipv6_repr, nvgre_repr, payload, stacks,
                             tcp_repr, udp_repr, vxlan_repr)

EXAMPLES = settings(max_examples=150, deadline=None)


def assert_round_trip(module, layer, data: bytes, body: bytes, **addresses) -> None:
    parsed, rest = module.Repr.decode(data, **addresses)
    assert parsed == layer
    assert type(parsed) is module.Repr
    assert bytes(rest) == body
    again = parsed.emit(body, **addresses) if addresses else parsed.emit(body)
    assert again == data


@EXAMPLES
@given(ethernet_repr, payload)
def test_ethernet(layer, body):
    assert_round_trip(ethernet, layer, layer.emit(body), body)


@EXAMPLES
@given(arp_repr, payload)
def test_arp(layer, body):
    assert_round_trip(arp, layer, layer.emit(body), body)


@EXAMPLES
@given(ipv4_repr, payload)
def test_ipv4(layer, body):
    assert_round_trip(ipv4, layer, layer.emit(body), body)


@EXAMPLES
@given(ipv6_repr, payload)
def test_ipv6(layer, body):
    assert_round_trip(ipv6, layer, layer.emit(body), body)


@EXAMPLES
@given(icmpv4_repr(), payload)
def test_icmpv4(layer, body):
    assert_round_trip(icmpv4, layer, layer.emit(body), body)


@EXAMPLES
@given(icmpv6_repr(), payload, ipv6_address, ipv6_address)
def test_icmpv6(layer, body, src, dst):
    data = layer.emit(body, src=src, dst=dst)
    if layer.type in icmpv6.NEIGHBOR_TYPES:  # neighbor discovery messages end with their options
        body = b""
        data = layer.emit(src=src, dst=dst)
    assert_round_trip(icmpv6, layer, data, body, src=src, dst=dst)


@EXAMPLES
@given(udp_repr, payload, st.one_of(st.tuples(ipv4_address, ipv4_address), st.tuples(ipv6_address, ipv6_address)))
def test_udp(layer, body, addresses):
    src, dst = addresses
    assert_round_trip(udp, layer, layer.emit(body, src=src, dst=dst), body, src=src, dst=dst)


@EXAMPLES
@given(udp_repr, payload, ipv4_address, ipv4_address)
def test_udp_zero_checksum_over_ipv4(layer, body, src, dst):
    data = layer.emit(body, src=src, dst=dst, zero_checksum=True)
    assert data[6:8] == b"\0\0"
    parsed, rest = udp.Repr.decode(data, src=src, dst=dst)  # zero is accepted over IPv4
    assert parsed == layer and bytes(rest) == body
    assert parsed.emit(body, src=src, dst=dst, zero_checksum=True) == data


@EXAMPLES
@given(tcp_repr, payload, st.one_of(st.tuples(ipv4_address, ipv4_address), st.tuples(ipv6_address, ipv6_address)))
def test_tcp(layer, body, addresses):
    src, dst = addresses
    assert_round_trip(tcp, layer, layer.emit(body, src=src, dst=dst), body, src=src, dst=dst)


@EXAMPLES
@given(vxlan_repr, payload)
def test_vxlan(layer, body):
    assert_round_trip(vxlan, layer, layer.emit(body), body)


@EXAMPLES
@given(geneve_repr, payload)
def test_geneve(layer, body):
    assert_round_trip(geneve, layer, layer.emit(body), body)


@EXAMPLES
@given(gre_repr, payload)
def test_gre(layer, body):
    assert_round_trip(gre, layer, layer.emit(body), body)


@EXAMPLES
@given(nvgre_repr, payload)
def test_nvgre(layer, body):
    assert_round_trip(nvgre, layer, layer.emit(body), body)


@settings(max_examples=200, deadline=None)
@given(stacks(), payload)
def test_nested_stacks(layers, body):
    """Plain frames and VXLAN/Geneve/NVGRE (in each other, over IPv4 or IPv6) survive build -> dissect -> build."""
    frame = build(layers, body)
    assert dissect(frame) == layers
    assert [type(layer) for layer in dissect(frame)] == [type(layer) for layer in layers]
    assert build(dissect(frame), body) == frame
