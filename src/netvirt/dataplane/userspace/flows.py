"""The flow cache: an exact match on the parsed key of a frame -> the precompiled action list.

Contract: ``fast_key(memory, start)`` reads the key of an IPv4 frame in one ``struct`` call
(Ethernet addresses and type, IHL, total length, fragment field, TTL, protocol, addresses and the
first L4 word — the ports); it is only *complete* for unfragmented IPv4 TCP/UDP without options,
and ``keyable`` says whether a frame is such. Every other frame is looked up by ``full_key``
(the frame's bytes minus what changes per packet: IP identification, checksums, ICMP sequence
and payload). A key that is incomplete for its frame can never match an entry, because entries
under fast keys are only made for keyable frames, whose key fields differ from any other kind's.

``compile_output(frame, port, output)`` turns one (input frame, output frame) pair the slow path
computed into an ``Output``: a transmit-ring prefix with the outer headers (``template``), how
many leading bytes of the input to strip (decapsulation) and a ``Patch`` of the bytes that
change (MAC rewrite, TTL, NAT) with their checksums adjusted by constant one's-complement deltas
(RFC 1624) — and checks that applying it to ``frame`` gives ``output`` exactly (else None: that
flow is never cached and always takes the slow path). An action is a tuple of outputs (several
for a flood). The sizes in ``Output`` make a frame of another length than the compiled one miss.
"""

import struct
from dataclasses import dataclass

from netvirt.dataplane.userspace.rings import TX_DATA, tx_prefix
from netvirt.wire import geneve, nvgre, vxlan
from netvirt.wire.checksum import finish, partial, pseudo_header, update
from netvirt.wire.ethernet import IPV4_BYTES, IPV6_BYTES
from netvirt.wire.ipv4 import GRE, ICMP, ICMPV6, TCP, UDP

FAST_KEY = struct.Struct("!12sHBxH2xHBB2x8sI")
FAST_KEY_LENGTH = FAST_KEY.size  # 38: Ethernet 14 + IPv4 20 + 4
_L4_CHECKSUM = {TCP: 16, UDP: 6, ICMP: 2, ICMPV6: 2}
_MORE_FRAGMENTS_OR_OFFSET = 0x3FFF


def keyable(frame: bytes) -> bool:
    """Whether ``fast_key`` is complete for ``frame``: unfragmented IPv4 TCP/UDP, IHL 5, no
    padding, and not a tunnel packet (its key must include the tunnel header and inner frame)."""
    if len(frame) < FAST_KEY_LENGTH or frame[12:14] != IPV4_BYTES or frame[14] != 0x45:
        return False
    total = int.from_bytes(frame[16:18], "big")
    fragment = int.from_bytes(frame[20:22], "big")
    return (frame[23] in (TCP, UDP) and not fragment & _MORE_FRAGMENTS_OR_OFFSET and total + 14 == len(frame)
            and tunnel_inner(frame) is None)


def tunnel_inner(frame: bytes) -> int | None:
    """Where the inner Ethernet frame starts in an IPv4 VXLAN, Geneve or NVGRE packet, else None."""
    if len(frame) < 34 or frame[12:14] != IPV4_BYTES:
        return None
    l4 = 14 + (frame[14] & 0x0F) * 4
    protocol = frame[23]
    if protocol == UDP and len(frame) >= l4 + 16:
        port = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
        if port == vxlan.PORT:
            return l4 + 16
        if port == geneve.PORT:
            return l4 + 16 + (frame[l4 + 8] & 0x3F) * 4
    if protocol == GRE and frame[l4:l4 + 4] == nvgre.FIRST_WORD:
        return l4 + 8
    return None


