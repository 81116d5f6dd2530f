"""TCP (RFC 9293) with options, checksum over the IPv4 or IPv6 pseudo-header.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |       |C|E|U|A|P|R|S|F|                               |
    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
    |       |       |R|E|G|K|H|T|N|N|                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                           [Options]                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``options`` is a tuple of ``Option(kind, data)`` up to the End of Option List; No-Operation is
``Option(NO_OPERATION)``. Emit pads the options with zero bytes (End of Option List) to a multiple
of 4. The checksum is verified when the pseudo-header addresses are given to ``parse``/``decode``.
"""

import struct
from typing import NamedTuple

from netvirt.wire import checksum
from netvirt.wire.errors import BadChecksum, Malformed, truncated
from netvirt.wire.ipv4 import TCP
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "tcp"
HEADER_LENGTH = 20

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (1 << bit for bit in range(8))
FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"), (ACK, "."))

END_OF_OPTION_LIST = 0
NO_OPERATION = 1
MAXIMUM_SEGMENT_SIZE = 2
WINDOW_SCALE = 3
SACK_PERMITTED = 4
SACK = 5
TIMESTAMPS = 8

_HEADER = struct.Struct("!HHIIBBHHH")
_WORD = struct.Struct("!H")
_new = tuple.__new__


class Option(NamedTuple):
    """One TCP option: ``kind`` and its ``data`` (without the kind and length bytes)."""

    kind: int
    data: bytes = b""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "data": self.data.hex()}


_NOP_OPTION = Option(NO_OPERATION)
_NOP_NOP_TIMESTAMPS = int.from_bytes(bytes((NO_OPERATION, NO_OPERATION, TIMESTAMPS, 10)), "big")
_FIRST_OPTIONS = struct.Struct("!I8s")  # NOP, NOP, Timestamps: their first word, and the timestamps


class Repr(NamedTuple):
    """A TCP header; Data Offset and Checksum are derived at emit."""

    src_port: int
    dst_port: int
    sequence_number: int = 0
    acknowledgment_number: int = 0
    flags: int = 0
    window: int = 65535
    urgent_pointer: int = 0
    options: tuple[Option, ...] = ()

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> "Repr":
        """The header at the start of ``buf`` (the whole segment); the checksum is verified when
        ``src`` and ``dst`` (the pseudo-header addresses) are given. Raises ``ParseError``."""
        return cls.decode(buf, src, dst)[0]

    @classmethod
    def decode(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> tuple["Repr", memoryview]:
        """The header and the segment's data, zero-copy; see ``parse``."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        if src is not None:
            verify(buf, 0, end, src, dst)
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"", *, src: bytes, dst: bytes) -> bytes:
        """Header + payload; ``src``/``dst`` are the pseudo-header addresses (4 or 16 bytes)."""
        options = emit_options(self.options)
        header_length = HEADER_LENGTH + len(options)
        try:
            header = _HEADER.pack(self.src_port, self.dst_port, self.sequence_number,
                                  self.acknowledgment_number, header_length << 2, self.flags,
                                  self.window, 0, self.urgent_pointer) + options
        except struct.error as error:
            raise ValueError(f"tcp: cannot emit {self}: {error}") from None
        total = checksum.pseudo_header(src, dst, TCP, header_length + len(payload))
        value = checksum.finish(total + checksum.partial(header) + checksum.partial(payload))
        return b"".join((header[:16], _WORD.pack(value), header[18:], payload))

    def to_dict(self) -> dict:
        return {"layer": LAYER, "src_port": self.src_port, "dst_port": self.dst_port,
                "sequence_number": self.sequence_number,
                "acknowledgment_number": self.acknowledgment_number, "flags": self.flags,
                "window": self.window, "urgent_pointer": self.urgent_pointer,
                "options": [option.to_dict() for option in self.options]}


def flag_letters(flags: int) -> str:
    """tcpdump's flag letters, e.g. ``"S."`` for SYN+ACK."""
    return "".join(letter for bit, letter in FLAG_LETTERS if flags & bit) or "none"


def emit_options(options: tuple[Option, ...]) -> bytes:
    """Option bytes padded with End of Option List to a multiple of 4 (at most 40)."""
    if not options:
        return b""
    parts = []
    for kind, data in options:
        if kind == NO_OPERATION or kind == END_OF_OPTION_LIST:
            if data:
                raise ValueError(f"tcp: option kind {kind} carries no data, got {data!r}")
            parts.append(bytes([kind]))
        elif not 0 <= kind < 256 or len(data) > 38:
            raise ValueError(f"tcp: option kind {kind} with {len(data)} data bytes does not fit")
        else:
            parts.append(bytes([kind, len(data) + 2]) + data)
    encoded = b"".join(parts)
    encoded += bytes(-len(encoded) % 4)
    if len(encoded) > 40:
        raise ValueError(f"tcp: options take {len(encoded)} bytes, at most 40 fit")
    return encoded


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, data_start, data_end, next)``.

    ``next`` is None: nothing is decoded after this header.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    (src_port, dst_port, sequence_number, acknowledgment_number, data_offset, flags, window, _,
     urgent_pointer) = _HEADER.unpack_from(data, start)
    header_length = (data_offset >> 4) << 2
    if header_length < HEADER_LENGTH:
        raise Malformed(LAYER, start + 12, f"data offset is {header_length} bytes, minimum is 20")
    options = ()
    if header_length > HEADER_LENGTH:
        if end - start < header_length:
            raise truncated(LAYER, start, end, header_length)
        if header_length == 32:
            word, timestamps = _FIRST_OPTIONS.unpack_from(data, start + HEADER_LENGTH)
            if word == _NOP_NOP_TIMESTAMPS:  # what Linux puts on nearly every segment
                options = (_NOP_OPTION, _NOP_OPTION, _new(Option, (TIMESTAMPS, timestamps)))
        if not options:
            options = _decode_options(data, start + HEADER_LENGTH, start + header_length)
    layer = _new(Repr, (src_port, dst_port, sequence_number, acknowledgment_number, flags, window,
                        urgent_pointer, options))
    return layer, start + header_length, end, None


