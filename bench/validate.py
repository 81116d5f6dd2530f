"""Spec validation benchmark: one JSON line.

Loads and validates a generated spec (default 1,000 hosts x 50 endpoints = 50,000 endpoints, as
``netvirt generate`` writes it) in the variants a user meets, each the best of ``--runs`` runs:

- ``yaml``: the generated YAML, every address, MAC and VNI left to the allocator (the headline);
- ``json``: the same spec as JSON (parsed by ``json``; positions are composed only on problems);
- ``yaml_resolved``: ``netvirt generate --resolved``: every allocated value pinned in the file;
- ``in_memory``: the same data already in memory: validation and allocation without parsing.

Ratios are to ``yaml``. The goal (issue 3) is under 5 s for load + validate.

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


def best_time(run, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
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
        seconds = {name: best_time(lambda path=path: load(path), args.runs) for name, path in files.items()}
        seconds["in_memory"] = best_time(lambda: build(Source(data, [], "in-memory")), args.runs)
        sizes = {name: round(path.stat().st_size / 1e6, 1) for name, path in files.items()}
    result = {
        "bench": "validate",
        "hosts": len(spec.hosts),
        "endpoints": len(spec.endpoints),
        "networks": len(spec.networks),
        "seconds": {name: round(value, 2) for name, value in seconds.items()},
        "ratio_to_yaml": {name: round(value / seconds["yaml"], 2) for name, value in seconds.items()},
        "file_mb": sizes,
        "goal_s": GOAL_S,
        "goal_met": {name: value < GOAL_S for name, value in seconds.items() if name != "in_memory"},
        "load_average": round(os.getloadavg()[0], 1),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
