"""IPv6 (RFC 8200): fixed header; extension headers skipped, the Fragment header exposed.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Source Address (128 bits)                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Destination Address (128 bits)                |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Fragment header (RFC 8200 §4.5), Next Header 44:
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Identification                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Hop-by-Hop Options (0), Routing (43) and Destination Options (60) headers are skipped on parse
and not emitted; ``next_header`` is the protocol after all extension headers. The Fragment
header is ``Repr.fragment``; when present, emit writes it (Next Header 44 in the fixed header).
"""

import struct
from typing import NamedTuple

from netvirt.wire.addresses import ip_to_text
from netvirt.wire.errors import Malformed, Truncated, truncated
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "ipv6"
HEADER_LENGTH = 40

HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
DESTINATION_OPTIONS = 60
SKIPPED_HEADERS = frozenset((HOP_BY_HOP, ROUTING, DESTINATION_OPTIONS))
EXTENSION_HEADERS = SKIPPED_HEADERS | {FRAGMENT}

HEADER = struct.Struct("!IHBB16s16s")  # the fixed header (``wire.fields`` reads it in place)
_FRAGMENT = struct.Struct("!BBHI")
_new = tuple.__new__


class Fragment(NamedTuple):
    """The Fragment header: ``fragment_offset`` in 8-octet units, as on the wire."""

    identification: int
    fragment_offset: int = 0
    more_fragments: bool = False

    def to_dict(self) -> dict:
        return {"identification": self.identification, "fragment_offset": self.fragment_offset,
                "more_fragments": self.more_fragments}


class Repr(NamedTuple):
    """An IPv6 header; Payload Length is derived at emit."""

    src: bytes
    dst: bytes
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    fragment: Fragment | None = None

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The header (and extension headers) at the start of ``buf``; raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and the upper-layer payload (Payload Length bounds it), zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    @property
    def is_fragment(self) -> bool:
        """True when a Fragment header says this is not a whole datagram."""
        fragment = self.fragment
        return fragment is not None and (fragment.more_fragments or fragment.fragment_offset != 0)

    def emit(self, payload=b"") -> bytes:
        """Header (+ Fragment header) + payload with Payload Length filled in."""
        if len(self.src) != 16 or len(self.dst) != 16:
            raise ValueError(f"ipv6: addresses are 16 bytes, got src {self.src!r}, dst {self.dst!r}")
        if not (0 <= self.traffic_class < 256 and 0 <= self.flow_label < 1 << 20):
            raise ValueError(f"ipv6: traffic_class < 256 and flow_label < 2**20 required: {self}")
        first_word = 6 << 28 | self.traffic_class << 20 | self.flow_label
        fragment = self.fragment
        try:
            if fragment is None:
                return HEADER.pack(first_word, len(payload), self.next_header, self.hop_limit,
                                    self.src, self.dst) + payload
            if not 0 <= fragment.fragment_offset < 8192:
                raise ValueError(f"ipv6: fragment_offset < 8192 required: {fragment}")
            extension = _FRAGMENT.pack(self.next_header, 0, fragment.fragment_offset << 3 | fragment.more_fragments,
                                       fragment.identification)
            return b"".join((HEADER.pack(first_word, 8 + len(payload), FRAGMENT, self.hop_limit, self.src,
                                          self.dst), extension, payload))
        except struct.error as error:
            raise ValueError(f"ipv6: cannot emit {self} with {len(payload)} payload bytes: {error}") from None

    def to_dict(self) -> dict:
        return {"layer": LAYER, "src": ip_to_text(self.src), "dst": ip_to_text(self.dst),
                "next_header": self.next_header, "hop_limit": self.hop_limit,
                "traffic_class": self.traffic_class, "flow_label": self.flow_label,
                "fragment": None if self.fragment is None else self.fragment.to_dict()}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, payload_start, payload_end, next)``.

    ``next`` selects the decoder of the payload: the upper-layer protocol, None for a fragment.

    Offsets (also in errors) are absolute in ``data``. ``quoted``: the datagram is an ICMPv6
    error's quote, so Payload Length may exceed the bytes present.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    first_word, payload_length, next_header, hop_limit, src, dst = HEADER.unpack_from(data, start)
    if first_word >> 28 != 6:
        raise Malformed(LAYER, start, f"version is {first_word >> 28}, expected 6")
    offset = start + HEADER_LENGTH
    payload_end = offset + payload_length
    if payload_end > end:
        if not quoted:
            raise Truncated(LAYER, start, f"payload length says {payload_length} bytes after the "
                            f"40-byte header, have {end - offset}")
        payload_end = end
    fragment = None
    while next_header in EXTENSION_HEADERS:
        if next_header == FRAGMENT:
            if payload_end - offset < 8:
                raise truncated(LAYER, offset, payload_end, 8)
            next_header, _, offset_flags, identification = _FRAGMENT.unpack_from(data, offset)
            fragment = _new(Fragment, (identification, offset_flags >> 3, bool(offset_flags & 1)))
            offset += 8
        else:
            if payload_end - offset < 2:
                raise truncated(LAYER, offset, payload_end, 2)
            length = (data[offset + 1] + 1) << 3
            if payload_end - offset < length:
                raise truncated(LAYER, offset, payload_end, length)
            next_header = data[offset]
            offset += length
    layer = _new(Repr, (src, dst, next_header, hop_limit, first_word >> 20 & 0xFF, first_word & 0xFFFFF, fragment))
    whole = fragment is None or not (fragment.fragment_offset or fragment.more_fragments)
    return layer, offset, payload_end, next_header if whole else None


class View(HeaderView):
    """Zero-copy access to a fixed IPv6 header in a buffer (IPv6 has no header checksum; after
    rewriting an address, update the upper layer with its ``update_pseudo_header``)."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def traffic_class(self) -> int:
        return (self.buffer[0] & 15) << 4 | self.buffer[1] >> 4

    @property
    def flow_label(self) -> int:
        return (self.buffer[1] & 15) << 16 | self.buffer[2] << 8 | self.buffer[3]

    @property
    def payload_length(self) -> int:
        return self.buffer[4] << 8 | self.buffer[5]

    @property
    def next_header(self) -> int:
        """The Next Header field of the fixed header (an extension header's type, if any)."""
        return self.buffer[6]

    @property
    def hop_limit(self) -> int:
        return self.buffer[7]

    @hop_limit.setter
    def hop_limit(self, value: int) -> None:
        self.buffer[7] = value

    def decrement_hop_limit(self) -> int:
        """Hop limit -= 1; returns the new value. Hop limit 0 is a ``ValueError``."""
        hop_limit = self.buffer[7] - 1
        if hop_limit < 0:
            raise ValueError("ipv6: cannot decrement hop limit 0")
        self.buffer[7] = hop_limit
        return hop_limit

    @property
    def src(self) -> bytes:
        return bytes(self.buffer[8:24])

    @src.setter
    def src(self, value: bytes) -> None:
        self._rewrite(8, value)

    @property
    def dst(self) -> bytes:
        return bytes(self.buffer[24:40])

    @dst.setter
    def dst(self, value: bytes) -> None:
        self._rewrite(24, value)

    def _rewrite(self, offset: int, value: bytes) -> None:
        if len(value) != 16:
            raise ValueError(f"ipv6: an address is 16 bytes, got {value!r}")
        self.buffer[offset:offset + 16] = value

    @property
    def payload(self) -> memoryview:
        """The bytes after the fixed header up to Payload Length (extension headers included)."""
        return self.buffer[HEADER_LENGTH:HEADER_LENGTH + self.payload_length]
