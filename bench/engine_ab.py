"""Incremental compile, this checkout against another revision, interleaved in one process: one JSON line.

This VM's speed swings by a third from one minute to the next, so two benchmark runs one after the
other cannot tell a 20% change. Here the engine of revision ``--base`` (exported with ``git
archive`` into a temporary directory, its package renamed ``netvirt_base``) and this checkout's
engine are built side by side in one process on the same generated spec (``bench/control.py``'s
shape and port add), frozen, and timed turn about (``--runs`` port adds and deletes each, the
order alternating, the young generation collected after every update, as ``bench/control.py``
does). Reported: best and median CPU ms of each, and this checkout's over the base's (``ratio``:
below 1 is faster). Both engines live at once (about twice ``bench/control.py``'s memory).

    .venv/bin/python bench/engine_ab.py [--base HEAD] [--hosts 500] [--ports-per-host 50] [--runs 15]
"""

import argparse
import gc
import importlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from control import new_port  # bench/control.py: the same port add

ROOT = Path(__file__).resolve().parent.parent


def export(revision: str, into: Path) -> str:
    """Put ``revision``'s ``src/netvirt`` into ``into`` as the package ``netvirt_base``; its hash."""
    commit = subprocess.run(["git", "rev-parse", revision], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "src/netvirt"], cwd=ROOT, check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        with tarfile.open(fileobj=file) as tar:
            tar.extractall(into, filter="data")
    package = into / "netvirt_base"
    (into / "src" / "netvirt").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bnetvirt(?=[. ]|$)", "netvirt_base", text, flags=re.MULTILINE))
    return commit


def timed(run) -> float:
    cpu = time.process_time()
    run()
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the git revision to compare with (default HEAD)")
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--ports-per-host", type=int, default=50)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netvirt-ab-") as scratch:
        commit = export(args.base, Path(scratch))
        sys.path.insert(0, scratch)
        variants = {}
        for name, package in (("base", "netvirt_base"), ("this", "netvirt")):
            spec = importlib.import_module(f"{package}.management.spec").generate(args.hosts, args.ports_per_host)
            engine = importlib.import_module(f"{package}.control.compile").Engine(spec)
            variants[name] = (spec, engine)
        gc.collect()
        gc.freeze()
        times: dict[str, dict[str, list[float]]] = {name: {"add": [], "delete": []} for name in variants}
        for number in range(args.runs):
            for name in ("base", "this") if number % 2 else ("this", "base"):
                spec, engine = variants[name]
                grown = spec.model_copy(update={"endpoints": (*spec.endpoints, new_port(spec, number))})
                times[name]["add"].append(timed(lambda: engine.update(grown)))
                gc.collect(1)
                times[name]["delete"].append(timed(lambda: engine.update(spec)))
                gc.collect(1)
    result: dict[str, object] = {"bench": "engine_ab", "base": commit[:12], "hosts": args.hosts, "runs": args.runs}
    for change in ("add", "delete"):
        for name in variants:
            ordered = sorted(times[name][change])
            result[f"{name}_{change}_ms"] = {"best": round(ordered[0] * 1000, 2), "median": round(ordered[len(ordered) // 2] * 1000, 2)}
        best = min(times["this"][change]) / min(times["base"][change])
        median = sorted(times["this"][change])[args.runs // 2] / sorted(times["base"][change])[args.runs // 2]
        result[f"ratio_{change}"] = {"best": round(best, 3), "median": round(median, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
