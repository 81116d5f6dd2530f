"""wire.fields.headers reads the same decision fields dissect decodes, in place."""

from hypothesis import given, settings

from netvirt.wire import build, dissect, ethernet, icmpv4, icmpv6, ipv4, tcp, udp
from netvirt.wire.fields import headers
from wire_strategies import ip_with_transport, payload

MACS = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


@settings(max_examples=150, deadline=None)
@given(ip_with_transport(), payload)
def test_headers_agree_with_dissect(layers, data):
    ip, transport = layers
    ethertype = ethernet.IPV4 if isinstance(ip, ipv4.Repr) else ethernet.IPV6
    frame = build([ethernet.Repr(*MACS, ethertype), ip, transport], data)
    found = headers(frame)
    decoded = dissect(frame)[1:]
    ip, transport = decoded[0], decoded[1]
    v4 = isinstance(ip, ipv4.Repr)
    assert (found.version, found.src, found.dst, found.ttl) == (4 if v4 else 6, ip.src, ip.dst,
                                                                ip.ttl if v4 else ip.hop_limit)
    assert found.proto == (ip.protocol if v4 else ip.next_header) and not found.fragment
    assert found.length == len(frame) - 14
    if isinstance(transport, (tcp.Repr, udp.Repr)):
        assert (found.src_port, found.dst_port) == (transport.src_port, transport.dst_port)
        assert found.tcp_flags == (transport.flags if isinstance(transport, tcp.Repr) else 0)
    else:
        assert (found.icmp_type, found.icmp_code) == (transport.type, transport.code)
        assert found.src_port == found.dst_port == transport.identifier
        assert not found.is_icmp_error and found.icmp_type in (icmpv4.ECHO_TYPES | icmpv6.ECHO_TYPES)


def test_no_ip_no_headers():
    assert headers(bytes(14) + bytes(28)) is None  # EtherType 0, version 0
    assert headers(bytes(20)) is None  # too short for an IP header
