"""Capture files: read classic pcap and pcapng, write classic pcap.

Formats: draft-ietf-opsawg-pcap (classic libpcap) and draft-ietf-opsawg-pcapng (next generation).

Classic pcap: a 24-byte file header, then one 16-byte record header before each frame::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +---------------------------------------------------------------+
    |    Magic Number (a1b2c3d4 = microseconds, a1b23c4d = ns)      |
    +-------------------------------+-------------------------------+
    |     Major Version (2)         |     Minor Version (4)         |
    +-------------------------------+-------------------------------+
    |                    Reserved1 (thiszone)                       |
    |                    Reserved2 (sigfigs)                        |
    |                         SnapLen                               |
    |            FCS / reserved bits    |        LinkType           |
    +---------------------------------------------------------------+
    record: Timestamp (seconds), Timestamp (us or ns), Captured Length, Original Length, data

The magic number's byte order is the file's byte order.

pcapng: a sequence of blocks, each ``Block Type | Block Total Length | Body | Block Total Length``
(32-bit words, body padded to 32 bits). A Section Header Block (SHB, type 0x0A0D0D0A, byte-order
magic 0x1A2B3C4D) opens each section and fixes its byte order; Interface Description Blocks (IDB)
declare the link type and timestamp resolution (``if_tsresol``, ``if_tsoffset``) of interfaces
0, 1, ...; Enhanced (EPB), Simple (SPB) and the obsolete Packet Block carry frames. Other blocks
(name resolution, statistics, custom, ...) are skipped.

Contract: ``read`` yields ``Frame``s in file order; a malformed file raises ``PcapError`` naming
the file, the byte offset and the problem. ``Writer`` writes classic pcap that libpcap, tcpdump
and Wireshark read. Standard library only.
"""

import datetime
import os
import struct
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

LINKTYPE_ETHERNET = 1

PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
PCAPNG_SECTION_HEADER = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D

BLOCK_INTERFACE_DESCRIPTION = 0x00000001
BLOCK_PACKET = 0x00000002  # obsolete, still written by old tools
BLOCK_SIMPLE_PACKET = 0x00000003
BLOCK_ENHANCED_PACKET = 0x00000006

OPTION_END = 0
OPTION_IF_TSRESOL = 9
OPTION_IF_TSOFFSET = 14

_SHB_TYPE = struct.pack("<I", PCAPNG_SECTION_HEADER)  # a palindrome: the same in both orders
_PACKET_BLOCKS = (BLOCK_ENHANCED_PACKET, BLOCK_SIMPLE_PACKET, BLOCK_PACKET)
_PCAP_FILE_HEADER_SIZE = 24
_NANOSECONDS_PER_SECOND = 1_000_000_000
_READ_CHUNK = 1 << 20
_DEFAULT_TSRESOL = 6  # pcapng: microseconds unless if_tsresol says otherwise
MAX_SNAPLEN = 262144
"""libpcap's largest snap length (MAXIMUM_SNAPLEN): a frame may declare more captured bytes only
when the file's snap length allows them, as libpcap reads it."""
MAX_BLOCK = 16 * 1024 * 1024
"""libpcap's largest pcapng block (INITIAL_MAX_BLOCKSIZE), unless an interface's snap length
needs more."""

PathOrFile = str | os.PathLike[str] | BinaryIO


