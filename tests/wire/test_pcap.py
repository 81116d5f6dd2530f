"""netvirt.wire.pcap on hand-built files: classic pcap and pcapng, both byte orders, errors."""

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.wire import pcap
from netvirt.wire.pcap import Frame, PcapError

DATA = Path(__file__).parent / "data"

# Classic pcap, little-endian, microseconds, snaplen 65535, Ethernet; one record: 1700000000 s
# + 123456 us, 4 of 60 bytes captured.
PCAP_LE_MICROSECONDS = bytes.fromhex(
    "d4c3b2a1 0200 0400 00000000 00000000 ffff0000 01000000"
    "00f15365 40e20100 04000000 3c000000 deadbeef"
)
# Classic pcap, big-endian, nanoseconds, snaplen 262144, raw IPv4 (101); two 2-byte records.
PCAP_BE_NANOSECONDS = bytes.fromhex(
    "a1b23c4d 0002 0004 00000000 00000000 00040000 00000065"
    "6553f100 075bcd15 00000002 00000002 cafe"
    "6553f101 00000001 00000002 00000002 f00d"
)
# pcapng, little-endian: SHB; IDB (Ethernet, snaplen 1024, if_tsresol 9 = ns); EPB of 5 bytes
# at 1700000000.123456789 s (0x17979cfe3d85cd15 ns).
PCAPNG_LE = bytes.fromhex(
    "0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffffffffffff 1c000000"
    "01000000 20000000 0100 0000 00040000 0900 0100 09000000 0000 0000 20000000"
    "06000000 28000000 00000000 fe9c9717 15cd853d 05000000 05000000 0102030405000000 28000000"
)


def frames_of(content: bytes) -> list[Frame]:
    return list(pcap.read(io.BytesIO(content)))


def error_of(content: bytes) -> PcapError:
    with pytest.raises(PcapError) as caught:
        frames_of(content)
    return caught.value


# --- pcapng blocks, built field by field as draft-ietf-opsawg-pcapng lays them out -------------


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def block(order: str, block_type: int, body: bytes) -> bytes:
    body = padded(body)
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + padded(value)


def shb(order: str, major: int = 1) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, major, 0, -1))


def idb(order: str, linktype: int = 1, snaplen: int = 0, options: bytes = b"") -> bytes:
    if options:
        options += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def epb(order: str, interface: int, ticks: int, data: bytes, options: bytes = b"") -> bytes:
    high, low = ticks >> 32, ticks & 0xFFFFFFFF
    header = struct.pack(order + "IIIII", interface, high, low, len(data), len(data))
    return block(order, 6, header + padded(data) + options)


def spb(order: str, data: bytes, original: int | None = None) -> bytes:
    original = len(data) if original is None else original
    return block(order, 3, struct.pack(order + "I", original) + data)


# --- classic pcap ---------------------------------------------------------------------------


def test_classic_little_endian_microseconds():
    assert frames_of(PCAP_LE_MICROSECONDS) == [
        Frame(1, 1_700_000_000_123_456_000, bytes.fromhex("deadbeef"), 1, 0)
    ]


def test_classic_big_endian_nanoseconds():
    assert frames_of(PCAP_BE_NANOSECONDS) == [
        Frame(1, 1_700_000_000_123_456_789, b"\xca\xfe", 101, 0),
        Frame(2, 1_700_000_001_000_000_001, b"\xf0\x0d", 101, 0),
    ]


def test_classic_linktype_ignores_fcs_bits():
    # bits 26..31 of the link type field announce an FCS; the link type is the low 16 bits
    content = bytearray(PCAP_LE_MICROSECONDS)
    content[20:24] = struct.pack("<I", (1 << 26) | (4 << 28) | 1)
    assert frames_of(bytes(content))[0].linktype == 1


def test_reads_paths_and_unseekable_streams(tmp_path):
    path = tmp_path / "le.pcap"
    path.write_bytes(PCAP_LE_MICROSECONDS)

    class Pipe:  # read() only, like a pipe: the reader must never seek
        def __init__(self, content: bytes) -> None:
            self.stream = io.BytesIO(content)

        def read(self, size: int) -> bytes:
            return self.stream.read(min(size, 3))  # short reads, as pipes give

    assert list(pcap.read(path)) == list(pcap.read(str(path))) == frames_of(PCAP_LE_MICROSECONDS)
    assert list(pcap.read(Pipe(PCAPNG_LE))) == frames_of(PCAPNG_LE)


