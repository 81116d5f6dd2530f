"""Literal bytes: RFC examples and hand-checked captures (built with scapy 2.8, every checksum
marked [correct] by tshark 4.0 with checksum validation on). Each frame is written from Reprs
with the values read off the bytes, must equal the capture, and must dissect back to them."""

import pytest

from netvirt.wire import (arp, build, checksum, dissect, ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6,
                          nvgre, tcp, udp, vxlan)
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

M1, M2 = mac_to_bytes("00:11:22:33:44:55"), mac_to_bytes("66:77:88:99:aa:bb")
I1, I2 = mac_to_bytes("02:00:00:00:00:01"), mac_to_bytes("02:00:00:00:00:02")
A = ip_to_bytes


def test_rfc1071_example():
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement), checksum 220d.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert checksum.partial(data) % 0xFFFF == 0xDDF2
    assert checksum.compute(data) == 0x220D


def test_classic_ipv4_header_checksum():
    # The textbook header 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum.compute(header) == 0xB861
    layer = ipv4.Repr(A("192.168.0.1"), A("192.168.0.199"), ipv4.UDP, ttl=64, dont_fragment=True)
    emitted = layer.emit(bytes(0x73 - 20))
    assert emitted[:20] == bytes.fromhex("45000073000040004011b861c0a80001c0a800c7")
    assert ipv4.Repr.parse(emitted) == layer


def test_rfc1624_example():
    # RFC 1624 §5: m = 0x5555 -> 0x3285 with HC = 0xDD2F; eqn. 3 gives 0x0000, as recomputation does.
    assert checksum.update_word(0xDD2F, 0x5555, 0x3285) == 0x0000
    assert checksum.update(0xDD2F, b"\x55\x55", b"\x32\x85") == 0x0000


def test_ones_complement_zero_is_0xffff():
    assert checksum.compute(b"\xff\xff") == 0x0000
    assert checksum.compute(b"\x00\x00") == 0xFFFF
    assert checksum.verifies(b"\xff\xff") and not checksum.verifies(b"\x00\x01")