class PcapError(Exception):
    """A capture file is malformed: ``path``, byte ``offset`` and ``reason`` say where and why."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class Frame(NamedTuple):
    """One captured frame.

    ``index`` counts frames from 1 in file order (Wireshark's frame number). ``timestamp_ns`` is
    nanoseconds since the Unix epoch, or None for pcapng Simple Packet Blocks, which carry none.
    ``data`` holds the captured bytes (possibly cut at the snap length). ``interface`` is 0 in
    classic pcap; in pcapng it numbers the Interface Description Blocks across the whole file,
    from 0, in the order they appear (so interfaces of later sections keep distinct numbers).
    """

    index: int
    timestamp_ns: int | None
    data: bytes
    linktype: int
    interface: int


def format_timestamp(timestamp_ns: int | None) -> str:
    """``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` in UTC, for any timestamp a file can hold: one outside
    the years 1-9999 (a corrupt high word, a huge negative if_tsoffset) reads ``N s from 1970``;
    a dash for frames without a time (pcapng SPB). The one formatter of capture times."""
    if timestamp_ns is None:
        return "-".ljust(29)
    seconds, nanoseconds = divmod(timestamp_ns, _NANOSECONDS_PER_SECOND)
    try:
        clock = (_EPOCH + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")
    except OverflowError:
        return f"{seconds:+d} s from 1970 (out of range).{nanoseconds:09d}"
    return f"{clock.rjust(19, '0')}.{nanoseconds:09d}"


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def read(source: PathOrFile) -> Iterator[Frame]:
    """Yield the frames of a classic pcap or pcapng file (a path or a binary file object).

    Raises ``PcapError`` while iterating when the file is malformed, and ``OSError`` when it
    cannot be read. A file object passed in is left open.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as file:
            yield from _frames(_Source(file, os.fspath(source)))
    else:
        yield from _frames(_Source(source, getattr(source, "name", "<stream>")))


class Writer:
    """Write a classic pcap file, in microsecond (default) or nanosecond resolution.

    ``Writer(path)`` creates or truncates the file and writes the file header at once; use it as
    a context manager or call ``close``. Frames longer than ``snaplen`` are cut to it, keeping
    their original length in the record header.
    """

    def __init__(
        self,
        destination: PathOrFile,
        nanosecond: bool = False,
        linktype: int = LINKTYPE_ETHERNET,
        snaplen: int = 262144,
    ) -> None:
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"linktype must be 0..65535, not {linktype}")
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen must be 1..4294967295, not {snaplen}")
        self.nanosecond = nanosecond
        self.linktype = linktype
        self.snaplen = snaplen
        self._owned = isinstance(destination, (str, os.PathLike))
        self._file: BinaryIO = (
            open(destination, "wb") if self._owned else destination  # type: ignore[arg-type]
        )
        magic = PCAP_MAGIC_NANOSECONDS if nanosecond else PCAP_MAGIC_MICROSECONDS
        self._file.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, data: bytes, timestamp_ns: int | None = None) -> None:
        """Append one frame; ``timestamp_ns`` (Unix epoch) defaults to now."""
        if timestamp_ns is None:
            timestamp_ns = time.time_ns()
        seconds, fraction = divmod(timestamp_ns, _NANOSECONDS_PER_SECOND)
        if not 0 <= seconds <= 0xFFFFFFFF:
            raise ValueError(f"timestamp_ns {timestamp_ns} is outside the pcap range (1970..2106)")
        if not self.nanosecond:
            fraction //= 1000
        captured = bytes(data[: self.snaplen])
        self._file.write(struct.pack("<IIII", seconds, fraction, len(captured), len(data)))
        self._file.write(captured)

    def close(self) -> None:
        """Flush, and close the file if this writer opened it."""
        if self._owned:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write(
    destination: PathOrFile,
    frames: Iterable[bytes | Frame],
    *,
    nanosecond: bool = False,
    linktype: int = LINKTYPE_ETHERNET,
) -> None:
    """Write ``frames`` (raw bytes, stamped now, or ``Frame``s, keeping their time) to a pcap file.

    Raises ``ValueError`` for a ``Frame`` of another link type: a classic pcap file has one.
    """
    with Writer(destination, nanosecond=nanosecond, linktype=linktype) as writer:
        for frame in frames:
            if isinstance(frame, Frame):
                if frame.linktype != linktype:
                    raise ValueError(
                        f"frame {frame.index} has linktype {frame.linktype}, the file {linktype}"
                    )
                writer.write(frame.data, frame.timestamp_ns)
            else:
                writer.write(frame)


class _Source:
    """A file being read front to back (pipes too: no seeking), with the offset errors name."""

    def __init__(self, file: BinaryIO, path: str) -> None:
        self.file = file
        self.path = path
        self.offset = 0
        self._pending = b""

    def peek(self, size: int) -> bytes:
        """Up to ``size`` bytes ahead, without consuming them."""
        if len(self._pending) < size:
            self._pending += self._read(size - len(self._pending))
        return self._pending[:size]

    def take(self, size: int, what: str, may_end: bool = False) -> bytes:
        """Exactly ``size`` bytes, or ``PcapError`` (truncated) naming ``what`` was being read;
        with ``may_end``, ``b""`` when the file ends cleanly right here."""
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            if len(data) < size:
                data += self._read(size - len(data))
        else:
            data = self._read(size)
        if len(data) != size:
            if may_end and not data:
                return data
            raise self.error(
                self.offset, f"truncated {what}: needs {size} bytes, the file has {len(data)}"
            )
        self.offset += size
        return data

    def error(self, offset: int, reason: str) -> PcapError:
        return PcapError(self.path, offset, reason)

    def _read(self, size: int) -> bytes:
        data = self.file.read(min(size, _READ_CHUNK))
        if len(data) == size or not data:
            return data
        # A pipe's short read, or more than a chunk: go on chunk by chunk, so that a corrupt
        # 4 GiB length does not allocate 4 GiB before the file runs out.
        chunks = [data]
        size -= len(data)
        while size > 0:
            chunk = self.file.read(min(size, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _frames(source: _Source) -> Iterator[Frame]:
    magic = source.peek(4)
    if not magic:
        raise source.error(0, "empty file: not a pcap or pcapng capture")
    if magic == _SHB_TYPE:
        yield from _pcapng_frames(source)
        return
    for order in "<>":
        if len(magic) == 4 and struct.unpack(order + "I", magic)[0] in (
            PCAP_MAGIC_MICROSECONDS,
            PCAP_MAGIC_NANOSECONDS,
        ):
            yield from _pcap_frames(source, order)
            return
    raise source.error(
        0,
        f"not a pcap or pcapng file: magic {magic.hex()} is none of a1b2c3d4 / a1b23c4d "
        "(pcap, either byte order) or 0a0d0d0a (pcapng)",
    )


def _pcap_frames(source: _Source, order: str) -> Iterator[Frame]:
    header = source.take(_PCAP_FILE_HEADER_SIZE, "pcap file header")
    magic, major, minor, _, _, _, linktype_and_fcs = struct.unpack(order + "IHHiIII", header)
    if major != 2:
        raise source.error(4, f"unsupported pcap version {major}.{minor} (expected 2.4)")
    linktype = linktype_and_fcs & 0xFFFF  # the upper bits describe the FCS, not the link
    snaplen = struct.unpack_from(order + "I", header, 16)[0]
    fraction_ns = 1 if magic == PCAP_MAGIC_NANOSECONDS else 1000
    record = struct.Struct(order + "IIII")
    index = 0
    while header := source.take(record.size, "pcap record header", may_end=True):
        seconds, fraction, captured, _ = record.unpack(header)
        index += 1
        _check_captured(source, source.offset - 8, f"frame {index}", captured, snaplen)
        data = source.take(captured, f"frame {index} ({captured} captured bytes)")
        timestamp = seconds * _NANOSECONDS_PER_SECOND + fraction * fraction_ns
        yield Frame(index, timestamp, data, linktype, 0)


class _Interface(NamedTuple):
    number: int  # across the file
    linktype: int
    snaplen: int
    tsresol: int
    tsoffset_seconds: int

    def nanoseconds(self, high: int, low: int) -> int:
        """A pcapng timestamp (two 32-bit halves, in if_tsresol units) as Unix nanoseconds."""
        ticks = (high << 32) | low
        if self.tsresol & 0x80:  # 2^-n seconds per tick
            ns = (ticks * _NANOSECONDS_PER_SECOND) >> (self.tsresol & 0x7F)
        elif self.tsresol <= 9:
            ns = ticks * 10 ** (9 - self.tsresol)
        else:
            ns = ticks // 10 ** (self.tsresol - 9)
        return ns + self.tsoffset_seconds * _NANOSECONDS_PER_SECOND


def _check_captured(source: _Source, offset: int, what: str, captured: int, snaplen: int) -> None:
    """libpcap's rule: more captured bytes than MAX_SNAPLEN only within the snap length."""
    if captured > MAX_SNAPLEN and (captured > snaplen or not snaplen):
        raise source.error(
            offset,
            f"{what} declares {captured} captured bytes, more than the snap length ({snaplen}) "
            f"and than {MAX_SNAPLEN} (libpcap refuses it too)",
        )


def _pcapng_frames(source: _Source) -> Iterator[Frame]:
    order = "<"
    interfaces: list[_Interface] = []  # of the current section
    interface_count = 0  # across the file
    index = 0
    largest = 0  # snap length of all interfaces so far: a block may be that much over MAX_BLOCK
    while head := source.take(8, "pcapng block header", may_end=True):
        block = _next_block(source, head, order, MAX_BLOCK + min(largest, 0xFFFFFFFF))
        if block.type == PCAPNG_SECTION_HEADER:
            order = block.order
            interfaces = []
            continue
        if block.type == BLOCK_INTERFACE_DESCRIPTION:
            interfaces.append(_interface(source, block, interface_count))
            interface_count += 1
            largest = max(largest, interfaces[-1].snaplen)
            continue
        if block.type not in _PACKET_BLOCKS:
            continue  # name resolution, statistics, custom, ...: not frames
        interface_id, timestamp, data = _packet(source, block, interfaces)
        interface = interfaces[interface_id]
        index += 1
        yield Frame(index, timestamp, data, interface.linktype, interface.number)


class _Block(NamedTuple):
    type: int
    offset: int  # of the block in the file
    body: bytes  # between the leading and the trailing length
    order: str  # struct byte-order prefix of its section

    def unpack(self, source: _Source, layout: str, at: int, what: str) -> tuple:
        """Fields of ``layout`` at body offset ``at``, or ``PcapError`` if the body is too short."""
        layout = self.order + layout
        if at + struct.calcsize(layout) > len(self.body):
            raise source.error(
                self.offset + 8 + at,
                f"block type 0x{self.type:08x} is too short for its {what} "
                f"({len(self.body)} body bytes)",
            )
        return struct.unpack_from(layout, self.body, at)


def _next_block(source: _Source, head: bytes, order: str, largest: int) -> _Block:
    """Read the rest of the block ``head`` (its type and length) starts, at most ``largest``
    bytes; a Section Header Block sets the byte order from its magic."""
    start = source.offset - 8
    byte_order_magic = b""  # read with the head: a section's byte order decides its length
    if head[:4] == _SHB_TYPE:
        byte_order_magic = source.take(4, "section header byte-order magic")
        if byte_order_magic == struct.pack("<I", PCAPNG_BYTE_ORDER_MAGIC):
            order = "<"
        elif byte_order_magic == struct.pack(">I", PCAPNG_BYTE_ORDER_MAGIC):
            order = ">"
        else:
            raise source.error(
                start + 8,
                f"bad section header byte-order magic {byte_order_magic.hex()} "
                "(expected 1a2b3c4d in either byte order)",
            )
    block_type, length = struct.unpack(order + "II", head)
    minimum = 28 if block_type == PCAPNG_SECTION_HEADER else 12
    if length < minimum or length % 4:
        raise source.error(
            start + 4,
            f"block type 0x{block_type:08x} has total length {length}: "
            f"it must be a multiple of 4 and at least {minimum}",
        )
    if length > largest:
        raise source.error(
            start + 4,
            f"block type 0x{block_type:08x} has total length {length}: more than the {largest} "
            "bytes libpcap reads in one block",
        )
    what = f"block type 0x{block_type:08x} ({length} bytes)"
    rest = source.take(length - 8 - len(byte_order_magic), what)
    (trailer,) = struct.unpack(order + "I", rest[-4:])
    if trailer != length:
        raise source.error(
            start + length - 4,
            f"block length mismatch: block type 0x{block_type:08x} starts with length {length} "
            f"but ends with {trailer}",
        )
    body = byte_order_magic + rest[:-4]
    block = _Block(block_type, start, body, order)
    if block_type == PCAPNG_SECTION_HEADER:
        _, major, minor = block.unpack(source, "IHH", 0, "version")
        if major != 1:
            raise source.error(
                start + 12, f"unsupported pcapng version {major}.{minor} (expected 1.x)"
            )
    return block


def _interface(source: _Source, block: _Block, number: int) -> _Interface:
    linktype, _, snaplen = block.unpack(source, "HHI", 0, "interface description")
    tsresol, tsoffset = _DEFAULT_TSRESOL, 0
    for code, value in _options(source, block, 8):
        if code == OPTION_IF_TSRESOL and len(value) >= 1:
            tsresol = value[0]
        elif code == OPTION_IF_TSOFFSET and len(value) >= 8:
            (tsoffset,) = struct.unpack(block.order + "q", value[:8])
    return _Interface(number, linktype, snaplen, tsresol, tsoffset)


def _options(source: _Source, block: _Block, at: int) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each option from body offset ``at`` to opt_endofopt."""
    while at + 4 <= len(block.body):
        code, size = block.unpack(source, "HH", at, "option header")
        if code == OPTION_END:
            return
        if at + 4 + size > len(block.body):
            raise source.error(
                block.offset + 8 + at,
                f"block type 0x{block.type:08x}: option {code} of {size} bytes overruns the block",
            )
        yield code, block.body[at + 4 : at + 4 + size]
        at += 4 + (size + 3) // 4 * 4


def _packet(
    source: _Source, block: _Block, interfaces: list[_Interface]
) -> tuple[int, int | None, bytes]:
    """(interface id, Unix ns or None, captured bytes) of an EPB, SPB or obsolete Packet Block."""
    if block.type == BLOCK_SIMPLE_PACKET:
        interface_id, timestamp_ns = 0, None
        (original,) = block.unpack(source, "I", 0, "packet length")
        _check_interface(source, block, interface_id, interfaces)
        snaplen = interfaces[0].snaplen
        captured = min(original, snaplen) if snaplen else original
        at = 4
    else:
        if block.type == BLOCK_ENHANCED_PACKET:
            interface_id, high, low, captured, _ = block.unpack(source, "IIIII", 0, "packet header")
        else:
            interface_id, _, high, low, captured, _ = block.unpack(
                source, "HHIIII", 0, "packet header"
            )
        _check_interface(source, block, interface_id, interfaces)
        what = f"block type 0x{block.type:08x}"
        _check_captured(source, block.offset, what, captured, interfaces[interface_id].snaplen)
        timestamp_ns = interfaces[interface_id].nanoseconds(high, low)
        at = 20
    if at + captured > len(block.body):
        raise source.error(
            block.offset,
            f"block type 0x{block.type:08x}: captured length {captured} overruns the block "
            f"({len(block.body) - at} bytes of packet data)",
        )
    return interface_id, timestamp_ns, block.body[at : at + captured]


def _check_interface(
    source: _Source, block: _Block, interface_id: int, interfaces: list[_Interface]
) -> None:
    if interface_id >= len(interfaces):
        raise source.error(
            block.offset,
            f"block type 0x{block.type:08x} refers to interface {interface_id}, but the section "
            f"has {len(interfaces)} interface description block(s) before it",
        )