def _decode_options(data, offset: int, end: int) -> tuple[Option, ...]:
    options = []
    while offset < end:
        kind = data[offset]
        if kind == END_OF_OPTION_LIST:
            break
        if kind == NO_OPERATION:
            options.append(_NOP_OPTION)
            offset += 1
            continue
        if offset + 1 >= end:
            raise Malformed(LAYER, offset, f"option kind {kind} has no length byte")
        length = data[offset + 1]
        if length < 2 or offset + length > end:
            raise Malformed(LAYER, offset, f"option kind {kind} has length {length}, "
                            f"{end - offset} option bytes are left")
        options.append(_new(Option, (kind, data[offset + 2:offset + length])))
        offset += length
    return tuple(options)


def verify(data, start: int, end: int, src: bytes, dst: bytes) -> None:
    """Raise ``BadChecksum`` unless the segment ``data[start:end]`` verifies over the
    pseudo-header of ``src``/``dst``."""
    pseudo = checksum.pseudo_header(src, dst, TCP, end - start)
    segment = data[start:end]
    if not checksum.verifies(segment, pseudo):
        value = segment[16] << 8 | segment[17]
        expected = checksum.compute(bytes(segment[:16]) + b"\0\0" + bytes(segment[18:]), pseudo)
        raise BadChecksum(LAYER, start + 16, f"checksum is {value:#06x}, expected {expected:#06x}")


class View(HeaderView):
    """Zero-copy access to a TCP header in a buffer. Port writes and ``update_pseudo_header``
    update the checksum incrementally (RFC 1624)."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def src_port(self) -> int:
        return self.buffer[0] << 8 | self.buffer[1]

    @src_port.setter
    def src_port(self, value: int) -> None:
        self._rewrite_word(0, value)

    @property
    def dst_port(self) -> int:
        return self.buffer[2] << 8 | self.buffer[3]

    @dst_port.setter
    def dst_port(self, value: int) -> None:
        self._rewrite_word(2, value)

    @property
    def sequence_number(self) -> int:
        return int.from_bytes(self.buffer[4:8], "big")

    @property
    def acknowledgment_number(self) -> int:
        return int.from_bytes(self.buffer[8:12], "big")

    @property
    def header_length(self) -> int:
        return (self.buffer[12] >> 4) << 2

    @property
    def flags(self) -> int:
        return self.buffer[13]

    @property
    def window(self) -> int:
        return self.buffer[14] << 8 | self.buffer[15]

    @property
    def checksum(self) -> int:
        return self.buffer[16] << 8 | self.buffer[17]

    @property
    def urgent_pointer(self) -> int:
        return self.buffer[18] << 8 | self.buffer[19]

    @property
    def payload(self) -> memoryview:
        return self.buffer[self.header_length:]

    def _rewrite_word(self, offset: int, value: int) -> None:
        buffer = self.buffer
        old = buffer[offset] << 8 | buffer[offset + 1]
        _WORD.pack_into(buffer, offset, value)
        _WORD.pack_into(buffer, 16, checksum.update_word(self.checksum, old, value))

    def update_pseudo_header(self, old_address: bytes, new_address: bytes) -> None:
        """Fix the checksum after the enclosing IP header's ``old_address`` became ``new_address``."""
        _WORD.pack_into(self.buffer, 16, checksum.update(self.checksum, old_address, new_address))
