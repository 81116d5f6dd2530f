"""Wire codec benchmark: one JSON line.

On one mix of frames (plain TCP and UDP, VXLAN, Geneve with options, NVGRE, an IPv6 underlay,
VXLAN in VXLAN) it compares netvirt's full ``dissect`` with dpkt and scapy (packets/s and ratios),
measures ``build`` (emit) throughput and the ``ipv4.View`` TTL decrement with its RFC 1624
checksum update, and times the Repr candidates (NamedTuple vs frozen slotted dataclass).

The three decoders get the same frames and must reach the same depth, which is checked before
timing: scapy binds VXLAN and Geneve (its ``vxlan`` and ``contrib.geneve`` layers), and since dpkt
has no VXLAN or Geneve codec, the dpkt variant parses those 8-byte headers (and Geneve's options)
with ``struct`` and hands the inner frame back to dpkt. dpkt does not verify the IPv4 header
checksum or parse TCP options; netvirt does both.

Times are CPU time of this thread (``time.thread_time``), which other processes on a loaded
machine disturb less than wall-clock time. Within each round the variants alternate in short
turns; packets/s are each variant's median round, ratios the median of the per-round ratios
(with their range), and the load average is reported with them.

``--baseline REV`` also times ``dissect`` as of git revision REV (imported next to the current
code) in the same turns, and reports the current code's speed relative to it: an A/B of a change.

    .venv/bin/python bench/wire.py [--rounds N] [--seconds S] [--baseline REV]
"""

import argparse
import importlib
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass
from typing import NamedTuple

import dpkt
from scapy.contrib.geneve import GENEVE  # noqa: F401  (binds UDP 6081 -> Geneve in scapy)
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN  # noqa: F401  (binds UDP 4789 -> VXLAN in scapy)
from scapy.packet import Padding, Raw

from netvirt.wire import build, dissect, encapsulate, ethernet, geneve, ipv4, tcp, to_json, udp

ROOT = Path(__file__).resolve().parent.parent

MAC1, MAC2 = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def mixed_frames() -> list[tuple[list, bytes]]:
    """(layers, payload) for each kind of frame in the mix."""
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    tcp_frame = [ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(a, b, ipv4.TCP, identification=1),
                 tcp.Repr(41000, 80, 1000, 2000, tcp.ACK | tcp.PSH, 502,
                          options=(tcp.Option(1), tcp.Option(1), tcp.Option(8, bytes(8))))]
    udp_frame = [ethernet.Repr(MAC1, MAC2, ethernet.IPV4), ipv4.Repr(a, b, ipv4.UDP), udp.Repr(5353, 53)]
    inner = build(tcp_frame, b"x" * 100)
    outer = dict(outer_src="192.0.2.1", outer_dst="192.0.2.2", outer_src_mac=MAC1, outer_dst_mac=MAC2)
    outer6 = dict(outer_src="2001:db8::1", outer_dst="2001:db8::2", outer_src_mac=MAC1, outer_dst_mac=MAC2)
    options = (geneve.Option(0x0102, 0x80, b"\x00\x00\x00\x01"), geneve.Option(0x0104, 0x01, bytes(8)))
    tunnelled = [
        encapsulate(inner, encap="vxlan", vni=100, **outer),
        encapsulate(inner, encap="geneve", vni=200, options=options, **outer),
        encapsulate(inner, encap="nvgre", vni=300, flow_id=7, **outer),
        encapsulate(inner, encap="vxlan", vni=400, **outer6),
        encapsulate(encapsulate(inner, encap="vxlan", vni=500, **outer), encap="vxlan", vni=600, **outer),
    ]
    stacks = [(tcp_frame, b"x" * 100), (udp_frame, b"q" * 40)]
    for frame in tunnelled:
        layers = dissect(frame)
        payload = frame[len(build(layers)):]  # the bytes after the last header
        assert build(layers, payload) == frame
        stacks.append((layers, payload))
    return stacks