# --- pcapng ---------------------------------------------------------------------------------


def test_pcapng_little_endian_literal():
    assert frames_of(PCAPNG_LE) == [
        Frame(1, 1_700_000_000_123_456_789, b"\x01\x02\x03\x04\x05", 1, 0)
    ]


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_both_byte_orders_default_microseconds(order):
    content = shb(order) + idb(order, linktype=1) + epb(order, 0, 1_700_000_000_000_001, b"abc")
    assert frames_of(content) == [Frame(1, 1_700_000_000_000_001_000, b"abc", 1, 0)]


@pytest.mark.parametrize(
    ("tsresol", "ticks", "expected_ns"),
    [
        (3, 1_700_000_000_123, 1_700_000_000_123_000_000),  # milliseconds
        (9, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),  # nanoseconds
        (12, 123_456_789_012, 123_456_789),  # picoseconds, floored to ns
        (0x80 | 20, (1_700_000_000 << 20) + (1 << 19), 1_700_000_000_500_000_000),  # 2^-20 s
    ],
)
def test_pcapng_if_tsresol(tsresol, ticks, expected_ns):
    options = option("<", 9, bytes([tsresol]))
    content = shb("<") + idb("<", options=options) + epb("<", 0, ticks, b"x")
    assert frames_of(content)[0].timestamp_ns == expected_ns


def test_pcapng_if_tsoffset_adds_seconds():
    options = option(">", 14, struct.pack(">q", 1_600_000_000)) + option(">", 9, b"\x09")
    content = shb(">") + idb(">", options=options) + epb(">", 0, 100_000_000_042, b"x")
    assert frames_of(content)[0].timestamp_ns == 1_600_000_100_000_000_042


def test_pcapng_simple_packet_block_has_no_time_and_is_cut_at_snaplen():
    # SPB: captured length = min(original length, snaplen of interface 0)
    content = shb("<") + idb("<", snaplen=4) + spb("<", b"abcd", original=1500) + spb("<", b"xy")
    assert frames_of(content) == [Frame(1, None, b"abcd", 1, 0), Frame(2, None, b"xy", 1, 0)]


def test_pcapng_obsolete_packet_block():
    ticks = 1_700_000_000_000_000  # microseconds
    body = struct.pack("<HHIIII", 0, 0, ticks >> 32, ticks & 0xFFFFFFFF, 3, 3) + b"old"
    content = shb("<") + idb("<") + block("<", 2, body)
    assert frames_of(content) == [Frame(1, 1_700_000_000_000_000_000, b"old", 1, 0)]


def test_pcapng_skips_unknown_blocks_and_packet_options():
    content = (
        shb("<")
        + block("<", 0x00000BAD, b"custom block the reader does not know")
        + idb("<", options=option("<", 2, b"eth0"))  # if_name
        + block("<", 4, b"\x00" * 8)  # name resolution
        + epb("<", 0, 1, b"frame", options=option("<", 1, b"a comment") + option("<", 0, b""))
        + block("<", 5, struct.pack("<III", 0, 0, 0))  # interface statistics
        + block("<", 0x40000001, b"custom, do not copy")
    )
    assert frames_of(content) == [Frame(1, 1000, b"frame", 1, 0)]


def test_pcapng_interfaces_are_numbered_across_sections():
    content = (
        shb("<")
        + idb("<", linktype=1)
        + idb("<", linktype=101)
        + epb("<", 1, 2, b"raw ip")
        + epb("<", 0, 3, b"ethernet")
        + shb(">")  # a second section, big-endian, restarts interface ids at 0
        + idb(">", linktype=113)
        + epb(">", 0, 4, b"linux sll")
    )
    assert [(f.index, f.interface, f.linktype, f.data) for f in frames_of(content)] == [
        (1, 1, 101, b"raw ip"),
        (2, 0, 1, b"ethernet"),
        (3, 2, 113, b"linux sll"),
    ]


