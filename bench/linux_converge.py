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
and the ratios full / incremental. After each incremental apply, the node agent's report reads
the hosts back: ``*_realized_incremental`` is ``realized()`` (only the namespaces the apply
touched are read again), ``*_read_full`` a full read-back of the same kernel (``read``, what
``realized()`` cost before); ``realized_full`` is ``realized()`` after the restart's full
converge (everything is read). ``*_report_full_over_incremental`` compares apply + read-back,
the agent's cost per change, both ways. ``in_sync`` says whether each incremental result read
back equal to the desired graphs, and each cheap read-back equal to the full one. Namespaces are
prefixed ``nvt`` and always removed.

Run as root: .venv/bin/python bench/linux_converge.py [--hosts 2 --endpoints 30]
"""

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.linux.backend import LinuxBackend, network_backends
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.graph import DeviceKind, HostGraph, NetworkGraph
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


def timed_read(read: Callable[[LinuxBackend, HostGraph], HostGraph], backends: dict[str, LinuxBackend],
               network: NetworkGraph) -> tuple[float, dict[str, HostGraph]]:
    """Seconds to read every host back with ``read``, and what it read."""
    start = time.perf_counter()
    found = {graph.host: read(backends[graph.host], graph) for graph in network.hosts}
    return time.perf_counter() - start, found


def cheap(backend: LinuxBackend, graph: HostGraph) -> HostGraph:
    return backend.realized()


def full(backend: LinuxBackend, graph: HostGraph) -> HostGraph:
    return backend.read(graph)


def in_sync(found: dict[str, HostGraph], network: NetworkGraph) -> bool:
    """Whether every host read back as its graph (sockets aside: nothing listens in a bench)."""
    return all(found[graph.host] == replace(graph, devices=tuple(
        dev for dev in graph.devices if dev.kind is not DeviceKind.SOCKET)) for graph in network.hosts)


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
        times["realized_full"], _ = timed_read(cheap, restarted, old)
        for change, graphs in (("add", new), ("remove", old)):
            times[f"{change}_incremental"] = timed_apply(restarted, graphs)
            times[f"{change}_realized_incremental"], realized = timed_read(cheap, restarted, graphs)
            times[f"{change}_read_full"], read_back = timed_read(full, restarted, graphs)
            synced &= realized == read_back and in_sync(read_back, graphs)
        times["add_full"] = timed_apply(fresh(), new)
    finally:
        cleanup(Names(deployment, TEST_PREFIX), state)
    out |= {f"{label}_{key}_s": round(value, 4) for key, value in times.items()}
    out[f"{label}_noop_full_over_incremental"] = round(times["noop_full"] / times["noop_incremental"], 1)
    out[f"{label}_add_full_over_incremental"] = round(times["add_full"] / times["add_incremental"], 1)
    for change in ("add", "remove"):
        read_full, realized = times[f"{change}_read_full"], times[f"{change}_realized_incremental"]
        out[f"{label}_{change}_read_full_over_realized_incremental"] = round(read_full / realized, 1)
        applied = times[f"{change}_incremental"]
        out[f"{label}_{change}_report_full_over_incremental"] = round((applied + read_full) / (applied + realized), 1)
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
