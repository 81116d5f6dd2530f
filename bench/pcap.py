"""Capture file benchmark: one JSON line.

On one capture of tunnelled and plain frames (VXLAN, Geneve with an option, NVGRE, IPv4 and IPv6
underlays, the plain inner frame), written by netvirt, it compares reading with netvirt's
``pcap.read`` and with dpkt's readers (classic pcap, and pcapng converted by ``editcap`` when it is
installed), writing with netvirt's ``Writer`` and dpkt's, and measures ``netvirt pcap show``'s
per-frame work (dissect + one text line, dissect + JSON entry). Ratios are netvirt / dpkt.

    .venv/bin/python bench/pcap.py [--frames N]
"""

import argparse
import io
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt

from netvirt.management.cli.demo import ENCAPSULATIONS, NODE_1, NODE_2, VNI, inner_syn
from netvirt.management.cli.pcap import frame_json, frame_line
from netvirt.wire import encapsulate, pcap

BASE_NS = 1_700_000_000_000_000_000


def story_frames() -> list[bytes]:
    inner = inner_syn()
    frames = [inner]
    for _, encap, extra in ENCAPSULATIONS:
        for column in (1, 2):
            frames.append(encapsulate(
                inner, encap=encap, vni=VNI, outer_src=NODE_1[column], outer_dst=NODE_2[column],
                outer_src_mac=NODE_1[0], outer_dst_mac=NODE_2[0], **extra,
            ))  # fmt: skip
    return frames


def best_rate(count: int, run, repeats: int = 3) -> float:
    """Items per second of the fastest of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30_000)
    count = parser.parse_args().frames
    story = story_frames()
    frames = [story[i % len(story)] for i in range(count)]
    results: dict[str, object] = {"frames": count, "python": platform.python_version()}

    with tempfile.TemporaryDirectory(prefix="netvirt-bench-") as folder:
        classic = Path(folder) / "mix.pcap"

        def netvirt_write(target=classic) -> None:
            with pcap.Writer(target) as writer:
                for number, frame in enumerate(frames):
                    writer.write(frame, BASE_NS + number * 1000)

        def dpkt_write() -> None:
            writer = dpkt.pcap.Writer(io.BytesIO())
            for number, frame in enumerate(frames):
                writer.writepkt(frame, ts=BASE_NS / 1e9 + number / 1e6)

        results["write_netvirt_fps"] = round(best_rate(count, netvirt_write))
        results["write_dpkt_fps"] = round(best_rate(count, dpkt_write))
        assert [f.data for f in pcap.read(classic)] == frames

        def netvirt_read(path: Path) -> None:
            for _ in pcap.read(path):
                pass

        def dpkt_read(path: Path, reader) -> None:
            with open(path, "rb") as file:
                for _ in reader(file):
                    pass

        results["read_pcap_netvirt_fps"] = round(best_rate(count, lambda: netvirt_read(classic)))
        results["read_pcap_dpkt_fps"] = round(
            best_rate(count, lambda: dpkt_read(classic, dpkt.pcap.Reader))
        )
        editcap = shutil.which("editcap")
        if editcap:
            ng = Path(folder) / "mix.pcapng"
            command = [editcap, "-F", "pcapng", str(classic), str(ng)]
            subprocess.run(command, check=True, capture_output=True)
            results["read_pcapng_netvirt_fps"] = round(best_rate(count, lambda: netvirt_read(ng)))
            results["read_pcapng_dpkt_fps"] = round(
                best_rate(count, lambda: dpkt_read(ng, dpkt.pcapng.Reader))
            )

        read_back = list(pcap.read(classic))
        results["show_text_fps"] = round(
            best_rate(count, lambda: [frame_line(f) for f in read_back])
        )
        results["show_json_fps"] = round(
            best_rate(count, lambda: [json.dumps(frame_json(f)) for f in read_back])
        )

    for kind in ("write", "read_pcap", "read_pcapng"):
        if f"{kind}_dpkt_fps" in results:
            ratio = results[f"{kind}_netvirt_fps"] / results[f"{kind}_dpkt_fps"]
            results[f"{kind}_ratio"] = round(ratio, 2)
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
