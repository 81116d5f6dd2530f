"""Many hosts on one machine, every part its own process: a real etcd, `netvirt controller` and
three `netvirt agent --backend sim`. Apply the quickstart, change one endpoint, kill -9 an agent,
kill and restart etcd: everything converges again and nothing is lost. Only processes this test
started are signalled, by PID."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from control_helpers import eventually
from etcd_server import etcd, free_port  # noqa: F401 - fixture
from typer.testing import CliRunner

from netvirt.control.compile import compile_host
from netvirt.graph import to_json
from netvirt.management.cli import _register, app
from netvirt.management.spec import as_data, load, loads

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
HOSTS = ("host-a", "host-b", "host-c")


class Processes:
    """The controller and agents this test started, each logging to its own file."""

    def __init__(self, store_url: str, logs: Path) -> None:
        self.store_url = store_url
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.running[name] = subprocess.Popen([sys.executable, "-m", "netvirt", *args], stdout=log, stderr=log)

    def start_controller(self) -> None:
        self.start("controller", "controller", "--store", self.store_url, "--listen", f"127.0.0.1:{self.port}")

    def start_agent(self, host: str) -> None:
        self.start(host, "agent", "--host", host, "--store", self.store_url, "--backend", "sim")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.running.pop(name)
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop_all(self) -> None:
        """SIGTERM (then SIGKILL after 10 s) to every process still running, whatever happens."""
        for name in list(self.running):
            self.kill(name, signal.SIGTERM)

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.logs.glob("*.log")))

    # --- the controller's API ---

    def answering(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def get(self, path: str) -> dict:
        reply = httpx.get(self.url + path, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def put_spec(self, data: dict) -> dict:
        body = {"text": json.dumps(data), "filename": "spec.json"}
        reply = httpx.put(self.url + "/v1/spec", json=body, timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def converged(self, hosts=HOSTS) -> dict[str, int]:
        """Wait until every host is in sync; their desired revisions."""

        def check():
            listing = self.get("/v1/hosts")
            states = {h["host"]: h for h in listing["hosts"]}
            summary = {h: (s["state"], s["desired_revision"], (s["status"] or {}).get("realized_revision")) for h, s in states.items()}
            assert listing["converged"] and set(hosts) <= states.keys(), summary
            return states

        try:
            states = eventually(check, timeout=30, what="convergence")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.tails()}") from None
        return {host: states[host]["desired_revision"] for host in hosts}

    def realized_matches(self, spec, host: str) -> None:
        detail = self.get(f"/v1/hosts/{host}")
        assert detail["differences"] == [] and detail["realized"] == detail["desired"]
        assert detail["desired"] == json.loads(to_json(compile_host(spec, host)))


def with_third_host(data: dict) -> dict:
    """The quickstart plus host-c, running one endpoint on a network of its own."""
    data = json.loads(json.dumps(data))
    data["hosts"].append({"name": "host-c", "underlay": "192.0.2.12/24"})
    data["networks"].append({"name": "violet", "tenant": "globex", "encap": "vxlan", "subnet": "10.30.0.0/24"})
    data["endpoints"].append({"name": "batch-1", "kind": "pod", "host": "host-c", "network": "violet"})
    return data


def endpoint(data: dict, name: str) -> dict:
    return next(e for e in data["endpoints"] if e["name"] == name)


@pytest.fixture
def cluster(etcd, tmp_path: Path):
    processes = Processes(etcd.url, tmp_path)
    processes.start_controller()
    for host in HOSTS:
        processes.start_agent(host)
    try:
        eventually(processes.answering, timeout=60, what="the controller answering")
        yield processes
    except BaseException:
        print(processes.tails())
        raise
    finally:
        processes.stop_all()


def test_three_agents_converge_survive_kills_and_an_etcd_restart(cluster: Processes, etcd):
    # 1. The quickstart as it is, through the CLI: host-a and host-b converge, host-c stays idle.
    _register()
    applied = CliRunner().invoke(app, ["apply", str(QUICKSTART), "--controller", cluster.url, "--wait", "--timeout", "30"])
    assert applied.exit_code == 0, applied.output + cluster.tails()
    assert "2 changed (host-a, host-b)" in applied.stdout and "converged: 3 hosts" in applied.stdout
    states = {h["host"]: h["state"] for h in cluster.get("/v1/hosts")["hosts"]}
    assert states == {"host-a": "converged", "host-b": "converged", "host-c": "idle"}

    # 2. host-c joins with a network of its own; then one endpoint changes.
    data = with_third_host(as_data(load(QUICKSTART)))
    cluster.put_spec(data)
    first = cluster.converged()
    old_spec = loads(json.dumps(data), "spec.json")
    endpoint(data, "web-1")["listen"] = ["tcp/80", "tcp/8080"]
    new_spec = loads(json.dumps(data), "spec.json")
    result = cluster.put_spec(data)
    affected = {h for h in HOSTS if compile_host(old_spec, h) != compile_host(new_spec, h)}
    assert "host-a" in affected and "host-c" not in affected
    assert set(result["changed"]) == affected
    second = cluster.converged()
    assert {h for h in HOSTS if second[h] != first[h]} == affected, "only the affected hosts' revisions move"
    for host in HOSTS:
        cluster.realized_matches(new_spec, host)

    # 3. kill -9 host-a's agent (its simulated data plane dies with it); change host-a meanwhile.
    cluster.kill("host-a")
    endpoint(data, "client-1")["labels"] = {"app": "client", "tier": "front"}
    endpoint(data, "web-1")["listen"] = ["tcp/80"]
    cluster.put_spec(data)
    pending = {h["host"]: h["state"] for h in cluster.get("/v1/hosts")["hosts"]}
    assert pending["host-a"] == "pending"
    cluster.start_agent("host-a")
    third = cluster.converged()
    spec = loads(json.dumps(data), "spec.json")
    for host in HOSTS:
        cluster.realized_matches(spec, host)

    # 4. kill etcd and start it again on the same data: nothing lost, everyone follows again.
    etcd.stop()
    down = httpx.get(cluster.url + "/healthz", timeout=10)
    assert down.status_code == 503 and etcd.url in down.json()["detail"]
    etcd.start()
    assert cluster.converged() == third, "desired state survived the etcd restart"
    assert cluster.get("/v1/spec")["spec"] == as_data(spec)
    endpoint(data, "batch-1")["listen"] = ["tcp/9000"]
    cluster.put_spec(data)
    final = cluster.converged()
    assert final["host-c"] > third["host-c"] and final["host-a"] == third["host-a"]
    spec = loads(json.dumps(data), "spec.json")
    for host in HOSTS:
        cluster.realized_matches(spec, host)
