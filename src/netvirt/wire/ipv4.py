"""IPv4 (RFC 791): options, DF/MF/fragment offset, header checksum verified on parse.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |    DSCP   |ECN|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |0|D|M|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

DSCP/ECN per RFC 2474/3168. ``fragment_offset`` is in 8-octet units, as on the wire. ``options``
are the raw option bytes (a multiple of 4, padding included). Total Length trims what follows the
datagram (Ethernet padding) from the payload.
"""

import struct
from typing import NamedTuple

from netvirt.wire import checksum
from netvirt.wire.addresses import ip_to_text
from netvirt.wire.errors import BadChecksum, Malformed, Truncated, truncated
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "ipv4"
HEADER_LENGTH = 20

ICMP = 1
IPV4_IN_IP = 4
TCP = 6
UDP = 17
IPV6_IN_IP = 41
GRE = 47
ICMPV6 = 58

HEADER = struct.Struct("!BBHHHBBH4s4s")  # the fixed header (``wire.fields`` reads it in place)
_DONT_FRAGMENT = 0x4000
_WORD = struct.Struct("!H")
_new = tuple.__new__
_from_bytes = int.from_bytes  # looked up once: each ``int.from_bytes`` lookup binds a new method


class Repr(NamedTuple):
    """An IPv4 header; Total Length, IHL and Header Checksum are derived at emit."""

    src: bytes
    dst: bytes
    protocol: int
    ttl: int = 64
    identification: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    fragment_offset: int = 0
    dscp: int = 0
    ecn: int = 0
    options: bytes = b""

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The header at the start of ``buf``; raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and its payload (Total Length bytes minus the header), zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    @property
    def is_fragment(self) -> bool:
        """True unless this datagram is whole (MF clear and offset 0)."""
        return self.more_fragments or self.fragment_offset != 0

    def emit(self, payload=b"") -> bytes:
        """Header + payload with Total Length, IHL and Header Checksum filled in."""
        options = self.options
        if len(options) % 4 or len(options) > 40:
            raise ValueError(f"ipv4: options must be a multiple of 4 bytes, at most 40, got {len(options)}")
        if len(self.src) != 4 or len(self.dst) != 4:
            raise ValueError(f"ipv4: addresses are 4 bytes, got src {self.src!r}, dst {self.dst!r}")
        if not (0 <= self.dscp < 64 and 0 <= self.ecn < 4 and 0 <= self.fragment_offset < 8192):
            raise ValueError(f"ipv4: dscp < 64, ecn < 4, fragment_offset < 8192 required: {self}")
        header_length = HEADER_LENGTH + len(options)
        flags = self.dont_fragment << 14 | self.more_fragments << 13 | self.fragment_offset
        try:
            header = HEADER.pack(0x40 | header_length >> 2, self.dscp << 2 | self.ecn,
                                  header_length + len(payload), self.identification, flags,
                                  self.ttl, self.protocol, 0, self.src, self.dst) + options
        except struct.error as error:
            raise ValueError(f"ipv4: cannot emit {self} with {len(payload)} payload bytes: {error}") from None
        return b"".join((header[:10], _WORD.pack(checksum.compute(header)), header[12:], payload))

    def to_dict(self) -> dict:
        return {"layer": LAYER, "src": ip_to_text(self.src), "dst": ip_to_text(self.dst),
                "protocol": self.protocol, "ttl": self.ttl, "identification": self.identification,
                "dont_fragment": self.dont_fragment, "more_fragments": self.more_fragments,
                "fragment_offset": self.fragment_offset, "dscp": self.dscp, "ecn": self.ecn,
                "options": self.options.hex()}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, payload_start, payload_end, next)``.

    ``next`` selects the decoder of the payload: the protocol, None for a fragment.

    Offsets (also in errors) are absolute in ``data``. ``quoted``: the datagram is an ICMP
    error's quote, so Total Length may exceed the bytes present and the checksum is not checked.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    version_ihl, tos, total_length, identification, flags, ttl, protocol, _, src, dst = HEADER.unpack_from(data, start)
    payload_end = start + total_length
    if version_ihl == 0x45 and HEADER_LENGTH <= total_length and payload_end <= end and not quoted:
        # the common case: no options, the whole datagram present, not a quote
        if _from_bytes(data[start:start + HEADER_LENGTH], "big") % 0xFFFF:
            raise _bad_checksum(data, start, HEADER_LENGTH)
        if not tos and (flags == _DONT_FRAGMENT or not flags):  # and no bit fields to split
            return (_new(Repr, (src, dst, protocol, ttl, identification, flags == _DONT_FRAGMENT, False, 0, 0, 0,
                                b"")), start + HEADER_LENGTH, payload_end, protocol)
        payload_start, options = start + HEADER_LENGTH, b""
    else:
        header_length = (version_ihl & 15) << 2
        if version_ihl >> 4 != 4:
            raise Malformed(LAYER, start, f"version is {version_ihl >> 4}, expected 4")
        if header_length < HEADER_LENGTH:
            raise Malformed(LAYER, start, f"header length (IHL) is {header_length} bytes, minimum is 20")
        if total_length < header_length:
            raise Malformed(LAYER, start + 2,
                            f"total length {total_length} is less than the header length {header_length}")
        if payload_end > end:
            if not quoted:
                raise Truncated(LAYER, start, f"total length says {total_length} bytes, have {end - start}")
            if end - start < header_length:
                raise truncated(LAYER, start, end, header_length)
            payload_end = end
        if not quoted and _from_bytes(data[start:start + header_length], "big") % 0xFFFF:
            raise _bad_checksum(data, start, header_length)
        payload_start = start + header_length
        options = data[start + HEADER_LENGTH:payload_start]
    layer = _new(Repr, (src, dst, protocol, ttl, identification, flags & _DONT_FRAGMENT != 0, flags & 0x2000 != 0,
                        flags & 0x1FFF, tos >> 2, tos & 3, options))
    return layer, payload_start, payload_end, None if flags & 0x3FFF else protocol


