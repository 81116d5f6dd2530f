"""NVGRE (RFC 7637): Ethernet over GRE whose Key carries a 24-bit VSID and an 8-bit FlowID.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |0| |1|0|   Reserved0     | Ver |   Protocol Type 0x6558        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |               Virtual Subnet ID (VSID)        |    FlowID     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

C and S are zero, K is one and the protocol is Transparent Ethernet Bridging: exactly the first
word ``FIRST_WORD``. GRE headers of any other shape are plain GRE (``netvirt.wire.gre``).
"""

import struct
from typing import NamedTuple

from netvirt.wire.errors import Malformed, truncated
from netvirt.wire.ethernet import TRANSPARENT_ETHERNET_BRIDGING
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "nvgre"
HEADER_LENGTH = 8
FIRST_WORD = b"\x20\x00\x65\x58"  # K set, version 0, protocol 0x6558

_HEADER = struct.Struct("!4sI")
_new = tuple.__new__


class Repr(NamedTuple):
    """An NVGRE header: ``vsid`` (24 bits) and ``flow_id`` (8 bits, per-flow entropy)."""

    vsid: int
    flow_id: int = 0

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
        if not (0 <= self.vsid < 1 << 24 and 0 <= self.flow_id < 256):
            raise ValueError(f"nvgre: vsid must fit 24 bits and flow_id 8 bits: {self}")
        return _HEADER.pack(FIRST_WORD, self.vsid << 8 | self.flow_id) + payload

    def to_dict(self) -> dict:
        return {"layer": LAYER, "vsid": self.vsid, "flow_id": self.flow_id}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, inner_start, inner_end, next)``.

    ``next`` selects the decoder of the payload: Ethernet's EtherType, 0x6558.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    first_word, key = _HEADER.unpack_from(data, start)
    if first_word != FIRST_WORD:
        raise Malformed(LAYER, start, f"first word is {first_word.hex()}, NVGRE needs {FIRST_WORD.hex()} "
                        f"(K set, C and S clear, version 0, protocol 0x6558)")
    return _new(Repr, (key >> 8, key & 0xFF)), start + HEADER_LENGTH, end, TRANSPARENT_ETHERNET_BRIDGING


class View(HeaderView):
    """Zero-copy access to an NVGRE header in a buffer."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def vsid(self) -> int:
        return int.from_bytes(self.buffer[4:7], "big")

    @vsid.setter
    def vsid(self, value: int) -> None:
        self.buffer[4:7] = value.to_bytes(3, "big")

    @property
    def flow_id(self) -> int:
        return self.buffer[7]

    @flow_id.setter
    def flow_id(self, value: int) -> None:
        self.buffer[7] = value

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH:]
