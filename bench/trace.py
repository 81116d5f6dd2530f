"""Trace and reachability throughput of the simulator. Prints ONE JSON line.

- traces/s through the 2-host VXLAN path of examples/quickstart.yaml (web-1 on host-a to web-2 on
  host-b, tcp/80): a workload of ``--traces`` traces over ``--flows`` distinct flows (source ports),
  with the tracer's flow cache (hit ratio reported) and without it (every trace walked from
  fresh state; the first 1,000 of the workload), side by side; table output is not rendered (like `netvirt trace` without --detail
  minus printing).
- ``netvirt reach`` on a generated spec of ``--hosts`` x ``--endpoints-per-host`` endpoints
  (default 10 x 10 = 100 endpoints, 10,000 probes): compile + all probes, wall and CPU seconds.

Reproduce: .venv/bin/python bench/trace.py   (options: --traces --flows --hosts --endpoints-per-host)
"""

import argparse
import dataclasses
import json
import time

from netvirt.control.compile import compile_network
from netvirt.trace.plan import plan_trace, reach_network, reach_probes
from netvirt.management.spec import generate, load
from netvirt.trace import Tracer, reach


def traces(count: int, flows: int) -> dict:
    spec = load("examples/quickstart.yaml")
    tracer, flow, skip = plan_trace(spec, "web-1", "web-2", None, None, 40000, None, compile=compile_network)
    workload = [dataclasses.replace(flow, src_port=40000 + i % flows) for i in range(count)]
    results = {}
    uncached = Tracer(tracer.topology.network, capacity=0)
    for name, current, sample in (("cached", tracer, workload), ("uncached", uncached, workload[:1000])):
        start = time.perf_counter()
        cpu = time.process_time()
        for item in sample:
            trace = current.trace(item, skip=skip)
        wall = time.perf_counter() - start
        results[name] = {"traces_per_s": round(len(sample) / wall),
                         "cpu_traces_per_s": round(len(sample) / (time.process_time() - cpu))}
        assert trace.disposition.value == "delivered"
    return {
        "path": "quickstart web-1 -> web-2 (VXLAN, 2 hosts)",
        "hops": len(trace.hops),
        "traces": count,
        "flows": flows,
        "cached_traces_per_s": results["cached"]["traces_per_s"],
        "cached_cpu_traces_per_s": results["cached"]["cpu_traces_per_s"],
        "hit_ratio": round(tracer.hit_ratio, 4),
        "uncached_traces_per_s": results["uncached"]["traces_per_s"],
        "uncached_cpu_traces_per_s": results["uncached"]["cpu_traces_per_s"],
        "cached_vs_uncached": round(results["cached"]["traces_per_s"] / results["uncached"]["traces_per_s"], 1),
    }


def reachability(hosts: int, per_host: int) -> dict:
    spec = generate(hosts, per_host)
    start, cpu = time.perf_counter(), time.process_time()
    network = compile_network(spec)
    compiled = time.perf_counter() - start
    probes = reach_probes(spec)
    results = reach(Tracer(reach_network(network)), probes)  # with the outside world the probes reach
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "endpoints": len(spec.endpoints),
        "probes": len(probes),
        "allowed": sum(r.allowed for r in results),
        "compile_s": round(compiled, 3),
        "reach_s": round(wall, 3),
        "reach_cpu_s": round(cpu, 3),
        "probes_per_s": round(len(probes) / (wall - compiled)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20000)
    parser.add_argument("--flows", type=int, default=100)
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--endpoints-per-host", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps({"bench": "trace", "trace": traces(args.traces, args.flows),
                      "reach": reachability(args.hosts, args.endpoints_per_host)}))


if __name__ == "__main__":
    main()
