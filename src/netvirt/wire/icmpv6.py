"""ICMPv6 (RFC 4443) and Neighbor Discovery solicitation/advertisement (RFC 4861).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Identifier          |        Sequence Number        |  echo (128, 129)
    |                              MTU                              |  packet too big (2)
    |R|S|O|                     Reserved                            |  neighbor solicitation (135,
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   flags zero) / advertisement (136)
    |                Target Address (128 bits, 135/136)             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Type (1|2)  |  Length (1)   |    Link-Layer Address ...     |  source (135) / target (136)
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   link-layer address option

Any other type keeps its second word raw in ``rest_of_header`` (unused for destination
unreachable and time exceeded, the pointer for parameter problem). Neighbor Discovery options
other than the link-layer address are skipped; emit writes a 6-byte (Ethernet) link-layer address
option when ``link_layer_address`` is set. The checksum covers an IPv6 pseudo-header; it is
verified when ``src`` and ``dst`` are given to ``parse``/``decode``.
"""

import struct
from typing import NamedTuple

from netvirt.wire import checksum
from netvirt.wire.addresses import ip_to_text, mac_to_text
from netvirt.wire.errors import BadChecksum, Malformed, truncated
from netvirt.wire.ipv4 import ICMPV6
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "icmpv6"
HEADER_LENGTH = 8

DESTINATION_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ECHO_REQUEST = 128
ECHO_REPLY = 129
NEIGHBOR_SOLICITATION = 135
NEIGHBOR_ADVERTISEMENT = 136
ERROR_TYPES = frozenset((DESTINATION_UNREACHABLE, PACKET_TOO_BIG, TIME_EXCEEDED, PARAMETER_PROBLEM))
ECHO_TYPES = frozenset((ECHO_REQUEST, ECHO_REPLY))
NEIGHBOR_TYPES = frozenset((NEIGHBOR_SOLICITATION, NEIGHBOR_ADVERTISEMENT))
TYPE_NAMES = {DESTINATION_UNREACHABLE: "destination unreachable", PACKET_TOO_BIG: "packet too big",
              TIME_EXCEEDED: "time exceeded", PARAMETER_PROBLEM: "parameter problem",
              ECHO_REQUEST: "echo request", ECHO_REPLY: "echo reply",
              NEIGHBOR_SOLICITATION: "neighbor solicitation", NEIGHBOR_ADVERTISEMENT: "neighbor advertisement"}

SOURCE_LINK_LAYER_ADDRESS = 1
TARGET_LINK_LAYER_ADDRESS = 2

_ROUTER, _SOLICITED, _OVERRIDE = 1 << 31, 1 << 30, 1 << 29
_HEADER = struct.Struct("!BBHI")
_ECHO = struct.Struct("!HH")
_WORD = struct.Struct("!H")
_new = tuple.__new__


