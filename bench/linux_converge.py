"""Linux backend converge benchmark: what an apply costs when little or nothing changes. One JSON line.

For the quickstart spec and a generated spec (HOSTS x ENDPOINTS), through ``LinuxBackend`` (one
per host, the node agent's path), in seconds for all hosts together:

- ``first_build``: fresh backends build the spec from nothing;
- ``noop_incremental``: the same backends apply the same graphs again (they trust their last
  successful apply: nothing to do);
- ``noop_full``: fresh backends (an agent restart: kernel state unknown) apply the same graphs,
  a full converge that finds everything in place;
- ``add_incremental``: those backends apply the graphs of the spec with one endpoint more;
- ``remove_incremental``: and back to the original spec;
- ``add_full``: fresh backends apply the one-endpoint-more graphs (the full converge of the same
  change);
and the ratios full / incremental. ``in_sync`` says whether each incremental result read back
equal to the desired graphs. Namespaces are prefixed ``nvt`` and always removed.

Run as root: .venv/bin/python bench/linux_converge.py [--hosts 2 --endpoints 30]
"""

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.linux.backend import LinuxBackend, network_backends
from netvirt.dataplane.linux.cleanup import cleanup
from netvirt.dataplane.linux.naming import TEST_PREFIX, Names
from netvirt.graph import DeviceKind, NetworkGraph
from netvirt.management.spec.generate import generated
from netvirt.management.spec.loader import build
from netvirt.management.spec.source import Source, read

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"


def with_endpoint(data: dict, host: str, network: str) -> dict:
    """Spec data with one more endpoint, ``extra-1``, on ``host`` in ``network``."""
    data = copy.deepcopy(data)
    data["endpoints"].append({"name": "extra-1", "kind": "container", "host": host, "network": network,
                              "labels": {"app": "web"}, "listen": ["tcp/80"]})
    return data


def compiled(data: dict) -> NetworkGraph:
    return compile_network(build(Source(data, [], "bench")))


def timed_apply(backends: dict[str, LinuxBackend], network: NetworkGraph) -> float:
    start = time.perf_counter()
    for graph in network.hosts:
        report = backends[graph.host].apply(graph)
        if not report.ok:
            raise RuntimeError(f"{graph.host}: {report.errors}")
    return time.perf_counter() - start


def in_sync(backends: dict[str, LinuxBackend], network: NetworkGraph) -> bool:
    """Whether every host reads back as its graph (sockets aside: nothing listens in a bench)."""
    return all(
        backends[graph.host].read(graph) == replace(graph, devices=tuple(
            dev for dev in graph.devices if dev.kind is not DeviceKind.SOCKET))
        for graph in network.hosts
    )


def converge_costs(label: str, data: dict, host: str, network: str, state: Path) -> dict:
    old, new = compiled(data), compiled(with_endpoint(data, host, network))
    deployment = f"cv{int(time.time() * 1000) % 10**8}"

    def fresh() -> dict[str, LinuxBackend]:
        return network_backends(old, deployment, prefix=TEST_PREFIX, state_dir=state)

    out: dict = {f"{label}_namespaces": sum(len(g.namespaces) for g in old.hosts) + len(old.segments),
                 f"{label}_devices": sum(len(g.devices) for g in old.hosts)}
    times: dict[str, float] = {}
    synced = True
    try:
        first = fresh()
        times["first_build"] = timed_apply(first, old)
        times["noop_incremental"] = timed_apply(first, old)
        restarted = fresh()
        times["noop_full"] = timed_apply(restarted, old)
        times["add_incremental"] = timed_apply(restarted, new)
        synced &= in_sync(restarted, new)
        times["remove_incremental"] = timed_apply(restarted, old)
        synced &= in_sync(restarted, old)
        times["add_full"] = timed_apply(fresh(), new)
    finally:
        cleanup(Names(deployment, TEST_PREFIX), state)
    out |= {f"{label}_{key}_s": round(value, 4) for key, value in times.items()}
    out[f"{label}_noop_full_over_incremental"] = round(times["noop_full"] / times["noop_incremental"], 1)
    out[f"{label}_add_full_over_incremental"] = round(times["add_full"] / times["add_incremental"], 1)
    out[f"{label}_in_sync"] = synced
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--endpoints", type=int, default=30)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="netvirt-bench-"))
    result: dict = {"bench": "linux_converge", "hosts": args.hosts, "endpoints_per_host": args.endpoints}
    result |= converge_costs("quickstart", read(QUICKSTART).data, "host-a", "blue", state)
    result |= converge_costs("generated", generated(args.hosts, args.endpoints), "host-1", "net-1", state)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