CAPTURES = {
    "arp": (
        "ffffffffffff001122334455080600010800060400010011223344550a0000010000000000000a000002",
        [ethernet.Repr(M1, b"\xff" * 6, ethernet.ARP),
         arp.Repr(arp.REQUEST, M1, A("10.0.0.1"), bytes(6), A("10.0.0.2"))],
        b"",
    ),
    "udp": (
        "66778899aabb0011223344550800450000201c46400040110a850a0000010a00000214e90035000c11ef61626364",
        [ethernet.Repr(M1, M2, ethernet.IPV4),
         ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.UDP, 64, 0x1C46, dont_fragment=True),
         udp.Repr(5353, 53)],
        b"abcd",
    ),
    "tcp syn with options": (
        "66778899aabb00112233445508004500003c00010000400666b90a0000010a000002a02800500000000100000000a002faf0"
        "982f0000020405b40402080a000000640000000001030307",
        [ethernet.Repr(M1, M2, ethernet.IPV4),
         ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.TCP, 64, 1),
         tcp.Repr(41000, 80, 1, 0, tcp.SYN, 64240, 0, (
             tcp.Option(tcp.MAXIMUM_SEGMENT_SIZE, b"\x05\xb4"), tcp.Option(tcp.SACK_PERMITTED),
             tcp.Option(tcp.TIMESTAMPS, bytes.fromhex("0000006400000000")), tcp.Option(tcp.NO_OPERATION),
             tcp.Option(tcp.WINDOW_SCALE, b"\x07")))],
        b"",
    ),
    "icmp echo": (
        "66778899aabb00112233445508004500002000020000400166d90a0000010a000002080006fa1234000170696e67",
        [ethernet.Repr(M1, M2, ethernet.IPV4),
         ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.ICMP, 64, 2),
         icmpv4.Repr(icmpv4.ECHO_REQUEST, 0, identifier=0x1234, sequence_number=1)],
        b"ping",
    ),
    "neighbor solicitation": (
        "3333ff00000200112233445586dd6000000000203afffe800000000000000000000000000001ff0200000000000000000001"
        "ff000002870015ff00000000fe8000000000000000000000000000020101001122334455",
        [ethernet.Repr(M1, mac_to_bytes("33:33:ff:00:00:02"), ethernet.IPV6),
         ipv6.Repr(A("fe80::1"), A("ff02::1:ff00:2"), ipv4.ICMPV6, 255),
         icmpv6.Repr(icmpv6.NEIGHBOR_SOLICITATION, target_address=A("fe80::2"), link_layer_address=M1)],
        b"",
    ),
    "neighbor advertisement": (
        "00112233445566778899aabb86dd6000000000203afffe800000000000000000000000000002fe8000000000000000000000"
        "000000018800804f60000000fe800000000000000000000000000002020166778899aabb",
        [ethernet.Repr(M2, M1, ethernet.IPV6),
         ipv6.Repr(A("fe80::2"), A("fe80::1"), ipv4.ICMPV6, 255),
         icmpv6.Repr(icmpv6.NEIGHBOR_ADVERTISEMENT, target_address=A("fe80::2"), solicited=True, override=True,
                     link_layer_address=M2)],
        b"",
    ),
    "vxlan, zero udp checksum": (
        "66778899aabb00112233445508004500004e000500004011f696c0000201c0000202c00012b5003a00000800000000006400"
        "02000000000202000000000108004500001c00060000400166d70a0100010a0100020800f7f000070008",
        [ethernet.Repr(M1, M2, ethernet.IPV4),
         ipv4.Repr(A("192.0.2.1"), A("192.0.2.2"), ipv4.UDP, 64, 5),
         udp.Repr(49152, 4789),
         vxlan.Repr(100),
         ethernet.Repr(I1, I2, ethernet.IPV4),
         ipv4.Repr(A("10.1.0.1"), A("10.1.0.2"), ipv4.ICMP, 64, 6),
         icmpv4.Repr(icmpv4.ECHO_REQUEST, identifier=7, sequence_number=8)],
        b"",
    ),
    "geneve with an option over ipv6": (
        "66778899aabb00112233445586dd600000000042114020010db800000000000000000000000120010db80000000000000000"
        "00000002c35017c10042279e020065581234560001020101deadbeef02000000000202000000000108060001080006040002"
        "0200000000010a0100010200000000020a010002",
        [ethernet.Repr(M1, M2, ethernet.IPV6),
         ipv6.Repr(A("2001:db8::1"), A("2001:db8::2"), ipv4.UDP, 64),
         udp.Repr(50000, 6081),
         geneve.Repr(0x123456, ethernet.TRANSPARENT_ETHERNET_BRIDGING, (geneve.Option(0x0102, 0x01, b"\xde\xad\xbe\xef"),)),
         ethernet.Repr(I1, I2, ethernet.ARP),
         arp.Repr(arp.REPLY, I1, A("10.1.0.1"), I2, A("10.1.0.2"))],
        b"",
    ),
    "nvgre": (
        "66778899aabb00112233445508004500004600090000402ff67cc0000201c0000202200065580013882a0200000000020200"
        "0000000108004500001c000a0000401166c30a0100010a010002000100020008ebd6",
        [ethernet.Repr(M1, M2, ethernet.IPV4),
         ipv4.Repr(A("192.0.2.1"), A("192.0.2.2"), ipv4.GRE, 64, 9),
         nvgre.Repr(5000, 0x2A),
         ethernet.Repr(I1, I2, ethernet.IPV4),
         ipv4.Repr(A("10.1.0.1"), A("10.1.0.2"), ipv4.UDP, 64, 10),
         udp.Repr(1, 2)],
        b"",
    ),
    "gre with checksum, key and sequence number": (
        "66778899aabb001122334455080045000040000b0000402ff680c0000201c0000202b00008005bec00000000002a00000007"
        "4500001c000c0000401166c10a0100010a010002000100020008ebd6",
        [ethernet.Repr(M1, M2, ethernet.IPV4),
         ipv4.Repr(A("192.0.2.1"), A("192.0.2.2"), ipv4.GRE, 64, 11),
         gre.Repr(ethernet.IPV4, checksum_present=True, key=42, sequence_number=7),
         ipv4.Repr(A("10.1.0.1"), A("10.1.0.2"), ipv4.UDP, 64, 12),
         udp.Repr(1, 2)],
        b"",
    ),
    "802.1q tag": (
        "66778899aabb0011223344558100a06408004500001c000d0000401166c20a0000010a000002000100020008ebd8",
        [ethernet.Repr(M1, M2, ethernet.IPV4, (ethernet.Tag(100, priority=5),)),
         ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.UDP, 64, 13),
         udp.Repr(1, 2)],
        b"",
    ),
    "ipv6 hop-by-hop then first fragment": (
        "66778899aabb00112233445586dd600000000020004020010db800000000000000000000000120010db80000000000000000"
        "000000022c0001040000000011000001abcdef01000100020010c2747878787878787878",
        [ethernet.Repr(M1, M2, ethernet.IPV6),
         ipv6.Repr(A("2001:db8::1"), A("2001:db8::2"), ipv4.UDP, 64,
                   fragment=ipv6.Fragment(0xABCDEF01, 0, more_fragments=True))],
        None,  # the hop-by-hop header is skipped, so this frame is not re-emitted
    ),
}


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_dissects_to_the_hand_read_fields(name):
    hex_frame, layers, _ = CAPTURES[name]
    assert dissect(bytes.fromhex(hex_frame)) == layers


