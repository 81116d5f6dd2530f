"""``netvirt pcap show``: text and JSON listings, a bad frame in the middle, bad files (exit 2)."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from netvirt.management.cli import pcap as pcap_cli
from netvirt.wire import ParseError, build, dissect, encapsulate, ethernet, geneve, ipv4, pcap, udp
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

DATA = Path(__file__).parents[1] / "wire" / "data"
START_NS = 1_700_000_000_123_456_789  # 2023-11-14 22:13:20.123456789 UTC


def inner_udp() -> bytes:
    return build(
        [
            ethernet.Repr(
                mac_to_bytes("02:00:00:00:00:0a"), mac_to_bytes("02:00:00:00:00:0b"), ethernet.IPV4
            ),
            ipv4.Repr(ip_to_bytes("10.0.0.1"), ip_to_bytes("10.0.0.2"), ipv4.UDP),
            udp.Repr(5000, 6000),
        ],
        b"hello",
    )


def tunnelled(encap: str, vni: int, **extra) -> bytes:
    return encapsulate(
        inner_udp(), encap=encap, vni=vni, outer_src="192.0.2.1", outer_dst="192.0.2.2",
        outer_src_mac="52:54:00:00:00:01", outer_dst_mac="52:54:00:00:00:02", **extra,
    )  # fmt: skip


def bad_checksum(frame: bytes) -> bytes:
    corrupted = bytearray(frame)
    corrupted[14 + 10] ^= 0xFF  # the outer IPv4 header checksum
    return bytes(corrupted)


FRAMES = [
    tunnelled("vxlan", 100),
    bad_checksum(tunnelled("vxlan", 101)),
    tunnelled("geneve", 200, options=(geneve.Option(0x0102, 0x80, b"\x00\x01\x00\x02"),)),
    tunnelled("nvgre", 300, flow_id=9),
]


@pytest.fixture
def capture(tmp_path) -> Path:
    path = tmp_path / "mixed.pcap"
    with pcap.Writer(path, nanosecond=True) as writer:
        for number, frame in enumerate(FRAMES):
            writer.write(frame, timestamp_ns=START_NS + number * 1000)
    return path


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # a group, as in netvirt's own CLI
    pcap_cli.register(app)
    return app


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["pcap", "show", *args])


def expected_error() -> ParseError:
    with pytest.raises(ParseError) as caught:
        dissect(FRAMES[1])
    return caught.value


def test_text_one_line_per_frame_and_a_marked_bad_frame(app, capture):
    result = run(app, str(capture))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("   1  2023-11-14 22:13:20.123456789  192.0.2.1.")
    assert "vxlan vni 100" in lines[0] and "10.0.0.1.5000 > 10.0.0.2.6000" in lines[0]
    error = expected_error()
    assert error.layer == "ipv4" and "checksum" in str(error)
    assert lines[1] == (
        f"   2  2023-11-14 22:13:20.123457789  [undecodable] ipv4 at offset {error.offset}: "
        f"bad checksum: {error.reason}"
    )
    assert lines[2].startswith("   3  2023-11-14 22:13:20.123458789")
    assert "geneve vni 200" in lines[2]
    assert "nvgre vsid 300 flow_id 9" in lines[3] and "10.0.0.1.5000 > 10.0.0.2.6000" in lines[3]


def test_json_layers_and_error_entry(app, capture):
    result = run(app, str(capture), "--format", "json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert [entry["index"] for entry in entries] == [1, 2, 3, 4]
    vxlan = entries[0]["layers"]
    names = ["ethernet", "ipv4", "udp", "vxlan", "ethernet", "ipv4", "udp"]
    assert [layer["layer"] for layer in vxlan] == names
    assert vxlan[0]["src"] == "52:54:00:00:00:01" and vxlan[0]["ethertype"] == 0x0800
    assert vxlan[1]["src"] == "192.0.2.1" and vxlan[1]["protocol"] == 17
    assert vxlan[2]["dst_port"] == 4789 and vxlan[3]["vni"] == 100
    assert vxlan[5]["src"] == "10.0.0.1" and vxlan[6]["src_port"] == 5000
    error = expected_error()
    assert entries[1] == {
        "index": 2,
        "error": {"layer": "ipv4", "offset": error.offset, "reason": error.reason},
    }
    assert entries[2]["layers"][3]["vni"] == 200
    options = [{"class": 0x0102, "type": 0x80, "data": "00010002"}]
    assert entries[2]["layers"][3]["options"] == options
    assert {"vsid": 300, "flow_id": 9}.items() <= entries[3]["layers"][2].items()
    assert entries[3]["layers"][2]["layer"] == "nvgre"


def test_non_ethernet_frames_and_pcapng(app):
    entries = json.loads(run(app, str(DATA / "two-interfaces.pcapng"), "-f", "json").stdout)
    assert entries[0]["layers"][1]["layer"] == "arp"
    assert entries[1] == {
        "index": 2,
        "error": {
            "layer": "pcap",
            "offset": 0,
            "reason": "link type 101 is not Ethernet (1): netvirt decodes Ethernet frames",
        },
    }
    text = run(app, str(DATA / "two-interfaces.pcapng")).stdout.splitlines()
    assert text[1] == (
        "   2  2023-11-14 22:13:20.500000000  [undecodable] pcap at offset 0: malformed: "
        "link type 101 is not Ethernet (1): netvirt decodes Ethernet frames"
    )


def test_missing_file_exits_2(app, tmp_path):
    result = run(app, str(tmp_path / "nope.pcap"))
    assert result.exit_code == 2 and result.stdout == ""
    missing = tmp_path / "nope.pcap"
    assert result.stderr == f"netvirt pcap show: cannot read {missing}: No such file or directory\n"
    assert run(app, str(tmp_path)).exit_code == 2  # a directory


def test_not_a_capture_exits_2(app, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a capture\n")
    for fmt in ("text", "json"):
        result = run(app, str(path), "--format", fmt)
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr.startswith(
            f"netvirt pcap show: {path}: offset 0: not a pcap or pcapng file"
        )


def test_truncated_file(app, capture, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(capture.read_bytes()[:-10])
    text = run(app, str(cut))
    assert text.exit_code == 2
    assert len(text.stdout.splitlines()) == 3  # streamed: the frames before the damage
    assert "truncated frame 4" in text.stderr and f"{cut}: offset " in text.stderr
    as_json = run(app, str(cut), "--format", "json")
    assert as_json.exit_code == 2 and as_json.stdout == ""  # never half a JSON document
    assert "truncated frame 4" in as_json.stderr


def test_bad_format_is_a_usage_error(app, capture):
    assert run(app, str(capture), "--format", "xml").exit_code == 2


def test_installed_command(capture, tmp_path):
    # the real entry point, with every command group registered
    command = [sys.executable, "-m", "netvirt", "pcap", "show"]
    result = subprocess.run(
        [*command, str(capture), "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert [entry["index"] for entry in json.loads(result.stdout)] == [1, 2, 3, 4]
    missing = subprocess.run(
        [*command, str(tmp_path / "missing.pcap")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr


def test_empty_capture_and_frames_without_time(app, tmp_path):
    empty = tmp_path / "empty.pcap"
    pcap.write(empty, [])
    assert run(app, str(empty), "-f", "json").stdout == "[]\n"
    assert run(app, str(empty)).stdout == ""
    # pcapng: Section Header, Interface Description (Ethernet), one Simple Packet Block (no time)
    frame = FRAMES[0]
    spb_body = struct.pack("<I", len(frame)) + frame + bytes(-len(frame) % 4)
    length = 12 + len(spb_body)
    spb = struct.pack("<II", 3, length) + spb_body + struct.pack("<I", length)
    untimed = tmp_path / "untimed.pcapng"
    untimed.write_bytes(
        bytes.fromhex("0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffffffffffff 1c000000")
        + bytes.fromhex("01000000 14000000 0100 0000 00000000 14000000")
        + spb
    )
    line = run(app, str(untimed)).stdout
    assert line.startswith("   1  -" + " " * 30 + "192.0.2.1.") and "vxlan vni 100" in line
