"""Safe kernel operations (issue 15), as a user runs them: a deployment belongs to the spec that
built it (another spec with the same name is refused by ``up`` and ``down``, exit 2, nothing
touched; ``--replace`` takes it over); an empty spec returns at once; ``verify`` with a
hand-deleted veth reports the drift and completes; ``up`` counts devices as ``status`` does;
``--deployment`` reaches a network built apart from the spec's name (as agents build one), the
underlay capture is in timestamp order, and ``status`` without a spec lists the deployments."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from linux_network import bring_up, tear_down
from test_linux_cli import WEB_2, env, namespaces, netvirt, spec  # noqa: F401 (fixtures)

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.naming import TEST_PREFIX, deployment_name
from netvirt.management.spec import load
from netvirt.wire import pcap


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_another_spec_with_the_same_name_is_refused_and_the_first_stays_intact(spec, env, tmp_path):
    first = netvirt(env, "up", str(spec), "--format", "json")
    assert first.returncode == 0, first.stderr
    built = sorted(namespaces(spec.stem))
    other = tmp_path / "other" / spec.name
    other.parent.mkdir()
    other.write_text(spec.read_text().replace("web-2", "web-9"))  # same name, another network
    for command in ("up", "down"):
        refused = netvirt(env, command, str(other))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"belongs to spec '{spec.stem}' from {spec.resolve()}" in refused.stderr, refused.stderr
        assert "nothing was changed" in refused.stderr
        assert sorted(namespaces(spec.stem)) == built
    status = netvirt(env, "status", str(spec), "--format", "json")
    assert status.returncode == 0 and json.loads(status.stdout)["in_sync"] is True
    verify = netvirt(env, "verify", str(spec), "--from", "client-1", "--to", "web-2", "--format", "json")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    # an edit of the same file converges; --replace takes the deployment over for another file
    spec.write_text(spec.read_text() + "\n# edited\n")
    assert netvirt(env, "up", str(spec)).returncode == 0
    replaced = netvirt(env, "up", str(other), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    kernel = f"{TEST_PREFIX}-{deployment_name(spec.stem)}-host-b.web-9"
    assert netns.exists(kernel)
    assert netvirt(env, "down", str(spec)).returncode == 2  # now it belongs to the other file
    assert netvirt(env, "down", str(other)).returncode == 0
    assert namespaces(spec.stem) == []


def test_up_of_an_empty_spec_returns_at_once(env, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\nname: tempty\n")
    started = time.monotonic()
    done = netvirt(env, "up", str(empty), "--timeout", "60", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hosts"] == []
    assert time.monotonic() - started < 30  # the agents' 60 s timeout was not waited for


def test_verify_reports_a_deleted_veth_as_drift_and_completes(spec, env):
    up = netvirt(env, "up", str(spec), "--format", "json")
    assert up.returncode == 0, up.stderr
    devices = {host["host"]: host["devices"] for host in json.loads(up.stdout)["hosts"]}
    status = json.loads(netvirt(env, "status", str(spec), "--format", "json").stdout)
    assert devices == {host["host"]: host["devices"]["desired"] for host in status["hosts"]}
    kernel = f"{TEST_PREFIX}-{deployment_name(spec.stem)}-host-b"
    netns.run(kernel, ["ip", "link", "del", "ve-web-2-0"])
    verify = netvirt(env, "verify", str(spec), "--all", "--format", "json")
    assert verify.returncode == 1, verify.stderr
    assert "Traceback" not in verify.stderr
    report = json.loads(verify.stdout)
    assert report["drift"] == ["host-b:web-2/eth0", "host-b:host-b/ve-web-2-0"]
    assert "drift: device host-b:host-b/ve-web-2-0 is missing" in verify.stderr
    assert "netvirt verify: 42/42 flows probed in " in verify.stderr  # progress outside a terminal
    disagree = {(flow["from"], flow["to"]) for flow in report["flows"] if not flow["agrees"]}
    assert disagree and all("web-2" in pair or "service/web" in pair for pair in disagree), disagree
    assert ("client-1", "db-1") not in disagree and len(report["flows"]) == 42  # 6 to the outside world


def test_deployment_option_reaches_a_network_built_apart_from_the_spec_name(spec, env, tmp_path):
    # built as agents build it: backends of a deployment that is not named after the spec
    network = bring_up(load(spec), Path(env["NETVIRT_STATE_DIR"]))
    try:
        check_deployment_option(spec, env, tmp_path, network.names.deployment)
    finally:
        tear_down(network)


def check_deployment_option(spec, env, tmp_path, deployment: str) -> None:
    chosen = ["--deployment", deployment]
    exec_ = netvirt(env, "exec", *chosen, str(spec), "web-1", "--", "ip", "-br", "addr", "show", "eth0")
    assert exec_.returncode == 0 and "10.10.0.20/24" in exec_.stdout, exec_.stderr
    assert netvirt(env, "exec", str(spec), "web-1", "--", "true").returncode == 1  # its own is not up
    status = netvirt(env, "status", str(spec), *chosen, "--format", "json")
    assert status.returncode == 0, status.stdout[-2000:]
    assert json.loads(status.stdout)["deployment"] == deployment
    assert netvirt(env, "status", str(spec)).returncode == 1
    verify = netvirt(env, "verify", str(spec), *chosen, "--from", "client-1", "--to", "web-2")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    bad = netvirt(env, "status", str(spec), "--deployment", "no-dashes")
    assert bad.returncode == 2 and "--deployment no-dashes" in bad.stderr
    # the underlay capture, through --deployment: requests and replies in timestamp order
    out = tmp_path / "underlay.pcap"
    capture = subprocess.Popen([sys.executable, "-m", "netvirt", "capture", str(spec), "underlay", *chosen,
                                "-w", str(out), "--count", "8", "--duration", "20", "-q"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "capturing on" not in capture.stderr.readline():
        pass
    netvirt(env, "exec", *chosen, str(spec), "client-1", "--", "ping", "-c4", "-i", "0.2", WEB_2)
    capture.wait(timeout=30)
    stamps = [frame.timestamp_ns for frame in pcap.read(out)]
    assert len(stamps) == 8 and stamps == sorted(stamps)
    # without a spec (and no controller answering): the deployments on this machine
    listed = netvirt(env, "status", "--controller", f"http://127.0.0.1:{free_port()}", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    mine = [d for d in json.loads(listed.stdout)["deployments"] if d["deployment"] == deployment]
    built = [name for name in netns.names() if name.startswith(f"{TEST_PREFIX}-{deployment}-")]
    assert mine == [{"deployment": deployment, "spec": None, "file": None, "namespaces": len(built)}]
