"""Captures against hostile files: timestamps out of any calendar, declared lengths over the snap
length (libpcap's rule), huge blocks through a pipe; and a fuzz test of mutated pcap and pcapng
files through ``netvirt pcap show`` (only per-frame errors or one located PcapError)."""

import io
import os
import random
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fuzz_budget import fuzz
from hypothesis import given
from hypothesis import strategies as st
from test_pcap import PCAP_BE_NANOSECONDS, PCAP_LE_MICROSECONDS, PCAPNG_LE, epb, error_of, frames_of, idb, option, shb

from netvirt.management.cli.pcap import frame_json, frame_line
from netvirt.wire import pcap
from netvirt.wire.pcap import MAX_BLOCK, MAX_SNAPLEN, PcapError, format_timestamp


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (1_700_000_000_123_456_789, "2023-11-14 22:13:20.123456789"),
        (-1, "1969-12-31 23:59:59.999999999"),
        (None, "-".ljust(29)),
        ((1 << 64) * 10**9, "+18446744073709551616 s from 1970 (out of range).000000000"),
        (-(2**63) * 10**9, "-9223372036854775808 s from 1970 (out of range).000000000"),
        (-62135596800 * 10**9, "0001-01-01 00:00:00.000000000"),
    ],
)
def test_every_timestamp_has_one_format(ns, text):
    assert format_timestamp(ns) == text


@pytest.mark.parametrize(
    ("options", "ticks"),
    [
        (b"", (1 << 64) - 1),  # a huge high word
        (option("<", 9, b"\x00"), (1 << 64) - 1),  # if_tsresol 0: seconds per tick
        (option("<", 9, b"\x00") + option("<", 14, struct.pack("<q", -(2**63))), 5),  # huge negative if_tsoffset
        (option("<", 9, b"\xff"), (1 << 64) - 1),  # 2^-127 s per tick
    ],
)
def test_pcapng_times_out_of_range_still_show(options, ticks):
    frames = frames_of(shb("<") + idb("<", options=options) + epb("<", 0, ticks, b"\x01" * 14))
    line = frame_line(frames[0])
    assert re.match(r"   1  (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|[-+]\d+ s from 1970 \(out of range\))\.\d{9}  01:", line), line
    assert frame_json(frames[0])["index"] == 1


def test_classic_captured_length_over_the_snap_length_is_refused():
    header = bytearray(PCAP_LE_MICROSECONDS[:24])
    record = struct.pack("<IIII", 0, 0, MAX_SNAPLEN + 1, MAX_SNAPLEN + 1)
    error = error_of(bytes(header) + record)
    assert error.offset == 32 and f"frame 1 declares {MAX_SNAPLEN + 1} captured bytes" in error.reason
    header[16:20] = struct.pack("<I", 1 << 20)  # a snap length that allows it: only truncated
    assert "truncated frame 1" in error_of(bytes(header) + record).reason


def test_pcapng_captured_length_over_the_snap_length_is_refused():
    big = shb("<") + idb("<", snaplen=1500)
    body = struct.pack("<IIIII", 0, 0, 0, MAX_SNAPLEN + 4, MAX_SNAPLEN + 4)
    block = struct.pack("<II", 6, 32) + body + struct.pack("<I", 32)
    assert "declares 262148 captured bytes" in error_of(big + block).reason


def test_a_huge_declared_block_through_a_pipe_costs_no_memory():
    """1 GiB declared and sent through a pipe: refused at its header, before any of it is read."""
    read_fd, write_fd = os.pipe()
    head = shb("<") + idb("<") + struct.pack("<II", 6, 1 << 30)

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as out:
            try:
                out.write(head + bytes(1 << 20))
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=writer)
    thread.start()
    with os.fdopen(read_fd, "rb") as source, pytest.raises(PcapError) as caught:
        list(pcap.read(source))
    thread.join()
    assert f"more than the {MAX_BLOCK} bytes libpcap reads in one block" in caught.value.reason


def test_pcap_show_of_a_bad_time_exits_0(tmp_path):
    path = tmp_path / "t.pcapng"
    path.write_bytes(shb("<") + idb("<", options=option("<", 14, struct.pack("<q", -(2**62)))) + epb("<", 0, 1, b"\x02" * 60))
    done = subprocess.run([sys.executable, "-m", "netvirt", "pcap", "show", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "s from 1970 (out of range)" in done.stdout and not done.stderr


# --- fuzz: mutated captures ------------------------------------------------------------------------

SEEDS = [PCAP_LE_MICROSECONDS, PCAP_BE_NANOSECONDS, PCAPNG_LE, (Path(__file__).parent / "data" / "two-interfaces.pcapng").read_bytes()]


def mutate(content: bytes, rng: random.Random, count: int) -> bytes:
    data = bytearray(content)
    for _ in range(count):
        at = rng.randrange(len(data) + 1)
        action = rng.choice(["flip", "byte", "word", "cut", "insert", "repeat"])
        if action == "flip" and at < len(data):
            data[at] ^= 1 << rng.randrange(8)
        elif action == "byte" and at < len(data):
            data[at] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif action == "word" and at + 4 <= len(data):
            data[at : at + 4] = struct.pack("<I", rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 30, rng.getrandbits(32)]))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif action == "repeat":
            data[at:at] = data[max(0, at - 40) : at]
    return bytes(data)


@fuzz(400)
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False), st.integers(1, 5))
def test_mutated_captures_give_only_frame_errors_or_one_located_error(content, rng, count):
    mutated = mutate(content, rng, count)
    try:
        for frame in pcap.read(io.BytesIO(mutated)):
            frame_line(frame)  # text mode: never raises
            frame_json(frame)
    except PcapError as error:
        assert 0 <= error.offset <= len(mutated) + 8 and error.reason
