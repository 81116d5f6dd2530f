"""Ethernet II frames (RFC 894 framing, IEEE 802.3) with IEEE 802.1Q / 802.1ad VLAN tags.

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination MAC address                    |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               |                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                      Source MAC address                       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  TPID 0x8100 (802.1Q tag)     | PCP |D|         VLAN ID       |  zero or more tags
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           EtherType           |  payload ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

An EtherType below 0x0600 is an IEEE 802.3 length: the frame decodes, its payload is left alone.
Frames are emitted without padding or FCS (as captures show them).
"""

import struct
from typing import NamedTuple

from netvirt.wire.errors import truncated
from netvirt.wire.header import other_header, same_header
from netvirt.wire.view import HeaderView

LAYER = "ethernet"
HEADER_LENGTH = 14

IPV4 = 0x0800
ARP = 0x0806
VLAN = 0x8100  # IEEE 802.1Q customer tag
IPV6 = 0x86DD
SERVICE_VLAN = 0x88A8  # IEEE 802.1ad (Q-in-Q) service tag
TRANSPARENT_ETHERNET_BRIDGING = 0x6558  # Ethernet inside GRE/Geneve (not seen on a wire)
TAG_PROTOCOLS = frozenset((VLAN, SERVICE_VLAN, 0x9100))
# The EtherTypes as an untagged frame's bytes 12-13 read them (``frame[12:14] == IPV4_BYTES``).
IPV4_BYTES, IPV6_BYTES, ARP_BYTES = (ethertype.to_bytes(2, "big") for ethertype in (IPV4, IPV6, ARP))

_HEADER = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")  # tag control information, next EtherType
_new = tuple.__new__


class Tag(NamedTuple):
    """One 802.1Q tag: VLAN ID (12 bits), priority code point (3), drop eligible indicator (1)."""

    vlan_id: int
    priority: int = 0
    drop_eligible: bool = False
    tpid: int = VLAN

    def to_dict(self) -> dict:
        return {"vlan_id": self.vlan_id, "priority": self.priority,
                "drop_eligible": self.drop_eligible, "tpid": self.tpid}


class Repr(NamedTuple):
    """An Ethernet II header; ``vlans`` lists the tags outer-first; ``ethertype`` is the inner one."""

    src: bytes
    dst: bytes
    ethertype: int
    vlans: tuple[Tag, ...] = ()

    layer = LAYER
    __eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__  # equal only to its own kind (wire.header)

    @classmethod
    def parse(cls, buf) -> "Repr":
        """The header at the start of ``buf``; raises ``ParseError``."""
        return decode_at(bytes(buf), 0, len(buf))[0]

    @classmethod
    def decode(cls, buf) -> tuple["Repr", memoryview]:
        """The header and the payload after it (zero-copy)."""
        layer, start, end, _ = decode_at(bytes(buf), 0, len(buf))
        return layer, memoryview(buf)[start:end]

    def emit(self, payload=b"") -> bytes:
        """Header + payload bytes."""
        if len(self.src) != 6 or len(self.dst) != 6:
            raise ValueError(f"ethernet: MAC addresses are 6 bytes, got src {self.src!r}, dst {self.dst!r}")
        if not 0 <= self.ethertype <= 0xFFFF:
            raise ValueError(f"ethernet: ethertype {self.ethertype} does not fit 16 bits")
        tags = b"".join(_emit_tag(tag) for tag in self.vlans)
        return b"".join((self.dst, self.src, tags, self.ethertype.to_bytes(2, "big"), payload))

    def to_dict(self) -> dict:
        return {"layer": LAYER, "src": self.src.hex(":"), "dst": self.dst.hex(":"),
                "ethertype": self.ethertype, "vlans": [tag.to_dict() for tag in self.vlans]}


def _emit_tag(tag: Tag) -> bytes:
    if not (0 <= tag.vlan_id < 4096 and 0 <= tag.priority < 8 and 0 <= tag.tpid <= 0xFFFF):
        raise ValueError(f"ethernet: tag {tag} out of range (vlan_id < 4096, priority < 8)")
    control = tag.priority << 13 | bool(tag.drop_eligible) << 12 | tag.vlan_id
    return _TAG.pack(tag.tpid, control)


def decode_at(data, start: int, end: int, quoted: bool = False) -> tuple[Repr, int, int, int | None]:
    """Decode the header in ``data[start:end]``: ``(Repr, payload_start, payload_end, next)``.

    ``next`` selects the decoder of the payload: the (inner) EtherType.

    Offsets (also in errors) are absolute in ``data``. ``quoted`` is accepted for a uniform
    signature; Ethernet has no length or checksum to relax.
    """
    if end - start < HEADER_LENGTH:
        raise truncated(LAYER, start, end, HEADER_LENGTH)
    dst, src, ethertype = _HEADER.unpack_from(data, start)
    if ethertype in TAG_PROTOCOLS:
        return _decode_tagged(data, start, end, src, dst, ethertype)
    return _new(Repr, (src, dst, ethertype, ())), start + HEADER_LENGTH, end, ethertype


def _decode_tagged(data, start, end, src, dst, tpid):
    tags = []
    offset = start + 12
    while tpid in TAG_PROTOCOLS:
        if end - offset < 6:  # the tag and the EtherType after it
            raise truncated(LAYER, offset, end, 6)
        tpid_here = tpid
        control, tpid = _TAG.unpack_from(data, offset + 2)
        tags.append(Tag(control & 0x0FFF, control >> 13, bool(control & 0x1000), tpid_here))
        offset += 4
    return _new(Repr, (src, dst, tpid, tuple(tags))), offset + 2, end, tpid


class View(HeaderView):
    """Zero-copy access to an Ethernet header (without tags) in a buffer; writes go in place."""

    __slots__ = ()
    layer = LAYER
    minimum_length = HEADER_LENGTH

    @property
    def dst(self) -> bytes:
        return bytes(self.buffer[0:6])

    @dst.setter
    def dst(self, value: bytes) -> None:
        self.buffer[0:6] = value

    @property
    def src(self) -> bytes:
        return bytes(self.buffer[6:12])

    @src.setter
    def src(self, value: bytes) -> None:
        self.buffer[6:12] = value

    @property
    def ethertype(self) -> int:
        """The first EtherType/TPID field (0x8100 when the frame is tagged)."""
        return self.buffer[12] << 8 | self.buffer[13]

    @property
    def payload(self) -> memoryview:
        return self.buffer[HEADER_LENGTH:]
