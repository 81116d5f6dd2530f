"""flow_entropy hashes the inner flow key (addresses, protocol, ports) and nothing deeper."""

import zlib

from netvirt.wire import build, ethernet, flow_entropy, ipv4, tcp, udp

SRC, DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
MACS = dict(src=bytes.fromhex("020000000001"), dst=bytes.fromhex("020000000002"))


def expected(protocol: int, src_port: int, dst_port: int) -> int:
    key = SRC + DST + bytes((protocol,)) + src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big")
    return 49152 + zlib.crc32(key) % 16384


def frame(transport, payload=b"") -> bytes:
    eth = ethernet.Repr(dst=MACS["dst"], src=MACS["src"], ethertype=ethernet.IPV4)
    protocol = ipv4.UDP if isinstance(transport, udp.Repr) else ipv4.TCP
    return build([eth, ipv4.Repr(src=SRC, dst=DST, protocol=protocol), transport], payload)


def test_tcp_and_udp_flows_hash_their_five_tuple():
    assert flow_entropy(frame(udp.Repr(src_port=5353, dst_port=53))) == expected(17, 5353, 53)
    syn = tcp.Repr(src_port=41000, dst_port=80, sequence_number=1, flags=tcp.SYN)
    assert flow_entropy(frame(syn)) == expected(6, 41000, 80)


def test_a_udp_payload_that_looks_like_a_broken_tunnel_does_not_change_the_key():
    """Regression (found by hypothesis): UDP to 4789 with an empty payload is not a VXLAN frame,
    and must still hash by its flow, not by its Ethernet header."""
    assert flow_entropy(frame(udp.Repr(src_port=1, dst_port=4789))) == expected(17, 1, 4789)
    assert flow_entropy(frame(udp.Repr(src_port=1, dst_port=4789), b"\xff" * 3)) == expected(17, 1, 4789)


def test_non_ip_frames_hash_their_ethernet_header():
    data = bytes(range(14)) + b"payload"
    assert flow_entropy(data) == 49152 + zlib.crc32(data[:14]) % 16384
