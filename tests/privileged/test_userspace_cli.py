"""The userspace backend through the CLI, as a user runs it (prefix nvt, private state directory):
``up --backend userspace`` with examples/encapsulations.yaml (Geneve and NVGRE, which this
kernel cannot build), ``status`` with the switch's counters, ``verify --all`` agreeing with the
simulator, ``trace --backend userspace`` with user-mode hops, and ``down`` leaving no process,
namespace or record."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.naming import TEST_PREFIX, deployment_name

ENCAPSULATIONS = Path("examples/encapsulations.yaml").read_text()


def netvirt(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netvirt", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def deployed(tmp_path):
    """encapsulations.yaml under a unique name, up with the userspace backend; down after."""
    env = {**os.environ, "NETVIRT_PREFIX": TEST_PREFIX, "NETVIRT_STATE_DIR": str(tmp_path / "state")}
    name = f"t{secrets.token_hex(3)}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(ENCAPSULATIONS.replace("name: encapsulations", f"name: {name}"))
    up = netvirt(env, "up", str(path), "--backend", "userspace", "--format", "json")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield env, path
    finally:
        netvirt(env, "down", str(path))


def switch_pids(state: Path) -> list[int]:
    return [pid for record in state.glob("userspace/*/*.pids.json")
            for pid in json.loads(record.read_text()).values() if isinstance(pid, int) and pid > 1]


def test_up_status_verify_trace_down(deployed):
    env, path = deployed
    state = Path(env["NETVIRT_STATE_DIR"])
    status = netvirt(env, "status", str(path), "--format", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    hosts = [h for h in json.loads(status.stdout)["hosts"] if h["host"] != "internet"]  # the outside world: kernel
    assert {h["backend"] for h in hosts} == {"userspace"} and all(h["state"] == "in sync" for h in hosts)
    assert all(h["switch"]["mode"] == "adaptive" and len(h["switch"]["ports"]) == 4 for h in hosts)
    verify = netvirt(env, "verify", str(path), "--all", "--format", "json")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    report = json.loads(verify.stdout)
    assert report["agree"] is True and len(report["flows"]) == 36  # 6 of them to the outside world
    trace = netvirt(env, "trace", str(path), "--from", "gen-a", "--to", "gen-b", "--backend", "userspace",
                    "--format", "json")
    assert trace.returncode == 0, trace.stderr
    hops = json.loads(trace.stdout)["hops"]
    assert any(h["mode"] == "User" and "Userspace Encapsulation (Geneve" in h["technique"] for h in hops)
    assert "kernel_bypass" in {a["kind"] for a in json.loads(trace.stdout)["anomalies"]}
    pids = switch_pids(state)
    assert len(pids) == 4  # a supervisor and a switch per host
    down = netvirt(env, "down", str(path))
    assert down.returncode == 0, down.stderr
    deployment = deployment_name(path.stem)
    assert [n for n in netns.names() if n.startswith(f"{TEST_PREFIX}-{deployment}-")] == []
    assert not any(Path(f"/proc/{pid}/cmdline").exists() and b"netvirt.dataplane.userspace" in
                   Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids)
    assert switch_pids(state) == []
