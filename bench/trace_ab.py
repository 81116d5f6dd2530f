"""Simulator walks, this checkout against another revision, interleaved in one process: one JSON line.

Two benchmark runs one after the other cannot tell a 20% change on this shared machine (see
``bench/engine_ab.py``, whose ``export`` this reuses: revision ``--base`` becomes the package
``netvirt_base``). Both simulators are built on the same specs and timed turn about, the order
alternating each round, in CPU time of this process:

- ``walk``: uncached traces of the quickstart VXLAN path (web-1 -> web-2, tcp/80) — the full walk
  with ARP, the destination's answer and the anomaly checks (``bench/trace.py``'s "uncached"),
  ``--walks`` per round over distinct source ports;
- ``reach``: the ``reach`` probes of a generated spec (``--hosts`` x ``--endpoints-per-host``),
  unrecorded walks on a warm network (``bench/trace.py``'s "reach" minus compile).

Reported: best and median seconds per round of each and this checkout's over the base's
(``ratio``: below 1 is faster).

    .venv/bin/python bench/trace_ab.py [--base main] [--rounds 7] [--walks 200] [--hosts 6] [--endpoints-per-host 6]
"""

import argparse
import dataclasses
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

from engine_ab import export  # bench/engine_ab.py


def workloads(package: str, args) -> dict:
    """The two timed jobs of one revision, as callables."""
    compile_network = importlib.import_module(f"{package}.control.compile").compile_network
    spec_module = importlib.import_module(f"{package}.management.spec")
    trace = importlib.import_module(f"{package}.trace")
    try:
        plan = importlib.import_module(f"{package}.trace.plan")
        planner, probes_of = (lambda spec: plan.plan_trace(spec, "web-1", "web-2", None, None, 40000, None,
                                                           compile=compile_network)), plan.reach_probes
    except ModuleNotFoundError:  # before issue 11 the planning lived in the CLI
        cli = importlib.import_module(f"{package}.management.cli.trace")
        planner, probes_of = (lambda spec: cli.plan_trace(spec, "web-1", "web-2", None, None, 40000, None)), \
            cli.reach_probes
    quickstart = spec_module.load("examples/quickstart.yaml")
    tracer, flow, skip = planner(quickstart)
    flows = [dataclasses.replace(flow, src_port=30000 + i) for i in range(args.walks)]
    uncached = trace.Tracer(tracer.topology.network, capacity=0)
    generated = spec_module.generate(args.hosts, args.endpoints_per_host)
    probes = probes_of(generated)
    network = compile_network(generated)

    def walk() -> None:
        for item in flows:
            assert uncached.trace(item, skip=skip).disposition.value == "delivered"

    def reach() -> None:
        trace.reach(trace.Tracer(network), probes)

    return {"walk": walk, "reach": reach}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the git revision to compare with (default main)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--walks", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=6)
    parser.add_argument("--endpoints-per-host", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netvirt-trace-ab-") as scratch:
        commit = export(args.base, Path(scratch))
        sys.path.insert(0, scratch)
        jobs = {name: workloads(package, args) for name, package in (("base", "netvirt_base"), ("this", "netvirt"))}
        times: dict[str, dict[str, list[float]]] = {name: {"walk": [], "reach": []} for name in jobs}
        for number in range(args.rounds):
            for name in ("base", "this") if number % 2 else ("this", "base"):
                for job, run in jobs[name].items():
                    cpu = time.process_time()
                    run()
                    times[name][job].append(time.process_time() - cpu)
    result: dict[str, object] = {"bench": "trace_ab", "base": commit[:12], "rounds": args.rounds, "walks": args.walks,
                                 "hosts": args.hosts, "endpoints_per_host": args.endpoints_per_host}
    middle = args.rounds // 2
    for job in ("walk", "reach"):
        for name in jobs:
            ordered = sorted(times[name][job])
            result[f"{name}_{job}_s"] = {"best": round(ordered[0], 4), "median": round(ordered[middle], 4)}
        this, base = sorted(times["this"][job]), sorted(times["base"][job])
        result[f"ratio_{job}"] = {"best": round(this[0] / base[0], 3), "median": round(this[middle] / base[middle], 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
