"""ARP for IPv4 over Ethernet (RFC 826).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Hardware type (1)         |     Protocol type (0x0800)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  HLEN (6)     |  PLEN (4)     |          Operation            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Sender hardware address (6 bytes)                |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               | Sender protocol address (4)   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |              Target hardware address (6 bytes)                |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              Target protocol address (4 bytes)                |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Other hardware or protocol types are ``Malformed`` (netvirt only speaks Ethernet/IPv4 ARP).
"""

import struct
from typing import NamedTuple

from netvirt.wire.addresses import ip_to_text, mac_to_text
from netvirt.wire.errors import Malformed, truncated
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "arp"
HEADER_LENGTH = 28
REQUEST = 1
REPLY = 2

_HEADER = struct.Struct("!HHBBH6s4s6s4s")
_PREFIX = b"\x00\x01\x08\x00\x06\x04"  # Ethernet, IPv4, HLEN 6, PLEN 4
_new = tuple.__new__


class Repr(NamedTuple):
    """An Ethernet/IPv4 ARP packet."""

    operation: int
    sender_hardware_address: bytes
    sender_protocol_address: bytes
    target_hardware_address: bytes
    target_protocol_address: bytes

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The packet at the start of ``buf``; raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The packet and the bytes after it (Ethernet padding), zero-copy."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"") -> bytes:
        """Packet bytes (+ ``payload``, e.g. padding)."""
        for name in ("sender_hardware_address", "target_hardware_address"):
            if len(getattr(self, name)) != 6:
                raise ValueError(f"arp: {name} must be 6 bytes, got {getattr(self, name)!r}")
        for name in ("sender_protocol_address", "target_protocol_address"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"arp: {name} must be 4 bytes, got {getattr(self, name)!r}")
        try:
            header = _HEADER.pack(1, 0x0800, 6, 4, *self)
        except struct.error as error:
            raise ValueError(f"arp: cannot emit {self}: {error}") from None
        return header + payload

    def to_dict(self) -> dict:
        return {"layer": LAYER, "operation": self.operation,
                "sender_hardware_address": mac_to_text(self.sender_hardware_address),
                "sender_protocol_address": ip_to_text(self.sender_protocol_address),
                "target_hardware_address": mac_to_text(self.target_hardware_address),
                "target_protocol_address": ip_to_text(self.target_protocol_address)}


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the packet in ``data[start:end]``: ``(Repr, rest_start, rest_end, next)``.

    ``next`` is None: nothing is decoded after this header.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    if data[start:start + 6] != _PREFIX:
        hardware, protocol, hlen, plen = struct.unpack_from("!HHBB", data, start)
        raise Malformed(LAYER, start, f"only Ethernet/IPv4 ARP is supported (hardware type 1, protocol "
                        f"0x0800, lengths 6/4), got {hardware}, {protocol:#06x}, {hlen}/{plen}")
    fields = _HEADER.unpack_from(data, start)
    return _new(Repr, fields[4:]), start + HEADER_LENGTH, end, None


class View(HeaderView):
    """Zero-copy access to an ARP packet in a buffer."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def operation(self) -> int:
        return self.buffer[6] << 8 | self.buffer[7]

    @property
    def sender_hardware_address(self) -> bytes:
        return bytes(self.buffer[8:14])

    @property
    def sender_protocol_address(self) -> bytes:
        return bytes(self.buffer[14:18])

    @property
    def target_hardware_address(self) -> bytes:
        return bytes(self.buffer[18:24])

    @property
    def target_protocol_address(self) -> bytes:
        return bytes(self.buffer[24:28])
