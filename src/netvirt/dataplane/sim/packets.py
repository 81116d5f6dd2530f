"""Packet bytes for the simulator: answers, NAT, fragments (probes are ``wire.builders``').

Contract: every function takes and returns real bytes built with ``netvirt.wire`` — checksums are
always valid (NAT rewrites update them incrementally, RFC 1624). Frames are untagged Ethernet II;
the fields the data plane decides on are ``wire.fields.headers``, protocol numbers and EtherTypes
are wire's. ICMP "ports": an echo's identifier stands for both ports, so a reply's flow tuple is
the inverse of the request's.
"""

import zlib
from ipaddress import ip_address

from netvirt.wire import arp, ethernet, icmpv4, icmpv6, ipv4, ipv6, tcp, udp
from netvirt.wire.builders import DYNAMIC_PORTS_START, FIRST_SEQUENCE, build, flow_entropy
from netvirt.wire.fields import PORTS, Headers, headers
from netvirt.wire.ipv4 import ICMP, ICMPV6, TCP, UDP

ETHERNET = ethernet.HEADER_LENGTH
IPV4_TYPE, IPV6_TYPE, ARP_TYPE = ethernet.IPV4_BYTES, ethernet.IPV6_BYTES, ethernet.ARP_BYTES
IP_TYPES = (IPV4_TYPE, IPV6_TYPE)  # the EtherType bytes of a frame carrying IP (frame[12:14])
IPV4_QUOTE = 576  # RFC 1812 §4.3.2.3: an ICMP error quotes as much as fits in 576 bytes
IPV6_QUOTE = 1280  # RFC 4443 §2.4 (c)



def entropy(inner) -> int:
    """``wire.flow_entropy`` of an inner frame (49152-65535), from ``headers`` instead of a full
    dissect: CRC-32 of the inner IP addresses, protocol and TCP/UDP ports."""
    found = headers(inner) if len(inner) > ETHERNET + 1 and inner[12:14] in IP_TYPES else None
    if found is None:
        return flow_entropy(inner)
    key = found.src + found.dst + bytes((found.proto,))
    if found.proto in (TCP, UDP) and found.first_fragment:
        key += PORTS.pack(found.src_port, found.dst_port)
    return DYNAMIC_PORTS_START + zlib.crc32(key) % 16384


def frame(dst_mac: bytes, src_mac: bytes, ip_packet) -> bytes:
    """An Ethernet frame around an IP packet (the EtherType follows the IP version)."""
    ethertype = ethernet.IPV4 if ip_packet[0] >> 4 == 4 else ethernet.IPV6
    return b"".join((dst_mac, src_mac, ethertype.to_bytes(2, "big"), ip_packet))


def icmp_error(packet, found: Headers, source: bytes, kind: str, mtu: int = 0) -> bytes:
    """The ICMP (ICMPv6) error ``source`` sends back about ``packet`` (an IP packet).

    ``kind``: "port", "host", "net", "admin" (unreachable), "ttl" (time exceeded) or "too-big"
    (fragmentation needed / packet too big, with ``mtu``). The quote is the offending datagram,
    cut to 576 bytes (IPv4) or 1280 (IPv6) in all.
    """
    if found.version == 4:
        type_, code = {
            "port": (icmpv4.DESTINATION_UNREACHABLE, icmpv4.PORT_UNREACHABLE),
            "host": (icmpv4.DESTINATION_UNREACHABLE, icmpv4.HOST_UNREACHABLE),
            "net": (icmpv4.DESTINATION_UNREACHABLE, icmpv4.NETWORK_UNREACHABLE),
            "admin": (icmpv4.DESTINATION_UNREACHABLE, 13),
            "ttl": (icmpv4.TIME_EXCEEDED, icmpv4.TTL_EXCEEDED_IN_TRANSIT),
            "too-big": (icmpv4.DESTINATION_UNREACHABLE, icmpv4.FRAGMENTATION_NEEDED),
        }[kind]
        quote = bytes(packet[:IPV4_QUOTE - 28])
        message = icmpv4.Repr(type_, code, next_hop_mtu=mtu if kind == "too-big" else 0)
        return build([ipv4.Repr(source, found.src, ICMP, 64), message], quote)
    type_, code = {
        "port": (icmpv6.DESTINATION_UNREACHABLE, 4),
        "host": (icmpv6.DESTINATION_UNREACHABLE, 3),
        "net": (icmpv6.DESTINATION_UNREACHABLE, 0),
        "admin": (icmpv6.DESTINATION_UNREACHABLE, 1),
        "ttl": (icmpv6.TIME_EXCEEDED, 0),
        "too-big": (icmpv6.PACKET_TOO_BIG, 0),
    }[kind]
    quote = bytes(packet[:IPV6_QUOTE - 48])
    message = icmpv6.Repr(type_, code, mtu=mtu if kind == "too-big" else 0)
    return build([ipv6.Repr(source, found.src, ICMPV6, hop_limit=64), message], quote)


