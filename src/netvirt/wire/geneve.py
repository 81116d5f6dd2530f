"""Geneve (RFC 8926): a tunnel over UDP port 6081 with a 24-bit VNI and TLV options.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |        Virtual Network Identifier (VNI)       |    Reserved   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Variable-Length Options                       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    Each option:
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Option Class         |      Type     |R|R|R| Length  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Variable-Length Option Data                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Opt Len and each option's Length count 4-byte words and are derived at emit; so is the C flag
(set when an option type has its critical bit, 0x80). ``protocol`` is an EtherType; 0x6558 means
an Ethernet frame follows.
"""

import struct
from typing import NamedTuple

from netvirt.wire.errors import Malformed, truncated
from netvirt.wire.ethernet import TRANSPARENT_ETHERNET_BRIDGING
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "geneve"
HEADER_LENGTH = 8
PORT = 6081
CRITICAL = 0x80  # the critical bit of an option type

_HEADER = struct.Struct("!BBHI")
_OPTION = struct.Struct("!HBB")
_OAM = 0x80
_CRITICAL_PRESENT = 0x40
_new = tuple.__new__


class Option(NamedTuple):
    """One TLV option; ``data`` is a multiple of 4 bytes, at most 124. JSON: class/type/data."""

    option_class: int
    type: int
    data: bytes = b""

    def to_dict(self) -> dict:
        return {"class": self.option_class, "type": self.type, "data": self.data.hex()}


class Repr(NamedTuple):
    """A Geneve header with its options (outer-first order kept)."""

    vni: int
    protocol: int = TRANSPARENT_ETHERNET_BRIDGING
    options: tuple[Option, ...] = ()
    oam: bool = False

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The header at the start of ``buf``; raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and the tunnelled payload, zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"") -> bytes:
        """Header + options + payload with Opt Len, option Lengths and the C flag derived."""
        if not 0 <= self.vni < 1 << 24:
            raise ValueError(f"geneve: vni {self.vni} does not fit 24 bits")
        parts = []
        critical = 0
        for option in self.options:
            option_class, option_type, data = option
            if len(data) % 4 or len(data) > 124:
                raise ValueError(f"geneve: option data must be a multiple of 4 bytes, at most 124: {option}")
            try:
                parts.append(_OPTION.pack(option_class, option_type, len(data) >> 2) + data)
            except struct.error as error:
                raise ValueError(f"geneve: cannot emit {option}: {error}") from None
            critical |= option_type & CRITICAL
        options = b"".join(parts)
        if len(options) > 252:
            raise ValueError(f"geneve: options take {len(options)} bytes, at most 252 fit")
        flags = (_OAM if self.oam else 0) | (_CRITICAL_PRESENT if critical else 0)
        try:
            header = _HEADER.pack(len(options) >> 2, flags, self.protocol, self.vni << 8)
        except struct.error as error:
            raise ValueError(f"geneve: cannot emit {self}: {error}") from None
        return b"".join((header, options, payload))

    def to_dict(self) -> dict:
        return {"layer": LAYER, "vni": self.vni, "protocol": self.protocol,
                "options": [option.to_dict() for option in self.options], "oam": self.oam}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, payload_start, payload_end, next)``.

    ``next`` selects the decoder of the payload: the Protocol Type.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    version_length, flags, protocol, vni = _HEADER.unpack_from(data, start)
    if version_length >> 6:
        raise Malformed(LAYER, start, f"version is {version_length >> 6}, expected 0")
    payload_start = start + HEADER_LENGTH + ((version_length & 0x3F) << 2)
    options = ()
    if payload_start > start + HEADER_LENGTH:
        if end - start < payload_start - start:
            raise truncated(LAYER, start, end, payload_start - start)
        options = _decode_options(data, start + HEADER_LENGTH, payload_start)
    return _new(Repr, (vni >> 8, protocol, options, bool(flags & _OAM))), payload_start, end, protocol


def _decode_options(data, offset: int, end: int) -> tuple[Option, ...]:
    options = []
    while offset < end:
        if end - offset < 4:
            raise Malformed(LAYER, offset, f"option header needs 4 bytes, {end - offset} left in Opt Len")
        option_class, option_type, length = _OPTION.unpack_from(data, offset)
        data_end = offset + 4 + ((length & 0x1F) << 2)
        if data_end > end:
            raise Malformed(LAYER, offset, f"option length {(length & 0x1F) << 2} overruns Opt Len by "
                            f"{data_end - end} bytes")
        options.append(_new(Option, (option_class, option_type, data[offset + 4:data_end])))
        offset = data_end
    return tuple(options)


class View(HeaderView):
    """Zero-copy access to a Geneve header in a buffer."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def options_length(self) -> int:
        """Length of the options in bytes."""
        return (self.buffer[0] & 0x3F) << 2

    @property
    def oam(self) -> bool:
        return bool(self.buffer[1] & _OAM)

    @property
    def critical(self) -> bool:
        return bool(self.buffer[1] & _CRITICAL_PRESENT)

    @property
    def protocol(self) -> int:
        return self.buffer[2] << 8 | self.buffer[3]

    @property
    def vni(self) -> int:
        return int.from_bytes(self.buffer[4:7], "big")

    @vni.setter
    def vni(self, value: int) -> None:
        self.buffer[4:7] = value.to_bytes(3, "big")

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH + self.options_length:]
