"""Spec validation benchmark: one JSON line.

Loads and validates a generated spec (default 1,000 hosts x 50 endpoints = 50,000 endpoints, as
``netvirt generate`` writes it) in the variants a user meets, each the best of ``--runs`` runs:

- ``yaml``: the generated YAML, every address, MAC and VNI left to the allocator (the headline);
- ``json``: the same spec as JSON (parsed by ``json``; positions are composed only on problems);
- ``yaml_resolved``: ``netvirt generate --resolved``: every allocated value pinned in the file;
- ``in_memory``: the same data already in memory: validation and allocation without parsing.

Ratios are to ``yaml`` (CPU time). The goal (issue 3) is under 5 s (wall) for load + validate;
``load_average`` tells how busy the machine was.

    .venv/bin/python bench/validate.py [--hosts N] [--endpoints-per-host M] [--runs R]
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from netvirt.management.spec import dump, load
from netvirt.management.spec.dump import dump_data
from netvirt.management.spec.generate import generated
from netvirt.management.spec.loader import build
from netvirt.management.spec.source import Source

GOAL_S = 5.0


def best_time(run, runs: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``runs`` runs. CPU time shows what a run costs on a
    machine that other jobs keep busy, where wall time also counts the waiting."""
    best = (float("inf"), float("inf"))
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--endpoints-per-host", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = generated(args.hosts, args.endpoints_per_host)
    with tempfile.TemporaryDirectory(prefix="nvt-bench-") as tmp:
        files = {
            "yaml": Path(tmp, "generated.yaml"),
            "json": Path(tmp, "generated.json"),
            "yaml_resolved": Path(tmp, "resolved.yaml"),
        }
        files["yaml"].write_text(dump_data(data))
        files["json"].write_text(json.dumps(data))
        spec = load(files["yaml"])
        files["yaml_resolved"].write_text(dump(spec))
        timed = {name: best_time(lambda path=path: load(path), args.runs) for name, path in files.items()}
        timed["in_memory"] = best_time(lambda: build(Source(data, [], "in-memory")), args.runs)
        sizes = {name: round(path.stat().st_size / 1e6, 1) for name, path in files.items()}
    result = {
        "bench": "validate",
        "hosts": len(spec.hosts),
        "endpoints": len(spec.endpoints),
        "networks": len(spec.networks),
        "seconds": {name: round(wall, 2) for name, (wall, _) in timed.items()},
        "cpu_seconds": {name: round(cpu, 2) for name, (_, cpu) in timed.items()},
        "cpu_ratio_to_yaml": {name: round(cpu / timed["yaml"][1], 2) for name, (_, cpu) in timed.items()},
        "file_mb": sizes,
        "goal_s": GOAL_S,
        "goal_met": {name: wall < GOAL_S for name, (wall, _) in timed.items() if name != "in_memory"},
        "load_average": round(os.getloadavg()[0], 1),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
