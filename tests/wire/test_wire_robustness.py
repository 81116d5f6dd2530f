"""Bad bytes raise only ParseError subclasses, naming the layer and the absolute offset."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.wire import (BadChecksum, Malformed, ParseError, Truncated, arp, build, dissect, encapsulate,
                          ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, nvgre, tcp, udp, vxlan)
from wire_strategies import ipv4_address, ipv6_address, payload, stacks

MODULES = [arp, ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, nvgre, tcp, udp, vxlan]
PSEUDO_HEADER_MODULES = [icmpv6, tcp, udp]


def dissect_or_parse_error(data) -> None:
    try:
        dissect(data)
    except ParseError as error:
        assert error.layer and 0 <= error.offset <= len(data), error
        assert str(error).startswith(f"{error.layer} at offset {error.offset}: {error.kind}: ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    dissect_or_parse_error(data)
    for module in MODULES:
        try:
            module.Repr.decode(data)
        except ParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.one_of(st.tuples(ipv4_address, ipv4_address),
                                          st.tuples(ipv6_address, ipv6_address)))
def test_random_bytes_with_checksum_verification(data, addresses):
    for module in PSEUDO_HEADER_MODULES:
        try:
            module.Repr.decode(data, *addresses)
        except ParseError:
            pass


@settings(max_examples=60, deadline=None)
@given(stacks(), payload)
def test_every_truncation(layers, body):
    frame = build(layers, body)
    for length in range(len(frame)):
        dissect_or_parse_error(frame[:length])


@settings(max_examples=200, deadline=None)
@given(stacks(), payload, st.data())
def test_mutated_frames(layers, body, data):
    frame = bytearray(build(layers, body))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    dissect_or_parse_error(bytes(frame))
    dissect_or_parse_error(memoryview(frame))


INNER = build([ethernet.Repr(b"\x02" * 6, b"\x04" * 6, ethernet.IPV4),
               ipv4.Repr(bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2]), ipv4.UDP), udp.Repr(1000, 2000)], b"data")
VXLAN_FRAME = encapsulate(INNER, encap="vxlan", vni=100, outer_src="192.0.2.1", outer_dst="192.0.2.2",
                          outer_src_mac="00:00:00:00:00:01", outer_dst_mac="00:00:00:00:00:02", src_port=50000)
INNER_IP = 14 + 20 + 8 + 8 + 14  # outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet


def test_error_text_names_layer_offset_and_reason():
    with pytest.raises(Truncated) as caught:
        dissect(VXLAN_FRAME[:23])
    assert str(caught.value) == "ipv4 at offset 14: truncated: need 20 bytes, have 9"
    assert (caught.value.layer, caught.value.offset) == ("ipv4", 14)


def test_offsets_inside_tunnels_are_absolute():
    frame = bytearray(VXLAN_FRAME)
    frame[INNER_IP] = 0x55  # inner IPv4 version 5
    with pytest.raises(Malformed) as caught:
        dissect(bytes(frame))
    assert (caught.value.layer, caught.value.offset) == ("ipv4", INNER_IP)
    assert "version is 5, expected 4" in str(caught.value)


def test_frame_shorter_than_total_length_is_truncated_at_the_ip_header():
    frame = VXLAN_FRAME[:-2]  # the outer IPv4 total length is checked first
    with pytest.raises(Truncated) as caught:
        dissect(frame)
    assert (caught.value.layer, caught.value.offset) == ("ipv4", 14)


def test_bad_ipv4_header_checksum():
    frame = bytearray(VXLAN_FRAME)
    frame[14 + 8] -= 1  # TTL without checksum update
    with pytest.raises(BadChecksum) as caught:
        dissect(bytes(frame))
    assert (caught.value.layer, caught.value.offset) == ("ipv4", 14 + 10)
    assert "header checksum is" in caught.value.reason and "expected" in caught.value.reason


def test_bad_udp_checksum_only_when_the_pseudo_header_is_given():
    datagram = udp.Repr(1, 2).emit(b"hello", src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02")
    corrupted = datagram[:-1] + b"X"
    assert udp.Repr.parse(corrupted) == udp.Repr(1, 2)
    with pytest.raises(BadChecksum) as caught:
        udp.Repr.parse(corrupted, b"\x0a\0\0\x01", b"\x0a\0\0\x02")
    assert caught.value.offset == 6


def test_zero_udp_checksum_is_rejected_over_ipv6():
    datagram = udp.Repr(1, 2).emit(b"x", src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", zero_checksum=True)
    assert udp.Repr.parse(datagram, b"\x0a\0\0\x01", b"\x0a\0\0\x02") == udp.Repr(1, 2)
    with pytest.raises(BadChecksum, match="zero checksum over IPv6"):
        udp.Repr.parse(datagram, bytes(16), bytes(16))
    with pytest.raises(ValueError, match="IPv4 only"):
        udp.Repr(1, 2).emit(b"", src=bytes(16), dst=bytes(16), zero_checksum=True)


def test_bad_icmpv4_and_gre_checksums():
    message = icmpv4.Repr(icmpv4.ECHO_REQUEST, identifier=1).emit(b"abc")
    with pytest.raises(BadChecksum):
        icmpv4.Repr.parse(message[:-1] + b"X")
    packet = gre.Repr(ethernet.IPV4, checksum_present=True).emit(b"abcd")
    with pytest.raises(BadChecksum):
        gre.Repr.parse(packet[:-1] + b"X")


@pytest.mark.parametrize("data, error, reason", [
    (bytes.fromhex("0800000000006400"), None, None),
    (bytes.fromhex("0000000000006400"), Malformed, "I flag is clear"),
])
def test_vxlan_i_flag(data, error, reason):
    if error is None:
        assert vxlan.Repr.parse(data) == vxlan.Repr(100)
    else:
        with pytest.raises(error, match=reason):
            vxlan.Repr.parse(data)


@pytest.mark.parametrize("module, data, error, reason", [
    (ipv4, bytes.fromhex("4400001400000000401100000a0000010a000002"), Malformed, "minimum is 20"),
    (ipv4, bytes.fromhex("4500000a00000000401100000a0000010a000002"), Malformed, "less than the header length"),
    (ipv6, bytes.fromhex("40") + bytes(39), Malformed, "version is 4, expected 6"),
    (udp, bytes.fromhex("0001000200040000"), Malformed, "less than the 8-byte header"),
    (tcp, bytes(12) + b"\x40" + bytes(7), Malformed, "data offset is 16 bytes"),
    (tcp, bytes(12) + b"\x60" + bytes(7) + b"\x02\x09\0\0", Malformed, "option kind 2 has length 9"),
    (geneve, bytes.fromhex("4000655800000100"), Malformed, "version is 1"),
    (geneve, bytes.fromhex("0100655800000100" "00010203"), Malformed, "overruns Opt Len"),
    (gre, bytes.fromhex("00016558"), Malformed, "version is 1"),
    (gre, bytes.fromhex("40006558"), Malformed, "RFC 1701"),
    (nvgre, bytes.fromhex("a000655800000000"), Malformed, "NVGRE needs 20006558"),
    (arp, bytes.fromhex("0006080006040001") + bytes(20), Malformed, "only Ethernet/IPv4 ARP"),
    (icmpv6, bytes.fromhex("87000000") + bytes(20) + b"\x01\x00", Malformed, "option 1 has length 0"),
])
def test_malformed_fields(module, data, error, reason):
    with pytest.raises(error, match=reason):
        module.Repr.decode(data)


@pytest.mark.parametrize("module", MODULES)
def test_empty_buffer_is_truncated(module):
    with pytest.raises(Truncated, match=f"^{module.LAYER} at offset 0: truncated: need"):
        module.Repr.parse(b"")


@pytest.mark.parametrize("module", MODULES)
def test_view_on_a_short_buffer_is_truncated(module):
    with pytest.raises(Truncated):
        module.View(bytearray(3))


def test_quoted_datagram_cut_short_ends_the_layers():
    quoted = build([ipv4.Repr(b"\x0a\0\0\x01", b"\x0a\0\0\x02", ipv4.TCP), tcp.Repr(1, 2)], bytes(100))[:24]
    frame = build([ethernet.Repr(bytes(6), bytes(6), ethernet.IPV4), ipv4.Repr(b"\x0a\0\0\xfe", b"\x0a\0\0\x01", ipv4.ICMP),
                   icmpv4.Repr(icmpv4.TIME_EXCEEDED)], quoted)
    layers = dissect(frame)
    assert [layer.layer for layer in layers] == ["ethernet", "ipv4", "icmpv4", "ipv4"]  # TCP header cut short
    assert layers[3].protocol == ipv4.TCP
