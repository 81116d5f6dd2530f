"""VXLAN (RFC 7348): an Ethernet frame over UDP port 4789, tagged with a 24-bit VNI.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |R|R|R|R|I|R|R|R|            Reserved                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                VXLAN Network Identifier (VNI) |   Reserved    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

The I flag must be set (a clear I flag is ``Malformed``); reserved bits are ignored on parse and
sent as zero.
"""

import struct
from typing import NamedTuple

from netvirt.wire.errors import Malformed, truncated
from netvirt.wire.ethernet import TRANSPARENT_ETHERNET_BRIDGING
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "vxlan"
HEADER_LENGTH = 8
PORT = 4789

_HEADER = struct.Struct("!II")
_FLAG_I = 0x08000000
_new = tuple.__new__


class Repr(NamedTuple):
    """A VXLAN header."""

    vni: int

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The header at the start of ``buf``; raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and the inner Ethernet frame, zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"") -> bytes:
        """Header + inner frame."""
        if not 0 <= self.vni < 1 << 24:
            raise ValueError(f"vxlan: vni {self.vni} does not fit 24 bits")
        return _HEADER.pack(_FLAG_I, self.vni << 8) + payload

    def to_dict(self) -> dict:
        return {"layer": LAYER, "vni": self.vni}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, inner_start, inner_end, next)``.

    ``next`` selects the decoder of the payload: Ethernet's EtherType, 0x6558.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    flags, vni = _HEADER.unpack_from(data, start)
    if not flags & _FLAG_I:
        raise Malformed(LAYER, start, f"I flag is clear (flags {flags >> 24:#04x}); RFC 7348 requires it")
    return _new(Repr, (vni >> 8,)), start + HEADER_LENGTH, end, TRANSPARENT_ETHERNET_BRIDGING


class View(HeaderView):
    """Zero-copy access to a VXLAN header in a buffer."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def vni(self) -> int:
        return int.from_bytes(self.buffer[4:7], "big")

    @vni.setter
    def vni(self, value: int) -> None:
        self.buffer[4:7] = value.to_bytes(3, "big")

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH:]
