"""Control-plane latency benchmark: one JSON line — apply -> every agent realized, embedded vs etcd.

For each store (the embedded SQLite file, and a real etcd started here with scripts/etcd on free
loopback ports, killed by its PID at the end) the same machinery runs: a controller and one agent
per host (sim backend, in threads of this process: 100 agent processes would not fit 2 cores).
Measured, from the moment ``apply`` is called until every changed host's agent reported that
revision realized (observed by watching the status keys, not by polling):

- ``initial``: the whole spec to hosts that have nothing yet;
- ``one_endpoint``: one endpoint's listen ports change (median of --repeat runs; the changed
  hosts are those whose compiled graph differs);
- ``apply_ms``: how much of that is the controller's apply call (compile + one transaction);
- ``cpu_ms``: CPU time this process spent (controller and agents; etcd's own CPU not included) —
  steadier than wall time on a busy machine.

    .venv/bin/python bench/control_latency.py [--hosts 100] [--endpoints 5] [--repeat 5]
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from netvirt.control.controller import Embedded
from netvirt.control.state import STATUS, AgentStatus, host_of
from netvirt.control.store import Store, open_store
from netvirt.management.spec import Spec, as_data, loads
from netvirt.management.spec.generate import generated

ROOT = Path(__file__).resolve().parents[1]


def spec_with_port(data: dict, port: int) -> Spec:
    endpoint = data["endpoints"][0]
    endpoint["listen"] = ["tcp/80", f"tcp/{port}"]
    return loads(json.dumps(data), "bench.json")


def timed_apply(embedded: Embedded, store: Store, spec: Spec) -> dict[str, float]:
    """Apply ``spec``; wait until every changed host reports it realized; the timings in ms."""
    start_revision = store.revision() + 1
    with store.watch(STATUS, start_revision) as watch:
        started, cpu = time.perf_counter(), time.process_time()
        result = embedded.apply(spec)
        applied = time.perf_counter()
        waiting = set(result.changed)
        while waiting:
            for event in watch.next(60):
                status = AgentStatus.from_json(event.value)
                if status.realized_revision >= result.revision:
                    waiting.discard(host_of(event.key))
            if time.perf_counter() - started > 120:
                raise TimeoutError(f"hosts not realized after 120s: {sorted(waiting)[:5]}")
        done, cpu = time.perf_counter(), time.process_time() - cpu
    return {
        "apply_ms": round((applied - started) * 1000, 2),
        "realized_ms": round((done - started) * 1000, 2),
        "cpu_ms": round(cpu * 1000, 2),
        "changed_hosts": len(result.changed),
    }


def run(url: str, hosts: int, endpoints: int, repeat: int) -> dict[str, object]:
    data = generated(hosts, endpoints)
    with Embedded(open_store(url), "sim") as embedded, open_store(url) as observer:
        initial = timed_apply(embedded, observer, loads(json.dumps(data), "bench.json"))
        changes = [timed_apply(embedded, observer, spec_with_port(data, 9000 + i)) for i in range(repeat)]
        last = embedded.controller.current()
        assert last is not None and as_data(last.spec)["endpoints"][0]["listen"][-1] == f"tcp/{9000 + repeat - 1}"
        embedded.wait_converged(60)
    return {
        "initial": initial,
        "one_endpoint": {
            "apply_ms": round(statistics.median(c["apply_ms"] for c in changes), 2),
            "realized_ms": round(statistics.median(c["realized_ms"] for c in changes), 2),
            "cpu_ms": round(statistics.median(c["cpu_ms"] for c in changes), 2),
            "changed_hosts": changes[0]["changed_hosts"],
        },
    }


class Etcd:
    """A real etcd on free loopback ports in a temp dir (scripts/etcd), stopped by its PID."""

    def __init__(self, data_dir: Path) -> None:
        import socket

        ports = []
        for _ in range(2):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                ports.append(sock.getsockname()[1])
        self.client, peer = ports
        self.url = f"etcd://127.0.0.1:{self.client}"
        self.process = subprocess.Popen(
            [str(ROOT / "scripts" / "etcd"), str(self.client), str(peer), str(data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.client}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("etcd did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=5, help="endpoints per host")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nvt-bench-") as tmp:
        embedded = run(f"sqlite://{tmp}/store.db", args.hosts, args.endpoints, args.repeat)
        etcd = Etcd(Path(tmp) / "etcd")
        try:
            remote = run(etcd.url, args.hosts, args.endpoints, args.repeat)
        finally:
            etcd.stop()
    ratio = {
        name: round(remote[name]["realized_ms"] / embedded[name]["realized_ms"], 2)  # type: ignore[index]
        for name in ("initial", "one_endpoint")
    }
    result = {
        "bench": "control_latency",
        "hosts": args.hosts,
        "endpoints_per_host": args.endpoints,
        "sqlite": embedded,
        "etcd": remote,
        "etcd_over_sqlite_realized": ratio,
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