class Repr(NamedTuple):
    """An ICMPv6 message header; fields that do not apply to ``type`` are zero/empty."""

    type: int
    code: int = 0
    identifier: int = 0
    sequence_number: int = 0
    mtu: int = 0
    target_address: bytes = b""
    router: bool = False
    solicited: bool = False
    override: bool = False
    link_layer_address: bytes = b""
    rest_of_header: int = 0

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> "Repr":
        """The message in ``buf`` (the whole message); the checksum is verified when ``src`` and
        ``dst`` (the IPv6 pseudo-header addresses) are given. Raises ``ParseError``."""
        return cls.decode(buf, src, dst)[0]

    @classmethod
    def decode(cls, buf, src: bytes | None = None, dst: bytes | None = None) -> tuple["Repr", memoryview]:
        """The header and the data after it (echo data or quoted datagram), zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        if src is not None:
            verify(buf, 0, len(buf), src, dst)
        return layer, memoryview(buf)[start:end]

    @property
    def is_error(self) -> bool:
        """True for error messages, whose payload quotes the offending packet."""
        return self.type in ERROR_TYPES

    def _body(self) -> bytes:
        kind = self.type
        if kind in ECHO_TYPES:
            return _ECHO.pack(self.identifier, self.sequence_number)
        if kind == PACKET_TOO_BIG:
            return self.mtu.to_bytes(4, "big")
        if kind in NEIGHBOR_TYPES:
            if len(self.target_address) != 16:
                raise ValueError(f"icmpv6: target_address must be 16 bytes, got {self.target_address!r}")
            flags = 0
            if kind == NEIGHBOR_ADVERTISEMENT:
                flags = self.router * _ROUTER | self.solicited * _SOLICITED | self.override * _OVERRIDE
            body = flags.to_bytes(4, "big") + self.target_address
            address = self.link_layer_address
            if address:
                if len(address) != 6:
                    raise ValueError(f"icmpv6: link_layer_address must be 6 bytes (Ethernet), got {address!r}")
                option = SOURCE_LINK_LAYER_ADDRESS if kind == NEIGHBOR_SOLICITATION else TARGET_LINK_LAYER_ADDRESS
                body += bytes((option, 1)) + address
            return body
        return self.rest_of_header.to_bytes(4, "big")

    def emit(self, payload=b"", *, src: bytes, dst: bytes) -> bytes:
        """Header + payload with the checksum over the pseudo-header of ``src``/``dst`` (16 bytes)."""
        try:
            message = bytes((self.type, self.code, 0, 0)) + self._body()
        except (struct.error, OverflowError, ValueError) as error:
            raise ValueError(f"icmpv6: cannot emit {self}: {error}") from None
        total = checksum.pseudo_header(src, dst, ICMPV6, len(message) + len(payload))
        value = checksum.finish(total + checksum.partial(message) + checksum.partial(payload))
        return b"".join((message[:2], _WORD.pack(value), message[4:], payload))

    def to_dict(self) -> dict:
        fields = {"layer": LAYER, "type": self.type, "code": self.code}
        if self.type in ECHO_TYPES:
            fields.update(identifier=self.identifier, sequence_number=self.sequence_number)
        elif self.type == PACKET_TOO_BIG:
            fields.update(mtu=self.mtu)
        elif self.type in NEIGHBOR_TYPES:
            fields.update(target_address=ip_to_text(self.target_address), router=self.router,
                          solicited=self.solicited, override=self.override,
                          link_layer_address=mac_to_text(self.link_layer_address))
        else:
            fields.update(rest_of_header=self.rest_of_header)
        return fields


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the message in ``data[start:end]``: ``(Repr, data_start, data_end, next)``.

    ``next`` selects the decoder of the payload: the message type (errors quote a packet); None for neighbor discovery.

    The checksum needs the pseudo-header, so it is checked by ``verify``, not here.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    kind, code, _, word = _HEADER.unpack_from(data, start)
    if kind in ECHO_TYPES:
        layer = _new(Repr, (kind, code, word >> 16, word & 0xFFFF, 0, b"", False, False, False, b"", 0))
    elif kind == PACKET_TOO_BIG:
        layer = _new(Repr, (kind, code, 0, 0, word, b"", False, False, False, b"", 0))
    elif kind in NEIGHBOR_TYPES:
        return _decode_neighbor(data, start, end, kind, code, word)
    else:
        layer = _new(Repr, (kind, code, 0, 0, 0, b"", False, False, False, b"", word))
    return layer, start + HEADER_LENGTH, end, kind


def _decode_neighbor(data, start, end, kind, code, flags):
    if end - start < 24:
        raise truncated(LAYER, start, end, 24)
    target = data[start + 8:start + 24]
    wanted = SOURCE_LINK_LAYER_ADDRESS if kind == NEIGHBOR_SOLICITATION else TARGET_LINK_LAYER_ADDRESS
    address = b""
    offset = start + 24
    while offset < end:
        if end - offset < 2:
            raise truncated(LAYER, offset, end, 2)
        option, length = data[offset], data[offset + 1] * 8
        if length == 0 or offset + length > end:
            raise Malformed(LAYER, offset, f"option {option} has length {length} bytes, "
                            f"{end - offset} bytes are left (RFC 4861 §4.6)")
        if option == wanted:
            address = data[offset + 2:offset + (8 if length == 8 else length)]
        offset += length
    is_advertisement = kind == NEIGHBOR_ADVERTISEMENT
    layer = _new(Repr, (kind, code, 0, 0, 0, target, is_advertisement and bool(flags & _ROUTER),
                        is_advertisement and bool(flags & _SOLICITED),
                        is_advertisement and bool(flags & _OVERRIDE), address, 0))
    return layer, end, end, None


def verify(data, start: int, end: int, src: bytes, dst: bytes) -> None:
    """Raise ``BadChecksum`` unless the message ``data[start:end]`` verifies over the IPv6
    pseudo-header of ``src``/``dst``."""
    pseudo = checksum.pseudo_header(src, dst, ICMPV6, end - start)
    message = data[start:end]
    if not checksum.verifies(message, pseudo):
        value = message[2] << 8 | message[3]
        expected = checksum.compute(bytes(message[:2]) + b"\0\0" + bytes(message[4:]), pseudo)
        raise BadChecksum(LAYER, start + 2, f"checksum is {value:#06x}, expected {expected:#06x}")


class View(HeaderView):
    """Zero-copy access to an ICMPv6 header in a buffer; writing the echo ``identifier`` and
    ``update_pseudo_header`` update the checksum incrementally (RFC 1624)."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def type(self) -> int:
        return self.buffer[0]

    @property
    def code(self) -> int:
        return self.buffer[1]

    @property
    def checksum(self) -> int:
        return self.buffer[2] << 8 | self.buffer[3]

    @property
    def identifier(self) -> int:
        return self.buffer[4] << 8 | self.buffer[5]

    @identifier.setter
    def identifier(self, value: int) -> None:
        old = self.identifier
        _WORD.pack_into(self.buffer, 4, value)
        _WORD.pack_into(self.buffer, 2, checksum.update_word(self.checksum, old, value))

    @property
    def sequence_number(self) -> int:
        return self.buffer[6] << 8 | self.buffer[7]

    @property
    def mtu(self) -> int:
        return int.from_bytes(self.buffer[4:8], "big")

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH:]

    def update_pseudo_header(self, old_address: bytes, new_address: bytes) -> None:
        """Fix the checksum after the enclosing IPv6 header's ``old_address`` became ``new_address``."""
        _WORD.pack_into(self.buffer, 2, checksum.update(self.checksum, old_address, new_address))
