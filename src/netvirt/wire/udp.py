"""UDP (RFC 768), checksum over the IPv4 or IPv6 (RFC 8200 §8.1) pseudo-header.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |            Length             |           Checksum            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

A zero checksum means "none" and is accepted over IPv4 only; a computed zero is sent as 0xFFFF.
The checksum is verified when the pseudo-header addresses are given to ``parse``/``decode``.
"""

import struct
from typing import NamedTuple

from netvirt.wire import checksum
from netvirt.wire.errors import BadChecksum, Malformed, Truncated, truncated
from netvirt.wire.ipv4 import UDP
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "udp"
HEADER_LENGTH = 8

VXLAN_PORT = 4789
GENEVE_PORT = 6081

_HEADER = struct.Struct("!HHHH")
_WORD = struct.Struct("!H")
_new = tuple.__new__


class Repr(NamedTuple):
    """A UDP header; Length and Checksum are derived at emit."""

    src_port: int
    dst_port: int

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> "Repr":
        """The header at the start of ``buf``; the checksum is verified when ``src`` and ``dst``
        (the IP addresses of the pseudo-header) are given. Raises ``ParseError``."""
        return cls.decode(buf, src, dst)[0]

    @classmethod
    def decode(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> tuple["Repr", memoryview]:
        """The header and its payload (Length bounds it), zero-copy; see ``parse``."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        if src is not None:
            verify(buf, 0, end, src, dst)
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"", *, src: bytes, dst: bytes, zero_checksum: bool = False) -> bytes:
        """Header + payload; ``src``/``dst`` are the pseudo-header addresses (4 or 16 bytes).

        ``zero_checksum`` sends no checksum (IPv4 only; RFC 7348/8926 tunnels may do so)."""
        length = HEADER_LENGTH + len(payload)
        try:
            header = _HEADER.pack(self.src_port, self.dst_port, length, 0)
        except struct.error as error:
            raise ValueError(f"udp: cannot emit {self} with {len(payload)} payload bytes: {error}") from None
        if zero_checksum:
            if len(src) != 4:
                raise ValueError("udp: a zero checksum is allowed over IPv4 only (RFC 8200 §8.1)")
            return header + payload
        total = checksum.pseudo_header(src, dst, UDP, length) + checksum.partial(header)
        value = checksum.finish(total + checksum.partial(payload)) or 0xFFFF
        return b"".join((header[:6], _WORD.pack(value), payload))

    def to_dict(self) -> dict:
        return {"layer": LAYER, "src_port": self.src_port, "dst_port": self.dst_port}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, payload_start, payload_end, next)``.

    ``next`` selects the decoder of the payload: the destination port.

    ``quoted``: an ICMP error's quote, so Length may exceed the bytes present.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    src_port, dst_port, length, _ = _HEADER.unpack_from(data, start)
    if length < HEADER_LENGTH:
        raise Malformed(LAYER, start + 4, f"length {length} is less than the 8-byte header")
    payload_end = start + length
    if payload_end > end:
        if not quoted:
            raise Truncated(LAYER, start, f"length says {length} bytes, have {end - start}")
        payload_end = end
    return _new(Repr, (src_port, dst_port)), start + HEADER_LENGTH, payload_end, dst_port


def verify(data, start: int, end: int, src: bytes, dst: bytes) -> None:
    """Raise ``BadChecksum`` unless the datagram ``data[start:end]`` verifies over the
    pseudo-header of ``src``/``dst``; zero ("no checksum") passes over IPv4 only."""
    value = data[start + 6] << 8 | data[start + 7]
    if value == 0:
        if len(src) == 4:
            return
        raise BadChecksum(LAYER, start + 6, "zero checksum over IPv6 (RFC 8200 §8.1 requires one)")
    datagram = data[start:end]
    if not checksum.verifies(datagram, checksum.pseudo_header(src, dst, UDP, end - start)):
        expected = checksum.compute(bytes(datagram[:6]) + b"\0\0" + bytes(datagram[8:]),
                                    checksum.pseudo_header(src, dst, UDP, end - start)) or 0xFFFF
        raise BadChecksum(LAYER, start + 6, f"checksum is {value:#06x}, expected {expected:#06x}")


class View(HeaderView):
    """Zero-copy access to a UDP header in a buffer. Port writes and ``update_pseudo_header``
    update a non-zero checksum incrementally (RFC 1624)."""

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
    def length(self) -> int:
        return self.buffer[4] << 8 | self.buffer[5]

    @property
    def checksum(self) -> int:
        return self.buffer[6] << 8 | self.buffer[7]

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH:self.length]

    def _rewrite_word(self, offset: int, value: int) -> None:
        buffer = self.buffer
        old = buffer[offset] << 8 | buffer[offset + 1]
        _WORD.pack_into(buffer, offset, value)
        if self.checksum:
            _WORD.pack_into(buffer, 6, checksum.update_word(self.checksum, old, value) or 0xFFFF)

    def update_pseudo_header(self, old_address: bytes, new_address: bytes) -> None:
        """Fix the checksum after the enclosing IP header's ``old_address`` became ``new_address``."""
        if self.checksum:
            _WORD.pack_into(self.buffer, 6, checksum.update(self.checksum, old_address, new_address) or 0xFFFF)
