"""tshark as the independent oracle for capture files.

pcaps written by netvirt (microsecond and nanosecond) decode in tshark with the VNIs, Geneve
options, NVGRE VSID/FlowID (tshark shows NVGRE as GRE with a 32-bit key = VSID << 8 | FlowID),
addresses, checksums and times netvirt put in; pcapng files written by editcap, tshark and
mergecap read in netvirt exactly as tshark reads them.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_tool

from netvirt.wire import build, encapsulate, ethernet, geneve, ipv4, ipv6, pcap, tcp, udp
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

BASE_TIME_NS = 1_700_000_000_123_456_789
CHECKSUMS = ("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
             "-o", "udp.check_checksum:TRUE")  # fmt: skip
GOOD, NOT_PRESENT = "1", "3"  # tshark's *.checksum.status values
EXPERT_ERROR = 0x00800000  # _ws.expert.severity of "error"


@dataclass(frozen=True)
class Case:
    encap: str
    vni: int
    outer: tuple[str, str]
    inner: tuple[str, str]
    options: tuple[geneve.Option, ...] = ()
    flow_id: int = 0


CASES = [
    Case("vxlan", 100, ("192.0.2.1", "192.0.2.2"), ("10.0.0.1", "10.0.0.2")),
    Case("vxlan", 0xFFFFFF, ("2001:db8::1", "2001:db8::2"), ("fd00::a", "fd00::b")),
    Case(
        "geneve", 7, ("192.0.2.3", "192.0.2.4"), ("10.1.0.1", "10.1.0.2"),
        options=(geneve.Option(0x0102, 0x80, bytes.fromhex("00010002")),
                 geneve.Option(0xFFF0, 0x05, bytes.fromhex("0123456789abcdef"))),
    ),  # fmt: skip
    Case("geneve", 0x123456, ("2001:db8::3", "2001:db8::4"), ("10.1.0.3", "10.1.0.4"),
         options=(geneve.Option(0x0001, 0x7F, bytes.fromhex("cafef00d")),)),  # fmt: skip
    Case("nvgre", 5001, ("192.0.2.5", "192.0.2.6"), ("10.2.0.1", "10.2.0.2"), flow_id=7),
    Case("nvgre", 0xABCDEF, ("2001:db8::5", "2001:db8::6"), ("fd00::1", "fd00::2"), flow_id=255),
]


def inner_frame(case: Case, number: int) -> bytes:
    """A TCP SYN (even cases) or a UDP datagram (odd cases) between the case's inner addresses."""
    src, dst = ip_to_bytes(case.inner[0]), ip_to_bytes(case.inner[1])
    transport = (
        tcp.Repr(40000 + number, 80, sequence_number=1, flags=0x02)
        if number % 2 == 0
        else udp.Repr(40000 + number, 9)  # discard: no dissector frowns on the payload
    )
    protocol = ipv4.TCP if number % 2 == 0 else ipv4.UDP
    if len(src) == 4:
        ip, ethertype = ipv4.Repr(src, dst, protocol), ethernet.IPV4
    else:
        ip, ethertype = ipv6.Repr(src, dst, protocol), ethernet.IPV6
    src_mac = mac_to_bytes(f"02:00:00:00:01:{number:02x}")
    eth = ethernet.Repr(src_mac, mac_to_bytes("02:00:00:00:02:01"), ethertype)
    return build([eth, ip, transport], b"netvirt")


def outer_frame(case: Case, number: int) -> bytes:
    return encapsulate(
        inner_frame(case, number), encap=case.encap, vni=case.vni, outer_src=case.outer[0],
        outer_dst=case.outer[1], outer_src_mac="52:54:00:00:00:01",
        outer_dst_mac="52:54:00:00:00:02", options=case.options, flow_id=case.flow_id,
    )  # fmt: skip


FIELDS = [
    "frame.number", "frame.time_epoch", "frame.len", "frame.interface_id", "frame.section_number",
    "vxlan.vni", "geneve.vni", "geneve.option.class", "geneve.option.type",
    "geneve.option.unknown.data", "gre.proto", "gre.key", "ip.src", "ip.dst", "ipv6.src",
    "ipv6.dst", "tcp.srcport", "udp.srcport", "ip.checksum.status", "udp.checksum.status",
    "tcp.checksum.status", "_ws.malformed", "_ws.expert.severity",
]  # fmt: skip


def tshark_fields(path: Path) -> list[dict[str, list[str]]]:
    """One dict per frame: field -> every occurrence, outer to inner."""
    tshark = require_tool("tshark")
    command = [tshark, "-r", str(path), *CHECKSUMS, "-T", "fields", "-E", "occurrence=a",
               "-E", "aggregator=|", "-E", "separator=/t"]  # fmt: skip
    for field in FIELDS:
        command += ["-e", field]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rows = []
    for line in result.stdout.splitlines():
        values = line.split("\t")
        assert len(values) == len(FIELDS), line
        rows.append({name: value.split("|") if value else []
                     for name, value in zip(FIELDS, values)})
    return rows


@pytest.fixture(scope="module", params=[False, True], ids=["microseconds", "nanoseconds"])
def written(request, tmp_path_factory) -> tuple[Path, bool, list[dict[str, list[str]]]]:
    path = tmp_path_factory.mktemp("tshark") / "netvirt.pcap"
    with pcap.Writer(path, nanosecond=request.param) as writer:
        for number, case in enumerate(CASES):
            writer.write(outer_frame(case, number), timestamp_ns=BASE_TIME_NS + number * 1_000_001)
    return path, request.param, tshark_fields(path)


