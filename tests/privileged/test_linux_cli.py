"""The kernel commands end to end, as a user runs them (``python -m netvirt``, prefix nvt and a
private state directory through $NETVIRT_PREFIX / $NETVIRT_STATE_DIR): kill -9 in the middle of
``up`` then ``down`` leaves nothing; ``up`` converges from the wreck; status, exec and capture;
a spec the kernel cannot realise is refused with exit 2 and nothing is created.
tests/management/test_cli_linux.py has the bad-input cases that need no kernel."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.naming import TEST_PREFIX, deployment_name
from netvirt.management.spec import load
from netvirt.wire import dissect, pcap

QUICKSTART = Path("examples/quickstart.yaml").read_text()
WEB_2 = str(load("examples/quickstart.yaml").endpoint("web-2").attachments[0].ip)


@pytest.fixture
def env(tmp_path):
    """The environment for the CLI: test prefix, a private state directory."""
    return {**os.environ, "NETVIRT_PREFIX": TEST_PREFIX, "NETVIRT_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture
def spec(tmp_path, env):
    """examples/quickstart.yaml under a unique name; whatever the test builds is removed after."""
    name = f"t{secrets.token_hex(3)}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(QUICKSTART.replace("name: quickstart", f"name: {name}"))
    yield path
    netvirt(env, "down", str(path))
    assert namespaces(name) == []


def netvirt(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netvirt", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def namespaces(spec_name: str) -> list[str]:
    return [name for name in netns.names() if name.startswith(f"{TEST_PREFIX}-{deployment_name(spec_name)}-")]


def root_links() -> list[str]:
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True)
    return sorted(line.split(":")[1].strip() for line in done.stdout.splitlines())


def test_kill_9_during_up_then_down_leaves_nothing(spec, env):
    before = root_links()
    journal = Path(env["NETVIRT_STATE_DIR"]) / f"{deployment_name(spec.stem)}.jsonl"
    up = subprocess.Popen([sys.executable, "-m", "netvirt", "up", str(spec)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and up.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 15:
            break  # in the middle of building
        time.sleep(0.01)
    up.send_signal(signal.SIGKILL)
    up.wait()
    assert up.returncode == -signal.SIGKILL, "up finished before it could be killed"
    assert namespaces(spec.stem), "nothing was built before the kill"
    done = netvirt(env, "down", str(spec), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deployments"][0]["removed"]
    assert namespaces(spec.stem) == []
    assert not journal.exists()
    assert root_links() == before  # netvirt never touches the namespace it runs in


def test_up_converges_from_a_killed_up_then_status_exec_capture_drift(spec, env, tmp_path):
    up = subprocess.Popen([sys.executable, "-m", "netvirt", "up", str(spec)], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = Path(env["NETVIRT_STATE_DIR"]) / f"{deployment_name(spec.stem)}.jsonl"
    while up.poll() is None and not (journal.exists() and len(journal.read_text().splitlines()) >= 25):
        time.sleep(0.01)
    up.send_signal(signal.SIGKILL)
    up.wait()
    done = netvirt(env, "up", str(spec), "--format", "json")
    assert done.returncode == 0, done.stderr
    assert {host["state"] for host in json.loads(done.stdout)["hosts"]} == {"converged"}
    status = netvirt(env, "status", str(spec), "--format", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["in_sync"] is True
    exec_ = netvirt(env, "exec", str(spec), "web-1", "--", "ip", "-br", "addr", "show", "eth0")
    assert exec_.returncode == 0 and "10.10.0.20/24" in exec_.stdout
    assert netvirt(env, "exec", str(spec), "client-1", "--", "ping", "-c1", "-W1", "10.20.0.65").returncode == 1
    # capture on the underlay while client-1 pings web-2 on the other host
    out = tmp_path / "underlay.pcap"
    capture = subprocess.Popen([sys.executable, "-m", "netvirt", "capture", str(spec), "underlay", "-w", str(out),
                                "--count", "4", "--duration", "20", "-q"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "capturing on" not in capture.stderr.readline():
        pass
    netvirt(env, "exec", str(spec), "client-1", "--", "ping", "-c3", "-i", "0.2", WEB_2)
    capture.wait(timeout=30)
    kinds = [[layer.to_dict()["layer"] for layer in dissect(frame.data)] for frame in pcap.read(out)]
    assert len(kinds) == 4
    assert all("vxlan" in layers or "arp" in layers or "icmpv6" in layers for layers in kinds), kinds  # ARP; the outside world's IPv6 ND
    assert sum("vxlan" in layers for layers in kinds) >= 2, kinds
    verify = netvirt(env, "verify", str(spec), "--all", "--format", "json")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    report = json.loads(verify.stdout)
    assert report["agree"] is True and len(report["flows"]) == 42
    # drift: a deleted veth is reported (exit 1), the next up repairs it
    kernel = f"{TEST_PREFIX}-{deployment_name(spec.stem)}-host-b"
    netns.run(kernel, ["ip", "link", "del", "ve-web-2-0"])
    status = netvirt(env, "status", str(spec))
    assert status.returncode == 1 and "missing device host-b/ve-web-2-0" in status.stdout
    assert netvirt(env, "up", str(spec)).returncode == 0
    assert netvirt(env, "status", str(spec)).returncode == 0


def test_refused_specs_create_nothing(env):
    done = netvirt(env, "up", "examples/encapsulations.yaml", "--backend", "linux")
    assert done.returncode == 2
    assert "device 'geneve-gen' (geneve) cannot be realised by backend 'linux'" in done.stderr
    assert "backends that can: sim" in done.stderr and "nothing was created" in done.stderr
    assert namespaces("encapsulations") == []
    assert not (Path(env["NETVIRT_STATE_DIR"]) / "encapsulations.jsonl").exists()


def test_demo_builds_verifies_talks_and_tears_down(env):
    before = set(netns.names())
    done = netvirt(env, "demo")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    out = done.stdout
    expected = [
        "Predicted walkthrough", "21 of 42 allowed",  # the simulator's part (6 flows to the outside world)
        "42 of 42 flows: the kernel did what the simulator predicted",
        "hello from web-2 on host-b", "hello from web-1 on host-a",  # across the overlay, and the VIP's two backends
        "connected: db-1 says hello", "no answer (dropped)", "refused (TCP reset)", "Torn down",
    ]
    assert [text for text in expected if text not in out] == [], out[-5000:]
    assert [name for name in set(netns.names()) - before if name.startswith(f"{TEST_PREFIX}-demo")] == []


def test_demo_without_cap_net_admin_stays_in_the_simulator(env):
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "netvirt", "demo"]
    done = subprocess.run(nobody, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "21 of 42 allowed" in done.stdout
    assert "lacks CAP_NET_ADMIN, so the demo stays in the simulator" in done.stdout