def tcp_reset(packet, found: Headers) -> bytes:
    """The RST|ACK a TCP stack answers a segment with when nothing listens (RFC 9293 §3.10.7.1)."""
    segment = tcp.View(bytes(packet), found.l4 - found.l3)
    data_length = found.length - (found.l4 - found.l3) - segment.header_length
    ack = (segment.sequence_number + data_length + bool(segment.flags & tcp.SYN) + bool(segment.flags & tcp.FIN))
    reset = tcp.Repr(segment.dst_port, segment.src_port, 0, ack & 0xFFFFFFFF, tcp.RST | tcp.ACK, 0)
    if found.version == 4:
        return build([ipv4.Repr(found.dst, found.src, TCP, 64, dont_fragment=True), reset])
    return build([ipv6.Repr(found.dst, found.src, TCP, hop_limit=64), reset])


def echo_reply(packet, found: Headers) -> bytes:
    """The kernel's answer to an ICMP (ICMPv6) echo request, with the same data."""
    body = bytes(packet[found.l4 - found.l3:found.length])
    data = body[8:]
    if found.version == 4:
        message = icmpv4.Repr(icmpv4.ECHO_REPLY, 0, found.src_port, body[6] << 8 | body[7])
        return build([ipv4.Repr(found.dst, found.src, ICMP, 64), message], data)
    message = icmpv6.Repr(icmpv6.ECHO_REPLY, 0, found.src_port, body[6] << 8 | body[7])
    return build([ipv6.Repr(found.dst, found.src, ICMPV6, hop_limit=64), message], data)


def response(packet, found: Headers) -> bytes | None:
    """What the receiving application answers: SYN -> SYN|ACK, UDP -> a datagram back, echo
    request -> echo reply (None for anything else)."""
    if found.proto == TCP and found.tcp_flags & tcp.SYN:
        segment = tcp.Repr.parse(bytes(packet[found.l4 - found.l3:found.length]))
        answer = tcp.Repr(segment.dst_port, segment.src_port, FIRST_SEQUENCE * 2,
                          (segment.sequence_number + 1) & 0xFFFFFFFF, tcp.SYN | tcp.ACK, 65160)
        proto = TCP
    elif found.proto == UDP:
        answer, proto = udp.Repr(found.dst_port, found.src_port), UDP
    elif found.proto in (ICMP, ICMPV6) and found.icmp_type in (icmpv4.ECHO_REQUEST, icmpv6.ECHO_REQUEST):
        return echo_reply(packet, found)
    else:
        return None
    if found.version == 4:
        return build([ipv4.Repr(found.dst, found.src, proto, 64, dont_fragment=True), answer])
    return build([ipv6.Repr(found.dst, found.src, proto, hop_limit=64), answer])


def arp_reply(request: arp.Repr, mac: bytes) -> bytes:
    reply = arp.Repr(arp.REPLY, mac, request.target_protocol_address, request.sender_hardware_address,
                     request.sender_protocol_address)
    return build([ethernet.Repr(mac, request.sender_hardware_address, ethernet.ARP), reply])