def test_times_and_lengths(written):
    _, nanosecond, rows = written
    assert len(rows) == len(CASES)
    for number, (case, row) in enumerate(zip(CASES, rows)):
        stamp = BASE_TIME_NS + number * 1_000_001
        if not nanosecond:
            stamp = stamp // 1000 * 1000
        seconds, fraction = divmod(stamp, 10**9)
        assert row["frame.time_epoch"] == [f"{seconds}.{fraction:09d}"]
        assert row["frame.len"] == [str(len(outer_frame(case, number)))]


def test_tunnel_fields(written):
    for case, row in zip(CASES, written[2]):
        if case.encap == "vxlan":
            assert row["vxlan.vni"] == [str(case.vni)]
        elif case.encap == "geneve":
            assert [int(vni, 16) for vni in row["geneve.vni"]] == [case.vni]
            assert row["geneve.option.class"] == [f"0x{o.option_class:04x}" for o in case.options]
            assert row["geneve.option.type"] == [f"0x{o.type:02x}" for o in case.options]
            assert row["geneve.option.unknown.data"] == [o.data.hex() for o in case.options]
        else:
            assert row["gre.proto"] == ["0x6558"]  # transparent Ethernet bridging
            assert row["gre.key"] == [f"0x{case.vni << 8 | case.flow_id:08x}"]
        tunnels = {"vxlan": "vxlan.vni", "geneve": "geneve.vni", "nvgre": "gre.key"}
        assert all(not row[field] for name, field in tunnels.items() if name != case.encap)


def test_outer_and_inner_addresses(written):
    for case, row in zip(CASES, written[2]):
        addresses: dict[str, list[str]] = {"ip.src": [], "ip.dst": []}
        addresses |= {"ipv6.src": [], "ipv6.dst": []}
        for src, dst in (case.outer, case.inner):  # outer first, as tshark lists occurrences
            family = "ipv6" if ":" in src else "ip"
            addresses[f"{family}.src"].append(src)
            addresses[f"{family}.dst"].append(dst)
        assert {field: row[field] for field in addresses} == addresses


def test_checksums_verify_and_nothing_is_malformed(written):
    for number, (case, row) in enumerate(zip(CASES, written[2])):
        assert set(row["ip.checksum.status"]) <= {GOOD}
        assert row["tcp.checksum.status"] == ([GOOD] if number % 2 == 0 else [])
        udp_statuses = row["udp.checksum.status"]
        if case.encap == "nvgre":
            expected = [] if number % 2 == 0 else [GOOD]
        else:
            # VXLAN/Geneve over IPv4 send a zero UDP checksum (RFC 7348 §5), over IPv6 a full one
            outer = NOT_PRESENT if "." in case.outer[0] else GOOD
            expected = [outer] if number % 2 == 0 else [outer, GOOD]
        assert udp_statuses == expected
        assert row["_ws.malformed"] == []
        assert all(int(severity) < EXPERT_ERROR for severity in row["_ws.expert.severity"])


# --- pcapng written by Wireshark's tools, read by netvirt ----------------------------------------


def netvirt_vs_tshark(path: Path) -> tuple[list[pcap.Frame], list[dict[str, list[str]]]]:
    frames = list(pcap.read(path))
    rows = tshark_fields(path)
    assert len(frames) == len(rows)
    for frame, row in zip(frames, rows):
        seconds, fraction = divmod(frame.timestamp_ns, 10**9)
        assert row["frame.number"] == [str(frame.index)]
        assert row["frame.time_epoch"] == [f"{seconds}.{fraction:09d}"]
        assert row["frame.len"] == [str(len(frame.data))]
    return frames, rows


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda src, dst: ["editcap", "-F", "pcapng", src, dst], id="editcap"),
        pytest.param(lambda src, dst: ["tshark", "-r", src, "-w", dst], id="tshark"),
    ],
)
def test_pcapng_from_wireshark_tools(written, tmp_path, convert):
    source, _, _ = written
    command = convert(str(source), str(tmp_path / "converted.pcapng"))
    command[0] = require_tool(command[0])
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    converted = tmp_path / "converted.pcapng"
    assert converted.read_bytes()[:4] == bytes.fromhex("0a0d0d0a")  # really pcapng
    frames, _ = netvirt_vs_tshark(converted)
    assert [(f.data, f.timestamp_ns, f.linktype) for f in frames] == [
        (f.data, f.timestamp_ns, f.linktype) for f in pcap.read(source)
    ]


def test_pcapng_sections_and_interfaces(written, tmp_path):
    # mergecap: one section, two interfaces (Ethernet and raw IP); then the same file again as a
    # second section: netvirt numbers interfaces across the file, tshark per section
    source, nanosecond, _ = written
    raw_ip = tmp_path / "raw.pcap"
    pcap.write(raw_ip, [pcap.Frame(1, BASE_TIME_NS + 500, inner_frame(CASES[0], 0)[14:], 101, 0)],
               nanosecond=nanosecond, linktype=101)  # fmt: skip
    merged = tmp_path / "merged.pcapng"
    mergecap = require_tool("mergecap")
    command = [mergecap, "-F", "pcapng", "-w", str(merged), str(source), str(raw_ip)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    two_sections = tmp_path / "two-sections.pcapng"
    two_sections.write_bytes(merged.read_bytes() * 2)
    frames, rows = netvirt_vs_tshark(two_sections)
    tshark_interfaces = [
        (row["frame.section_number"][0], row["frame.interface_id"][0]) for row in rows
    ]
    assert tshark_interfaces[:2] == [("1", "0"), ("1", "1")]
    numbering = {pair: number for number, pair in enumerate(dict.fromkeys(tshark_interfaces))}
    assert [f.interface for f in frames] == [numbering[pair] for pair in tshark_interfaces]
    assert sorted(set(f.interface for f in frames)) == [0, 1, 2, 3]
    assert [f.linktype for f in frames if f.interface in (1, 3)] == [101, 101]