@pytest.mark.parametrize("name", [name for name, (_, _, body) in CAPTURES.items() if body is not None])
def test_reprs_build_the_capture(name):
    hex_frame, layers, body = CAPTURES[name]
    assert build(layers, body).hex() == hex_frame


def test_fragmentation_needed_quotes_the_datagram():
    # ICMP type 3 code 4, next-hop MTU 1400 (0x0578), quoting 20 + 8 bytes of a 1500-byte datagram.
    frame = bytes.fromhex(
        "00112233445566778899aabb08004500003800030000400165c40a0000fe0a0000010304116000000578"
        "450005dc000440004011210b0a0000010a0000021388177005c8b563")
    layers = dissect(frame)
    error = icmpv4.Repr(icmpv4.DESTINATION_UNREACHABLE, icmpv4.FRAGMENTATION_NEEDED, next_hop_mtu=1400)
    assert layers == [
        ethernet.Repr(M2, M1, ethernet.IPV4),
        ipv4.Repr(A("10.0.0.254"), A("10.0.0.1"), ipv4.ICMP, 64, 3),
        error,
        ipv4.Repr(A("10.0.0.1"), A("10.0.0.2"), ipv4.UDP, 64, 4, dont_fragment=True),  # total length 1500
        udp.Repr(5000, 6000),
    ]
    assert build(layers[:3], frame[42:]) == frame
    assert error.to_dict() == {"layer": "icmpv4", "type": 3, "code": 4, "next_hop_mtu": 1400}


def test_each_header_parses_alone():
    frame = bytes.fromhex(CAPTURES["nvgre"][0])
    assert ethernet.Repr.parse(frame).ethertype == ethernet.IPV4
    assert ipv4.Repr.parse(frame[14:]).protocol == ipv4.GRE
    assert nvgre.Repr.parse(frame[34:]) == nvgre.Repr(5000, 42)
    assert gre.Repr.parse(frame[34:]) == gre.Repr(0x6558, key=5000 << 8 | 42)  # NVGRE is GRE too
    frame = bytes.fromhex(CAPTURES["udp"][0])
    assert udp.Repr.parse(frame[34:], A("10.0.0.1"), A("10.0.0.2")) == udp.Repr(5353, 53)
    frame = bytes.fromhex(CAPTURES["neighbor solicitation"][0])
    assert icmpv6.Repr.parse(frame[54:], A("fe80::1"), A("ff02::1:ff00:2")).target_address == A("fe80::2")


def test_geneve_critical_flag_follows_the_options():
    critical = geneve.Repr(1, options=(geneve.Option(0x0102, geneve.CRITICAL | 1, b""),)).emit()
    plain = geneve.Repr(1, options=(geneve.Option(0x0102, 1, b""),)).emit()
    assert critical[1] == 0x40 and plain[1] == 0x00  # C flag: "critical options present"
    assert critical.hex() == "01406558000001000102" "8100"
