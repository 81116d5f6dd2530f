"""Control-plane compile benchmark: one JSON line.

An OVN-shaped topology (``netvirt generate``: default 500 hosts x 50 ports, networks of 10 hosts,
two tenants, one distributed router per tenant, a policy per network, services): the time of a
full compile (``compile_network``), and of the incremental engine (``Engine.update``) for one port
add and one port delete, each the best and the median of ``--runs``. The engine is built and timed
first, in a process that has built nothing else (as a controller's would; a full compile's two
million freed objects first would scatter the engine's in memory), then the full compile is timed
and checked equal to the engine's graphs. As a long-lived controller
would, the script freezes the engine's millions of objects (``gc.freeze()``) after building it, so
the cyclic garbage collector's full passes skip them; ``Engine.update`` pauses the collector, and
the young-generation collection it leaves for later is run and timed after every add and delete
(``deferred_gc_ms``: else the next update's first allocation would run it, inside the next
timing), and so is
``graph.to_json`` of the changed hosts (what the controller then serialises and publishes).
The goal (issue 5) is incremental at least 100x faster than full and under 10 ms; the anchor is
ovn-northd, whose incremental processing took a VIF add on this shape from 773 ms to 30 ms. Times
are CPU seconds of this process (the machine may be shared: ``load_average`` says how busy it was,
``reference_loop_ms`` how fast it ran Python), wall times beside them.

    .venv/bin/python bench/control.py [--hosts N] [--ports-per-host M] [--runs R]
"""

import argparse
import gc
import json
import os
import platform
import time

from netvirt.control.compile import Engine, compile_network
from netvirt.graph import to_json
from netvirt.management.spec import Endpoint, Spec, generate

GOAL_RATIO = 100
GOAL_MS = 10.0


def reference_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop: how fast this machine runs Python right now."""
    best = float("inf")
    for _ in range(5):
        cpu = time.process_time()
        sum(i * i for i in range(200_000))
        best = min(best, time.process_time() - cpu)
    return best * 1000


def timed(run) -> tuple[float, float, object]:
    """(CPU seconds, wall seconds, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def new_port(spec: Spec, number: int) -> Endpoint:
    """A resolved port on host-1's network with addresses and a MAC no one else has."""
    template = spec.endpoints[1]
    network = spec.network(template.attachments[0].network)
    used = {a.ip for e in spec.endpoints for a in e.attachments if a.network == network.name}
    used6 = {a.ip6 for e in spec.endpoints for a in e.attachments if a.network == network.name}
    ip = next(a for a in network.subnet.hosts() if a not in used and a != network.gateway)  # type: ignore[union-attr]
    ip6 = next(a for a in network.subnet6.hosts() if a not in used6 and a != network.gateway6)  # type: ignore[union-attr]
    mac = ":".join(f"{b:02x}" for b in (0x02, 0xBE, 0x4C, 0, number >> 8 & 0xFF, number & 0xFF))
    attachment = template.attachments[0].model_copy(update={"ip": ip, "ip6": ip6, "mac": mac})
    return template.model_copy(update={"name": f"bench-port-{number}", "attachments": (attachment,)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--ports-per-host", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    spec = generate(args.hosts, args.ports_per_host)
    build_cpu, _, engine = timed(lambda: Engine(spec))
    gc.collect()
    gc.freeze()
    adds, deletes, collections, changed = [], [], [], 0
    for number in range(args.runs):
        port = new_port(spec, number)
        grown = spec.model_copy(update={"endpoints": (*spec.endpoints, port)})
        cpu, wall, result = timed(lambda: engine.update(grown))
        adds.append((cpu, wall))
        changed = len(result)  # type: ignore[arg-type]
        collections.append(timed(lambda: gc.collect(1))[0])
        cpu, wall, _ = timed(lambda: engine.update(spec))
        deletes.append((cpu, wall))
        collections.append(timed(lambda: gc.collect(1))[0])  # else the next add would pay for it
    encode_cpu, _, _ = timed(lambda: [to_json(graph) for graph in result.values()])  # type: ignore[union-attr]
    full_cpu, full_wall, network = timed(lambda: compile_network(spec))
    assert engine.graphs == {g.host: g for g in network.hosts}  # type: ignore[union-attr]  # back at spec
    adds.sort()
    deletes.sort()
    add_cpu, add_wall = adds[0]
    delete_cpu, delete_wall = deletes[0]
    result = {
        "bench": "control",
        "hosts": args.hosts,
        "ports": len(spec.endpoints),
        "networks": len(spec.networks),
        "full_compile_s": round(full_cpu, 3),
        "full_compile_wall_s": round(full_wall, 3),
        "engine_build_s": round(build_cpu, 3),
        "port_add_ms": round(add_cpu * 1000, 3),
        "port_add_wall_ms": round(add_wall * 1000, 3),
        "port_add_median_ms": round(adds[len(adds) // 2][0] * 1000, 3),
        "port_delete_ms": round(delete_cpu * 1000, 3),
        "port_delete_wall_ms": round(delete_wall * 1000, 3),
        "port_delete_median_ms": round(deletes[len(deletes) // 2][0] * 1000, 3),
        "deferred_gc_ms": round(sorted(collections)[len(collections) // 2] * 1000, 3),
        "hosts_changed_per_port": changed,
        "to_json_ms_per_changed_host": round(encode_cpu * 1000 / max(changed, 1), 2),
        "port_add_us_per_changed_host": round(add_cpu * 1e6 / max(changed, 1), 1),
        "speedup_add": round(full_cpu / add_cpu, 1),
        "speedup_delete": round(full_cpu / delete_cpu, 1),
        "goal": f">= {GOAL_RATIO}x and < {GOAL_MS} ms",
        "goal_met": min(full_cpu / add_cpu, full_cpu / delete_cpu) >= GOAL_RATIO
        and max(add_cpu, delete_cpu) * 1000 < GOAL_MS,
        "anchor_ovn_northd_ms": {"full": 773, "incremental": 30},
        "load_average": round(os.getloadavg()[0], 2),
        "reference_loop_ms": round(reference_ms(), 2),
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