def measure(variants: dict, rounds: int, seconds: float, slices: int = 10) -> dict[str, list[float]]:
    """Items per CPU second of each ``name: (function, items)``, one value per round.

    A round gives each variant about ``seconds`` of CPU time, cut into ``slices`` short turns that
    alternate between the variants, so a change of load on the machine (or on the host of this VM)
    hits them alike and the per-round ratios stay meaningful."""
    repeats = {}
    for name, (function, items) in variants.items():
        repeat = 1
        while True:
            started = time.thread_time()
            for _ in range(repeat):
                for item in items:
                    function(item)
            if time.thread_time() - started > seconds / slices / 2:
                break
            repeat *= 2
        repeats[name] = repeat * 2
    rates = {name: [] for name in variants}
    for _ in range(rounds):
        spent = dict.fromkeys(variants, 0.0)
        for _ in range(slices):
            for name, (function, items) in variants.items():
                started = time.thread_time()
                for _ in range(repeats[name]):
                    for item in items:
                        function(item)
                spent[name] += time.thread_time() - started
        for name, (_, items) in variants.items():
            rates[name].append(slices * repeats[name] * len(items) / spent[name])
    return rates


def ratio(numerators: list[float], denominators: list[float]) -> dict[str, float]:
    """Median and range of the per-round ratios."""
    ratios = [top / bottom for top, bottom in zip(numerators, denominators)]
    return {"median": round(statistics.median(ratios), 2), "min": round(min(ratios), 2),
            "max": round(max(ratios), 2)}


def scapy_layers(frame: bytes) -> list:
    """scapy's layers of ``frame``, without the payload it keeps as Raw/Padding (not a header)."""
    return [layer for layer in Ether(frame).layers() if layer not in (Raw, Padding)]


def dpkt_dissect(frame: bytes) -> list:
    """dpkt to the same depth as netvirt: VXLAN and Geneve headers by struct, the rest by dpkt
    (which decodes Ethernet, IPv4/IPv6, TCP, UDP, ICMP and GRE, with NVGRE's inner Ethernet)."""
    layers = []
    packet = dpkt.ethernet.Ethernet(frame)
    while True:
        layers.append(packet)
        ip = packet.data
        if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
            return layers
        transport = ip.data
        layers += (ip, transport)
        if isinstance(transport, dpkt.gre.GRE) and isinstance(transport.data, dpkt.ethernet.Ethernet):
            packet = transport.data
        elif isinstance(transport, dpkt.udp.UDP) and transport.dport == 4789:
            flags, vni = struct.unpack_from("!II", transport.data)
            layers.append((flags, vni >> 8))
            packet = dpkt.ethernet.Ethernet(transport.data[8:])
        elif isinstance(transport, dpkt.udp.UDP) and transport.dport == 6081:
            header = transport.data
            first, flags, protocol, vni = struct.unpack_from("!BBHI", header)
            end = 8 + (first & 0x3F) * 4
            offset, options = 8, []
            while offset < end:
                option_class, option_type, length = struct.unpack_from("!HBB", header, offset)
                size = (length & 0x1F) * 4
                options.append((option_class, option_type, header[offset + 4:offset + 4 + size]))
                offset += 4 + size
            layers.append((vni >> 8, protocol, options))
            packet = dpkt.ethernet.Ethernet(header[end:])
        else:
            return layers


class ReprTuple(NamedTuple):
    src: bytes
    dst: bytes
    protocol: int
    ttl: int
    identification: int
    dont_fragment: bool
    more_fragments: bool
    fragment_offset: int
    dscp: int
    ecn: int
    options: bytes


@dataclass(frozen=True, slots=True)
class ReprDataclass:
    src: bytes
    dst: bytes
    protocol: int
    ttl: int
    identification: int
    dont_fragment: bool
    more_fragments: bool
    fragment_offset: int
    dscp: int
    ecn: int
    options: bytes


def baseline_dissect(revision: str, directory: str):
    """``netvirt.wire.dissect`` as of git ``revision``, imported next to the current package: the
    old package is imported from an extracted copy, then its modules leave ``sys.modules`` (they
    keep their references to each other) and the current ones come back. ``ValueError`` when git
    cannot archive ``revision``."""
    archive = subprocess.run(["git", "archive", revision, "src/netvirt"], cwd=ROOT, capture_output=True)
    if archive.returncode:
        raise ValueError(f"git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", directory], input=archive.stdout, check=True)
    current = {name: module for name, module in sys.modules.items() if name.partition(".")[0] == "netvirt"}
    for name in current:
        del sys.modules[name]
    sys.path.insert(0, os.path.join(directory, "src"))
    try:
        return importlib.import_module("netvirt.wire").dissect
    finally:
        sys.path.pop(0)
        for name in [name for name in sys.modules if name.partition(".")[0] == "netvirt"]:
            del sys.modules[name]
        sys.modules.update(current)


