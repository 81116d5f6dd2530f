"""GRE (RFC 2784) with the Key and Sequence Number extensions (RFC 2890).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |C| |K|S| Reserved0       | Ver |         Protocol Type         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |      Checksum (optional)      |       Reserved1 (Optional)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Key (optional)                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Sequence Number (Optional)                    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``key``/``sequence_number`` are ``None`` when absent. The checksum (when ``checksum_present``)
covers the GRE header and payload; it is derived at emit and verified on parse. Version must be 0
and the RFC 1701 bits (routing, strict source route, recursion) zero, else ``Malformed``. NVGRE
(RFC 7637) is GRE too; its own codec is ``netvirt.wire.nvgre``.
"""

import struct
from typing import NamedTuple

from netvirt.wire import checksum
from netvirt.wire.errors import BadChecksum, Malformed, truncated
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "gre"

_CHECKSUM_PRESENT = 0x8000
_KEY_PRESENT = 0x2000
_SEQUENCE_PRESENT = 0x1000
_HEADER = struct.Struct("!HH")
_WORD = struct.Struct("!H")
_new = tuple.__new__


class Repr(NamedTuple):
    """A GRE header; ``protocol`` is the EtherType of the payload (0x6558: Ethernet)."""

    protocol: int
    checksum_present: bool = False
    key: int | None = None
    sequence_number: int | None = None

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The header at the start of ``buf`` (the whole packet when a checksum is present);
        raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and the payload, zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"") -> bytes:
        """Header + payload, the checksum filled in when ``checksum_present``."""
        flags = (_CHECKSUM_PRESENT if self.checksum_present else 0) \
            | (0 if self.key is None else _KEY_PRESENT) \
            | (0 if self.sequence_number is None else _SEQUENCE_PRESENT)
        try:
            parts = [_HEADER.pack(flags, self.protocol)]
            if self.checksum_present:
                parts.append(b"\0\0\0\0")
            if self.key is not None:
                parts.append(self.key.to_bytes(4, "big"))
            if self.sequence_number is not None:
                parts.append(self.sequence_number.to_bytes(4, "big"))
        except (struct.error, OverflowError) as error:
            raise ValueError(f"gre: cannot emit {self}: {error}") from None
        header = b"".join(parts)
        if not self.checksum_present:
            return header + payload
        value = checksum.finish(checksum.partial(header) + checksum.partial(payload))
        return b"".join((header[:4], _WORD.pack(value), header[6:], payload))

    def to_dict(self) -> dict:
        return {"layer": LAYER, "protocol": self.protocol, "checksum_present": self.checksum_present,
                "key": self.key, "sequence_number": self.sequence_number}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, payload_start, payload_end, next)``.

    ``next`` selects the decoder of the payload: the Protocol Type.

    ``quoted``: cut short inside an ICMP error, so the checksum is not checked.
    """
    if end - start < 4:
        raise truncated(LAYER, start, end, 4)
    flags, protocol = _HEADER.unpack_from(data, start)
    if flags & 0x0007:
        raise Malformed(LAYER, start, f"version is {flags & 7}, expected 0 (RFC 2784)")
    if flags & 0x4FF8:
        raise Malformed(LAYER, start, f"flags {flags >> 8:#04x}: RFC 1701 routing/recursion bits are "
                        f"set; only RFC 2784/2890 GRE is decoded")
    offset = start + 4
    length = 4 + 4 * (bool(flags & _CHECKSUM_PRESENT) + bool(flags & _KEY_PRESENT) + bool(flags & _SEQUENCE_PRESENT))
    if end - start < length:
        raise truncated(LAYER, start, end, length)
    checksum_present = bool(flags & _CHECKSUM_PRESENT)
    if checksum_present:
        if not quoted and not checksum.verifies(data[start:end]):
            value = data[offset] << 8 | data[offset + 1]
            raise BadChecksum(LAYER, offset, f"checksum {value:#06x} does not verify")
        offset += 4
    key = sequence_number = None
    if flags & _KEY_PRESENT:
        key = int.from_bytes(data[offset:offset + 4], "big")
        offset += 4
    if flags & _SEQUENCE_PRESENT:
        sequence_number = int.from_bytes(data[offset:offset + 4], "big")
        offset += 4
    return _new(Repr, (protocol, checksum_present, key, sequence_number)), offset, end, protocol


class View(HeaderView):
    """Zero-copy access to a GRE header in a buffer."""

    __slots__ = ()
    layer = LAYER
    minimum_length = 4

    @property
    def checksum_present(self) -> bool:
        return bool(self.buffer[0] & 0x80)

    @property
    def key_present(self) -> bool:
        return bool(self.buffer[0] & 0x20)

    @property
    def sequence_present(self) -> bool:
        return bool(self.buffer[0] & 0x10)

    @property
    def protocol(self) -> int:
        return self.buffer[2] << 8 | self.buffer[3]

    @property
    def header_length(self) -> int:
        return 4 + 4 * (self.checksum_present + self.key_present + self.sequence_present)

    @property
    def key(self) -> int | None:
        if not self.key_present:
            return None
        offset = 8 if self.checksum_present else 4
        return int.from_bytes(self.buffer[offset:offset + 4], "big")

    @property
    def payload(self) -> memoryview:
        return self.buffer[self.header_length:]
