"""ICMP for IPv4 (RFC 792; fragmentation needed with next-hop MTU per RFC 1191).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Identifier          |        Sequence Number        |  echo (0, 8)
    |            unused             |         Next-Hop MTU          |  destination unreachable (3)
    |                     rest of header (raw)                      |  any other type
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Data: echo data, or the quoted datagram (IP header + 8 or more bytes) of an error
    +-+-+-+-+-

One ``Repr`` covers every type; the fields that do not apply to a type are 0. The payload is the
echo data or an error's quoted datagram (``dissect`` decodes the latter). The checksum covers the
whole message and is verified on parse.
"""

import struct
from typing import NamedTuple

from netvirt.wire import checksum
from netvirt.wire.errors import BadChecksum, truncated
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "icmpv4"
HEADER_LENGTH = 8

ECHO_REPLY = 0
DESTINATION_UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
ERROR_TYPES = frozenset((DESTINATION_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAMETER_PROBLEM))
ECHO_TYPES = frozenset((ECHO_REPLY, ECHO_REQUEST))
TYPE_NAMES = {ECHO_REPLY: "echo reply", DESTINATION_UNREACHABLE: "destination unreachable",
              SOURCE_QUENCH: "source quench", REDIRECT: "redirect", ECHO_REQUEST: "echo request",
              TIME_EXCEEDED: "time exceeded", PARAMETER_PROBLEM: "parameter problem"}

# codes of destination unreachable (RFC 792, RFC 1191)
NETWORK_UNREACHABLE = 0
HOST_UNREACHABLE = 1
PROTOCOL_UNREACHABLE = 2
PORT_UNREACHABLE = 3
FRAGMENTATION_NEEDED = 4
# codes of time exceeded
TTL_EXCEEDED_IN_TRANSIT = 0
FRAGMENT_REASSEMBLY_TIME_EXCEEDED = 1

_HEADER = struct.Struct("!BBHHH")
_WORD = struct.Struct("!H")
_new = tuple.__new__


class Repr(NamedTuple):
    """An ICMP message header: echo ``identifier``/``sequence_number``, destination unreachable
    ``next_hop_mtu``, or ``rest_of_header`` (32 bits) for every other type."""

    type: int
    code: int = 0
    identifier: int = 0
    sequence_number: int = 0
    next_hop_mtu: int = 0
    rest_of_header: int = 0

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The message in ``buf`` (the whole message: the checksum covers it); raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and the data after it (echo data or quoted datagram), zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    @property
    def is_error(self) -> bool:
        """True for error messages, whose payload quotes the offending datagram."""
        return self.type in ERROR_TYPES

    def _rest_words(self) -> tuple[int, int]:
        if self.type in ECHO_TYPES:
            return self.identifier, self.sequence_number
        if self.type == DESTINATION_UNREACHABLE:
            return 0, self.next_hop_mtu
        return self.rest_of_header >> 16, self.rest_of_header & 0xFFFF

    def emit(self, payload=b"") -> bytes:
        """Header + payload with the checksum filled in."""
        try:
            header = _HEADER.pack(self.type, self.code, 0, *self._rest_words())
        except struct.error as error:
            raise ValueError(f"icmpv4: cannot emit {self}: {error}") from None
        value = checksum.finish(checksum.partial(header) + checksum.partial(payload))
        return b"".join((header[:2], _WORD.pack(value), header[4:], payload))

    def to_dict(self) -> dict:
        fields = {"layer": LAYER, "type": self.type, "code": self.code}
        if self.type in ECHO_TYPES:
            fields.update(identifier=self.identifier, sequence_number=self.sequence_number)
        elif self.type == DESTINATION_UNREACHABLE:
            fields.update(next_hop_mtu=self.next_hop_mtu)
        else:
            fields.update(rest_of_header=self.rest_of_header)
        return fields


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the message in ``data[start:end]``: ``(Repr, data_start, data_end, next)``.

    ``next`` selects the decoder of the payload: the message type (errors quote a datagram).

    ``quoted``: the message is itself quoted (cut short), so the checksum is not checked.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    type_, code, value, high, low = _HEADER.unpack_from(data, start)
    if not quoted and not checksum.verifies(data[start:end]):
        message = bytes(data[start:end])
        expected = checksum.compute(message[:2] + b"\0\0" + message[4:])
        raise BadChecksum(LAYER, start + 2, f"checksum is {value:#06x}, expected {expected:#06x}")
    if type_ in ECHO_TYPES:
        layer = _new(Repr, (type_, code, high, low, 0, 0))
    elif type_ == DESTINATION_UNREACHABLE:
        layer = _new(Repr, (type_, code, 0, 0, low, 0))
    else:
        layer = _new(Repr, (type_, code, 0, 0, 0, high << 16 | low))
    return layer, start + HEADER_LENGTH, end, type_


class View(HeaderView):
    """Zero-copy access to an ICMP header in a buffer; writing the echo ``identifier`` (ICMP
    query NAT) updates the checksum incrementally (RFC 1624)."""

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
    def next_hop_mtu(self) -> int:
        return self.buffer[6] << 8 | self.buffer[7]

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH:]
