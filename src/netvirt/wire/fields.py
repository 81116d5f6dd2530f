"""The fields a data plane decides on, read straight from a frame's bytes.

Contract: ``headers(frame, l3)`` returns the IP packet's ``Headers`` — where the IP header and the
transport start, addresses, protocol, TTL, length, fragmentation and the transport fields (ports,
the echo identifier, ICMP type and code, TCP flags) — or None when the frame carries no IP. It
reads only those fields, with the layouts of ``ipv4`` and ``ipv6``: no ``Repr``, no checksum check,
no ``ParseError`` (a forwarding decision, not a validation; ``dissect`` validates). This is the
per-hop fast path of the simulator and of any backend that classifies in Python.
"""

import struct
from dataclasses import dataclass

from netvirt.wire import ethernet, icmpv4, icmpv6, ipv4, ipv6
from netvirt.wire.ipv4 import ICMP, ICMPV6, TCP, UDP

PORTS = struct.Struct("!HH")
"""The first word of TCP and UDP: source and destination port."""
_V4, _V6 = ipv4.HEADER, ipv6.HEADER


@dataclass(slots=True)
class Headers:
    """The IP packet in a frame: where it starts (``l3``), its transport (``l4``) and the fields
    a data plane decides on. ``src_port``/``dst_port`` are the echo identifier for ICMP echo and
    0 where there are none; ``fragment``: this is not a whole datagram (no transport fields
    unless it is the first fragment)."""

    version: int
    l3: int
    l4: int
    src: bytes
    dst: bytes
    proto: int
    ttl: int
    length: int  # IP total length (header included)
    df: bool
    fragment: bool
    first_fragment: bool
    identification: int
    src_port: int = 0
    dst_port: int = 0
    icmp_type: int | None = None
    icmp_code: int = 0
    tcp_flags: int = 0

    @property
    def flow(self) -> tuple[int, int, bytes, int, bytes, int]:
        """``(version, proto, src, src_port, dst, dst_port)``: the connection-tracking tuple."""
        return (self.version, self.proto, self.src, self.src_port, self.dst, self.dst_port)

    @property
    def is_icmp_error(self) -> bool:
        if self.proto == ICMP:
            return self.icmp_type in icmpv4.ERROR_TYPES
        return self.proto == ICMPV6 and self.icmp_type in icmpv6.ERROR_TYPES


def ethertype_of(frame) -> int:
    """The EtherType of an untagged Ethernet II frame."""
    return frame[12] << 8 | frame[13]


def headers(frame, l3: int = ethernet.HEADER_LENGTH) -> Headers | None:
    """The IP headers of ``frame`` (an IP packet starts at ``l3``), or None if it carries no IP."""
    if len(frame) < l3 + ipv4.HEADER_LENGTH:
        return None
    version = frame[l3] >> 4
    if version == 4:
        (ver_ihl, _, length, identification, flags, ttl, proto, _, src, dst) = _V4.unpack_from(frame, l3)
        l4 = l3 + ((ver_ihl & 15) << 2)
        offset = flags & 0x1FFF
        fragment = bool(flags & 0x2000) or offset != 0
        found = Headers(4, l3, l4, src, dst, proto, ttl, length, bool(flags & 0x4000), fragment,
                        offset == 0, identification)
    elif version == 6 and len(frame) >= l3 + ipv6.HEADER_LENGTH:
        _, payload_length, proto, ttl, src, dst = _V6.unpack_from(frame, l3)
        l4, fragment, first, identification = l3 + ipv6.HEADER_LENGTH, False, True, 0
        if proto == ipv6.FRAGMENT:
            proto = frame[l4]
            offset_flags = frame[l4 + 2] << 8 | frame[l4 + 3]
            identification = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
            fragment = bool(offset_flags & 1) or offset_flags >> 3 != 0
            first = offset_flags >> 3 == 0
            l4 += 8
        found = Headers(6, l3, l4, src, dst, proto, ttl, ipv6.HEADER_LENGTH + payload_length, True, fragment, first,
                        identification)
    else:
        return None
    if not found.first_fragment or len(frame) < l4 + 4:
        return found
    if proto in (TCP, UDP):
        found.src_port, found.dst_port = PORTS.unpack_from(frame, l4)
        if proto == TCP and len(frame) >= l4 + 14:
            found.tcp_flags = frame[l4 + 13]
    elif proto in (ICMP, ICMPV6):
        found.icmp_type, found.icmp_code = frame[l4], frame[l4 + 1]
        if found.icmp_type in (icmpv4.ECHO_TYPES if proto == ICMP else icmpv6.ECHO_TYPES):
            found.src_port = found.dst_port = frame[l4 + 4] << 8 | frame[l4 + 5]
    return found


def quoted_headers(frame, outer: Headers) -> Headers | None:
    """The headers of the datagram an ICMP error quotes (None if the quote is too short)."""
    quote = bytes(frame[outer.l4 + 8:])
    if len(quote) < 20:
        return None
    return headers(quote.ljust(outer.version == 4 and 28 or 48, b"\0"), 0)