def neighbor_advertisement(mac: bytes, target_ip: bytes, to_mac: bytes, to_ip: bytes) -> bytes:
    message = icmpv6.Repr(icmpv6.NEIGHBOR_ADVERTISEMENT, target_address=target_ip, solicited=True,
                          override=True, link_layer_address=mac)
    return build([ethernet.Repr(mac, to_mac, ethernet.IPV6), ipv6.Repr(target_ip, to_ip, ICMPV6, hop_limit=255),
                  message])


def rewrite(frame: bytearray, found: Headers, *, src: bytes | None = None, src_port: int | None = None,
            dst: bytes | None = None, dst_port: int | None = None) -> None:
    """NAT in place: new addresses/ports, with IP and transport checksums updated (RFC 1624)."""
    l3, l4 = found.l3, found.l4
    whole = found.first_fragment
    ip_view = ipv4.View(frame, l3) if found.version == 4 else ipv6.View(frame, l3)
    transport = None
    if whole and found.proto == TCP:
        transport = tcp.View(frame, l4)
    elif whole and found.proto == UDP:
        transport = udp.View(frame, l4)
    elif whole and found.proto == ICMPV6:
        transport = icmpv6.View(frame, l4)
    for new, field in ((src, "src"), (dst, "dst")):
        if new is not None and new != getattr(found, field):
            old = getattr(found, field)
            setattr(ip_view, field, new)
            if transport is not None:
                transport.update_pseudo_header(old, new)
            setattr(found, field, new)
    if transport is not None and found.proto in (TCP, UDP):
        if src_port is not None and src_port != found.src_port:
            transport.src_port = src_port
            found.src_port = src_port
        if dst_port is not None and dst_port != found.dst_port:
            transport.dst_port = dst_port
            found.dst_port = dst_port


def decrement_ttl(frame: bytearray, found: Headers) -> int:
    """TTL / hop limit minus one, checksum updated; returns the new value."""
    if found.version == 4:
        found.ttl = ipv4.View(frame, found.l3).decrement_ttl()
    else:
        found.ttl = ipv6.View(frame, found.l3).decrement_hop_limit()
    return found.ttl


def fragments(packet: bytes, mtu: int) -> list[bytes]:
    """``packet`` (an IP packet) split into fragments of at most ``mtu`` bytes (RFC 791, RFC 8200)."""
    if packet[0] >> 4 == 4:
        header, payload = ipv4.Repr.decode(packet)
        chunk = (mtu - 20 - len(header.options)) // 8 * 8
        base = header.fragment_offset
        pieces = []
        for start in range(0, len(payload), chunk):
            last = start + chunk >= len(payload)
            part = header._replace(fragment_offset=base + start // 8,
                                   more_fragments=header.more_fragments or not last)
            pieces.append(part.emit(bytes(payload[start:start + chunk])))
        return pieces
    header, payload = ipv6.Repr.decode(packet)
    chunk = (mtu - 48) // 8 * 8
    identification = int.from_bytes(packet[8:12], "big") ^ int.from_bytes(packet[24:28], "big")
    return [header._replace(fragment=ipv6.Fragment(identification, start // 8, start + chunk < len(payload)))
            .emit(bytes(payload[start:start + chunk])) for start in range(0, len(payload), chunk)]


def reassemble(pieces: list[bytes]) -> bytes | None:
    """The datagram the fragments make, or None while some are missing."""
    parsed = []
    for piece in pieces:
        if piece[0] >> 4 == 4:
            header, payload = ipv4.Repr.decode(piece)
            parsed.append((header.fragment_offset * 8, header.more_fragments, header, bytes(payload)))
        else:
            header, payload = ipv6.Repr.decode(piece)
            parsed.append((header.fragment.fragment_offset * 8, header.fragment.more_fragments, header, bytes(payload)))
    parsed.sort(key=lambda item: item[0])
    data, expected = b"", 0
    for offset, _, _, payload in parsed:
        if offset != expected:
            return None
        data += payload
        expected += len(payload)
    if parsed[-1][1]:
        return None
    first = parsed[0][2]
    if isinstance(first, ipv4.Repr):
        return first._replace(more_fragments=False, fragment_offset=0).emit(data)
    return first._replace(fragment=None).emit(data)


def text_to_ip(text: str) -> bytes:
    return ip_address(text).packed