def key_of(frame: bytes):
    """The flow-cache key of ``frame``: ``fast_key`` where it is complete, a tunnel packet's
    outer headers (masked like ``full_key``) with the key of its inner frame, else ``full_key``."""
    if keyable(frame):
        return fast_key(frame)
    inner = tunnel_inner(frame)
    if inner is None or inner > len(frame):
        return full_key(frame)
    outer = bytearray(frame[:inner])
    outer[18:20] = b"\0\0"
    outer[24:26] = b"\0\0"
    if frame[23] == UDP:
        l4 = 14 + (frame[14] & 0x0F) * 4
        outer[l4 + 6:l4 + 8] = b"\0\0"
    return (len(frame), bytes(outer), key_of(frame[inner:]))


def fast_key(frame: bytes) -> tuple:
    return FAST_KEY.unpack_from(frame, 0)


def full_key(frame: bytes) -> bytes:
    """The key of a frame ``fast_key`` is incomplete for: its bytes with the fields that change
    per packet zeroed (IPv4 identification and header checksum) or cut (TCP/UDP after the
    ports, ICMP echo's checksum, sequence and payload), prefixed by its length."""
    data = bytearray(frame)
    kind = frame[12:14]
    if kind == IPV4_BYTES and len(frame) >= 34:
        data[18:20] = b"\0\0"
        data[24:26] = b"\0\0"
        l4 = 14 + (frame[14] & 0x0F) * 4
        _mask_l4(data, frame[23], l4)
    elif kind == IPV6_BYTES and len(frame) >= 54:
        _mask_l4(data, frame[20], 54)
    return len(frame).to_bytes(2, "big") + bytes(data)


def _mask_l4(data: bytearray, protocol: int, l4: int) -> None:
    if protocol in (TCP, UDP) and len(data) >= l4 + 4:
        del data[l4 + 4:]  # the ports decide; sequence numbers, checksum and payload change
    elif protocol in (ICMP, ICMPV6) and len(data) > l4 + 6 and data[l4] in (0, 8, 128, 129):
        del data[l4 + 2:l4 + 4]
        del data[l4 + 4:]  # echo: keep type, code and identifier; checksum, sequence and payload change


@dataclass(frozen=True, slots=True)
class Patch:
    """Constant byte runs to write into the body, then checksum fields to adjust by a delta."""

    runs: tuple[tuple[int, bytes], ...]
    sums: tuple[tuple[int, bytes, bytes, bool], ...]  # (offset, covered before, after, UDP's optional sum)

    def apply(self, body: bytes) -> bytes:
        data = bytearray(body)
        for offset, value in self.runs:
            data[offset:offset + len(value)] = value
        for offset, before, after, optional in self.sums:
            current = int.from_bytes(data[offset:offset + 2], "big")
            if optional and not current:
                continue  # UDP over IPv4 without a checksum stays without one (RFC 768)
            value = update(current, before, after)
            data[offset:offset + 2] = (value or (0xFFFF if optional else 0)).to_bytes(2, "big")
        return bytes(data)


@dataclass(frozen=True, slots=True)
class Checksum:
    """The outer UDP checksum of an encapsulation (it covers the inner frame, so it is computed
    per packet): the prefix is ``head + checksum + tail``; ``base`` is the unfolded sum of the
    pseudo-header and the outer bytes after the UDP header's start (checksum field zero)."""

    head: bytes
    tail: bytes
    base: int

    def around(self, body: bytes) -> bytes:
        value = finish(self.base + partial(body)) or 0xFFFF
        return self.head + value.to_bytes(2, "big") + self.tail + body


@dataclass(frozen=True, slots=True)
class Output:
    """Send ``prefix + patch(frame[strip:])`` (prefix: transmit header + outer headers; with
    ``checksum``: ``checksum.around(...)`` instead) on ring ``port``; ``size`` is the input
    frame's length this was compiled for."""

    port: int
    prefix: bytes
    strip: int
    patch: Patch | None
    size: int
    checksum: Checksum | None = None