def test_pcapng_file_merged_by_mergecap():
    # tests/wire/data/two-interfaces.pcapng: `mergecap -F pcapng` of an Ethernet and a raw-IP
    # pcap written by netvirt (see tests/wire/data/README.md)
    frames = list(pcap.read(DATA / "two-interfaces.pcapng"))
    assert [(f.interface, f.linktype, len(f.data)) for f in frames] == [
        (0, 1, 60),
        (1, 101, 28),
        (0, 1, 62),
    ]
    assert [f.timestamp_ns for f in frames] == [
        1_700_000_000_000_000_001,
        1_700_000_000_500_000_000,
        1_700_000_001_000_000_000,
    ]


# --- writer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("nanosecond", [False, True])
def test_writer_round_trip(tmp_path, nanosecond):
    path = tmp_path / "out.pcap"
    with pcap.Writer(path, nanosecond=nanosecond, linktype=101, snaplen=8) as writer:
        writer.write(b"0123456789", timestamp_ns=1_700_000_000_123_456_789)
        writer.write(b"ab", timestamp_ns=0)
    expected_first = 1_700_000_000_123_456_789 if nanosecond else 1_700_000_000_123_456_000
    assert list(pcap.read(path)) == [
        Frame(1, expected_first, b"01234567", 101, 0),
        Frame(2, 0, b"ab", 101, 0),
    ]
    content = path.read_bytes()
    magic = "4d3cb2a1" if nanosecond else "d4c3b2a1"
    assert content[:24].hex() == magic + "02000400" + "00000000" * 2 + "08000000" + "65000000"
    # the first record keeps its original length (10) while 8 bytes are captured
    assert struct.unpack_from("<II", content, 24 + 8) == (8, 10)


def test_write_convenience_takes_bytes_and_frames(tmp_path):
    path = tmp_path / "copy.pcap"
    pcap.write(path, frames_of(PCAP_LE_MICROSECONDS) + [b"now"])
    frames = list(pcap.read(path))
    assert frames[0] == frames_of(PCAP_LE_MICROSECONDS)[0]
    assert frames[1].data == b"now" and frames[1].timestamp_ns > 1_700_000_000 * 10**9


def test_write_to_a_stream_leaves_it_open():
    stream = io.BytesIO()
    pcap.write(stream, [b"a"], nanosecond=True)
    assert [f.data for f in pcap.read(io.BytesIO(stream.getvalue()))] == [b"a"]
    assert not stream.closed