def ns_per_call(function, count: int = 100_000, rounds: int = 5) -> float:
    """Median CPU ns of one call of ``function``."""
    times = []
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(count):
            function()
        times.append(time.thread_time() - started)
    return statistics.median(times) / count * 1e9


def view_ttl_decrement_ns(rounds: int = 5) -> float:
    """Median CPU ns per ``ipv4.View.decrement_ttl`` (TTL 255 -> 1 in batches, reset between batches)."""
    frame = bytearray(build(mixed_frames()[1][0], b"q" * 40))
    view = ipv4.View(frame, 14)
    decrement = view.decrement_ttl
    times = []
    for _ in range(rounds):
        total = 0.0
        for _ in range(400):
            view.ttl = 255
            started = time.thread_time()
            for _ in range(254):
                decrement()
            total += time.thread_time() - started
        times.append(total / (400 * 254))
    assert ipv4.Repr.parse(bytes(frame[14:])).ttl == 1  # the checksum still verifies
    return statistics.median(times) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds of turns (default 9)")
    parser.add_argument("--seconds", type=float, default=0.25, help="CPU seconds per variant and round")
    parser.add_argument("--baseline", metavar="REV", help="also time dissect as of this git revision (A/B)")
    options = parser.parse_args()
    load_before = os.getloadavg()
    stacks = mixed_frames()
    frames = [build(layers, payload) for layers, payload in stacks]
    depths = [(len(dissect(frame)), len(dpkt_dissect(frame)), len(scapy_layers(frame))) for frame in frames]
    if any(len(set(depth)) != 1 for depth in depths):
        sys.exit(f"the decoders do not reach the same depth (netvirt, dpkt, scapy layers per frame): {depths}")
    variants = {"netvirt": (dissect, frames), "dpkt": (dpkt_dissect, frames), "scapy": (Ether, frames),
                "build": (lambda stack: build(*stack), stacks)}
    with tempfile.TemporaryDirectory() as directory:
        if options.baseline:
            try:
                baseline = baseline_dissect(options.baseline, directory)
            except ValueError as error:
                parser.error(f"--baseline {options.baseline}: {error}")
            for frame in frames:
                if [layer.to_dict() for layer in baseline(frame)] != to_json(dissect(frame)):
                    sys.exit(f"{options.baseline} dissects {frame.hex()} differently")
            variants["baseline"] = (baseline, frames)
        rates = measure(variants, options.rounds, options.seconds)
    fields = (b"\x0a\0\0\x01", b"\x0a\0\0\x02", 6, 64, 1, True, False, 0, 0, 0, b"")
    new = tuple.__new__
    result = {
        "benchmark": "wire",
        "python": platform.python_version(),
        "timer": "thread CPU time",
        "rounds": options.rounds,
        "frames": len(frames),
        "mix": ["tcp", "udp", "vxlan", "geneve+options", "nvgre", "vxlan/ipv6 underlay", "vxlan in vxlan"],
        "layers_per_frame": round(sum(depth[0] for depth in depths) / len(frames), 2),
        "dissect_pps_median": {name: round(statistics.median(rates[name])) for name in ("netvirt", "dpkt", "scapy")},
        "ratio_netvirt_vs_dpkt": ratio(rates["netvirt"], rates["dpkt"]),
        "ratio_netvirt_vs_scapy": ratio(rates["netvirt"], rates["scapy"]),
        "goal": {"vs_dpkt": 3, "vs_scapy": 50},
        "emit_build_pps_median": round(statistics.median(rates["build"])),
        **({"baseline": options.baseline, "ratio_netvirt_vs_baseline": ratio(rates["netvirt"], rates["baseline"])}
           if options.baseline else {}),
        "view_ttl_decrement_ns": round(view_ttl_decrement_ns(), 1),
        "repr_construction_ns": {
            "namedtuple_tuple_new": round(ns_per_call(lambda: new(ReprTuple, fields)), 1),
            "namedtuple_call": round(ns_per_call(lambda: ReprTuple(*fields)), 1),
            "dataclass_frozen_slots": round(ns_per_call(lambda: ReprDataclass(*fields)), 1),
        },
        "load_average_1m": {"start": round(load_before[0], 2), "end": round(os.getloadavg()[0], 2)},
        "cpus": os.cpu_count(),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