def compile_output(frame: bytes, port: int, output: bytes) -> Output | None:
    """See the module docstring."""
    if len(output) >= len(frame):
        strip, template = 0, output[:len(output) - len(frame)]
        body_in, body_out = frame, output[len(template):]
    else:
        strip, template = len(frame) - len(output), b""
        body_in, body_out = frame[strip:], output
    patch = _patch(body_in, body_out) if body_in != body_out else None
    prefix = tx_prefix(len(output)) + template
    compiled = Output(port, prefix, strip, patch, len(frame), _outer_checksum(prefix, template))
    if run_output(compiled, frame)[TX_DATA:] != output:
        return None
    return compiled


def _outer_checksum(prefix: bytes, template: bytes) -> Checksum | None:
    """The per-packet outer UDP checksum of an IPv4/UDP tunnel template, if it has one (zero:
    the tunnel sends none, RFC 7348 §5 / RFC 8926 §3.4)."""
    if len(template) < 42 or template[12:14] != IPV4_BYTES or template[23] != UDP:
        return None
    udp = 14 + (template[14] & 0x0F) * 4
    if template[udp + 6:udp + 8] == b"\0\0":
        return None
    at = TX_DATA + udp + 6
    length = int.from_bytes(template[udp + 4:udp + 6], "big")
    base = pseudo_header(template[26:30], template[30:34], UDP, length)
    base += partial(template[udp:udp + 6]) + partial(template[udp + 8:])
    return Checksum(prefix[:at], prefix[at + 2:], base)


def run_output(out: Output, frame: bytes) -> bytes:
    """What ``out`` puts in the transmit ring for ``frame`` (the reference of the hot loop)."""
    body = frame[out.strip:]
    if out.patch is not None:
        body = out.patch.apply(body)
    return out.checksum.around(body) if out.checksum is not None else out.prefix + body


def _patch(before: bytes, after: bytes) -> Patch:
    """The runs of bytes that differ and the checksum fields that cover them (RFC 1624 deltas)."""
    sums = _checksum_fields(before)
    skip = {offset + i for offset in sums for i in (0, 1)}
    runs: list[tuple[int, bytes]] = []
    start = None
    for i in range(len(before) + 1):
        differs = i < len(before) and i not in skip and before[i] != after[i]
        if differs and start is None:
            start = i
        elif not differs and start is not None:
            runs.append((start, after[start:i]))
            start = None
    deltas = []
    for offset, covered in sums.items():
        old = b"".join(before[a:b] for a, b in covered)
        new = b"".join(after[a:b] for a, b in covered)
        if old != new:
            deltas.append((offset, old, new, offset != 24 and before[23] == UDP))
    return Patch(tuple(runs), tuple(deltas))


def _checksum_fields(frame: bytes) -> dict[int, list[tuple[int, int]]]:
    """Checksum offset -> the (even-aligned) byte ranges it covers that a rewrite may change."""
    if len(frame) < 34 or frame[12:14] != IPV4_BYTES:
        return {}
    l4 = 14 + (frame[14] & 0x0F) * 4
    fields = {24: [(14, 24), (26, l4)]}  # the IPv4 header checksum covers the header but itself
    where = _L4_CHECKSUM.get(frame[23])
    if where is not None and len(frame) >= l4 + where + 2 and frame[23] != ICMP:
        # TCP/UDP: the pseudo-header addresses and the ports (never the checksum itself)
        fields[l4 + where] = [(26, 34), (l4, l4 + 4)]
    return fields


class FlowCache:
    """Exact-match entries per input port, at most ``capacity`` per port (full: start empty
    again, the simplest replacement that keeps lookups one dict access)."""

    def __init__(self, ports: int, capacity: int = 65536) -> None:
        self.tables: list[dict] = [{} for _ in range(ports)]
        self.capacity = capacity
        self.hits = 0
        self.misses = 0

    def insert(self, port: int, key, action: tuple) -> None:
        table = self.tables[port]
        if len(table) >= self.capacity:
            table.clear()
        table[key] = action

    def clear(self) -> None:
        for table in self.tables:
            table.clear()