def test_write_rejects_another_linktype_and_impossible_times(tmp_path):
    with pytest.raises(ValueError, match="linktype 101, the file 1"):
        pcap.write(tmp_path / "x.pcap", frames_of(PCAP_BE_NANOSECONDS))
    with pcap.Writer(tmp_path / "y.pcap") as writer:
        with pytest.raises(ValueError, match="outside the pcap range"):
            writer.write(b"x", timestamp_ns=-1)
        with pytest.raises(ValueError, match="outside the pcap range"):
            writer.write(b"x", timestamp_ns=2**32 * 10**9)
    with pytest.raises(ValueError, match="linktype"):
        pcap.Writer(io.BytesIO(), linktype=70000)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=80), st.integers(0, 2**32 * 10**9 - 1)), max_size=6),
    st.booleans(),
)
def test_round_trip_property(records, nanosecond):
    stream = io.BytesIO()
    with pcap.Writer(stream, nanosecond=nanosecond) as writer:
        for data, timestamp in records:
            writer.write(data, timestamp)
    frames = frames_of(stream.getvalue())
    resolution = 1 if nanosecond else 1000
    assert [(f.data, f.timestamp_ns) for f in frames] == [
        (data, timestamp // resolution * resolution) for data, timestamp in records
    ]
    assert [f.index for f in frames] == list(range(1, len(records) + 1))


# --- malformed files ----------------------------------------------------------------------------


def test_empty_and_bad_magic():
    assert "empty file" in str(error_of(b""))
    error = error_of(b"GIF89a" + bytes(30))
    assert error.offset == 0 and "magic 47494638" in error.reason
    assert str(error) == f"<stream>: offset 0: {error.reason}"


def test_error_names_the_path(tmp_path):
    path = tmp_path / "broken.pcap"
    path.write_bytes(PCAP_LE_MICROSECONDS[:-1])
    with pytest.raises(PcapError, match=r"broken\.pcap: offset 40: truncated frame 1"):
        list(pcap.read(path))


def test_truncated_classic_pcap_yields_the_frames_before_the_damage():
    content = PCAP_BE_NANOSECONDS[:-5]
    frames = pcap.read(io.BytesIO(content))
    assert next(frames).data == b"\xca\xfe"
    with pytest.raises(PcapError) as caught:
        next(frames)
    assert caught.value.offset == 24 + 18
    assert caught.value.reason == "truncated pcap record header: needs 16 bytes, the file has 13"


def test_classic_header_problems():
    assert error_of(PCAP_LE_MICROSECONDS[:20]).reason.startswith("truncated pcap file header")
    version_3 = PCAP_LE_MICROSECONDS[:4] + b"\x03\x00" + PCAP_LE_MICROSECONDS[6:]
    assert error_of(version_3).offset == 4
    assert "unsupported pcap version 3.4" in error_of(version_3).reason


def test_pcapng_truncated_block():
    error = error_of(PCAPNG_LE[:-6])
    assert error.offset == 68  # SHB (28) + IDB (32): the EPB starts at 60, its body at 68
    assert error.reason == (
        "truncated block type 0x00000006 (40 bytes): needs 32 bytes, the file has 26"
    )


def test_pcapng_block_length_mismatch():
    content = bytearray(PCAPNG_LE)
    content[-4:] = struct.pack("<I", 44)
    error = error_of(bytes(content))
    assert error.offset == len(PCAPNG_LE) - 4
    assert "block length mismatch" in error.reason
    assert "starts with length 40 but ends with 44" in error.reason


@pytest.mark.parametrize("length", [8, 30])
def test_pcapng_impossible_block_length(length):
    content = shb("<") + struct.pack("<II", 6, length) + bytes(40)
    error = error_of(content)
    assert error.offset == 28 + 4 and f"total length {length}" in error.reason


def test_pcapng_bad_byte_order_magic_and_version():
    bad_magic = PCAPNG_LE[:8] + b"\x11\x22\x33\x44" + PCAPNG_LE[12:]
    assert error_of(bad_magic).offset == 8
    assert "byte-order magic 11223344" in error_of(bad_magic).reason
    assert "unsupported pcapng version 2.0" in error_of(shb("<", major=2)).reason


def test_pcapng_packet_before_its_interface():
    error = error_of(shb("<") + idb("<") + epb("<", 1, 0, b"x"))
    assert error.offset == 28 + 20
    assert "refers to interface 1" in error.reason and "has 1 interface" in error.reason
    assert "refers to interface 0" in error_of(shb("<") + spb("<", b"x")).reason


def test_pcapng_captured_length_overruns_block():
    body = struct.pack("<IIIII", 0, 0, 0, 200, 200) + bytes(8)
    error = error_of(shb("<") + idb("<") + block("<", 6, body))
    assert "captured length 200 overruns the block" in error.reason


def test_pcapng_option_overruns_block():
    options = struct.pack("<HH", 9, 64) + b"\x09\x00\x00\x00"
    error = error_of(shb("<") + block("<", 1, struct.pack("<HHI", 1, 0, 0) + options))
    assert error.offset == 28 + 8 + 8 and "option 9 of 64 bytes overruns" in error.reason


def test_pcapng_block_too_short_for_its_header():
    error = error_of(shb(">") + idb(">") + block(">", 6, bytes(8)))
    assert "too short for its packet header" in error.reason


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([PCAP_LE_MICROSECONDS[:24], PCAP_BE_NANOSECONDS[:24], PCAPNG_LE[:28]]),
    st.binary(max_size=120),
)
def test_garbage_after_a_valid_header_raises_only_pcap_error(header, garbage):
    try:
        frames_of(header + garbage)
    except PcapError:
        pass