def _bad_checksum(data, start: int, header_length: int) -> BadChecksum:
    header = bytes(data[start:start + header_length])
    expected = checksum.compute(header[:10] + header[12:])
    value = header[10] << 8 | header[11]
    return BadChecksum(LAYER, start + 10, f"header checksum is {value:#06x}, expected {expected:#06x}")


class View(HeaderView):
    """Zero-copy access to an IPv4 header in a buffer. Writing ``ttl``, ``src`` or ``dst`` (or
    ``decrement_ttl``) updates the header checksum incrementally (RFC 1624)."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def header_length(self) -> int:
        return (self.buffer[0] & 15) << 2

    @property
    def dscp(self) -> int:
        return self.buffer[1] >> 2

    @property
    def ecn(self) -> int:
        return self.buffer[1] & 3

    @property
    def total_length(self) -> int:
        return self.buffer[2] << 8 | self.buffer[3]

    @property
    def identification(self) -> int:
        return self.buffer[4] << 8 | self.buffer[5]

    @property
    def dont_fragment(self) -> bool:
        return bool(self.buffer[6] & 0x40)

    @property
    def more_fragments(self) -> bool:
        return bool(self.buffer[6] & 0x20)

    @property
    def fragment_offset(self) -> int:
        return (self.buffer[6] & 0x1F) << 8 | self.buffer[7]

    @property
    def ttl(self) -> int:
        return self.buffer[8]

    @ttl.setter
    def ttl(self, value: int) -> None:
        buffer = self.buffer
        old = buffer[8] << 8 | buffer[9]
        buffer[8] = value
        _WORD.pack_into(buffer, 10, checksum.update_word(self.header_checksum, old, value << 8 | buffer[9]))

    def decrement_ttl(self) -> int:
        """TTL -= 1 with the RFC 1624 checksum update; returns the new TTL. TTL 0 is a ``ValueError``."""
        buffer = self.buffer
        ttl = buffer[8] - 1
        if ttl < 0:
            raise ValueError("ipv4: cannot decrement TTL 0")
        buffer[8] = ttl
        # HC' = ~(~HC + ~m + m') with m' = m - 0x0100: ~m + m' = 0xFFFF - 0x0100
        total = (0xFFFF - (buffer[10] << 8 | buffer[11])) + 0xFEFF
        _WORD.pack_into(buffer, 10, 0xFFFF - ((total - 1) % 0xFFFF + 1))
        return ttl

    @property
    def protocol(self) -> int:
        return self.buffer[9]

    @property
    def header_checksum(self) -> int:
        return self.buffer[10] << 8 | self.buffer[11]

    @property
    def src(self) -> bytes:
        return bytes(self.buffer[12:16])

    @src.setter
    def src(self, value: bytes) -> None:
        self._rewrite(12, value)

    @property
    def dst(self) -> bytes:
        return bytes(self.buffer[16:20])

    @dst.setter
    def dst(self, value: bytes) -> None:
        self._rewrite(16, value)

    def _rewrite(self, offset: int, value: bytes) -> None:
        if len(value) != 4:
            raise ValueError(f"ipv4: an address is 4 bytes, got {value!r}")
        buffer = self.buffer
        old = bytes(buffer[offset:offset + 4])
        buffer[offset:offset + 4] = value
        _WORD.pack_into(buffer, 10, checksum.update(self.header_checksum, old, value))

    @property
    def options(self) -> bytes:
        return bytes(self.buffer[HEADER_LENGTH:self.header_length])

    @property
    def payload(self) -> memoryview:
        """The bytes after the header up to Total Length."""
        return self.buffer[self.header_length:self.total_length]
