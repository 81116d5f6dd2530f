"""A host's life in the controller's view (issue 15): an agent stopped with SIGTERM deregisters at
once (no "alive" until three heartbeats pass); ``agent --host`` of a host the applied spec lacks
is refused (exit 2); ``netvirt forget-host`` removes a host the spec no longer has from
``status``, and refuses (exit 2) one it still has."""

import signal
import subprocess
import sys

import httpx
from control_helpers import eventually
from test_api import client, controller, put_spec  # noqa: F401 (fixtures)
from test_controller import SPEC
from typer.testing import CliRunner

from netvirt.control.controller import Controller
from netvirt.control.state.keys import heartbeat_key, status_key
from netvirt.control.state.records import AgentState, AgentStatus
from netvirt.management.cli import _register, app


def netvirt(*args: str):
    _register()
    return CliRunner().invoke(app, list(args))


def agent(store: str, host: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "netvirt", "agent", "--host", host, "--store", store,
                             "--backend", "sim", "--heartbeat", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_deregisters_and_an_unknown_host_is_refused(client: httpx.Client, controller: Controller):
    put_spec(client)
    store = controller.store.url
    running = agent(store, "h1")
    try:
        eventually(lambda: client.get("/v1/hosts/h1").json()["agent"] == "alive", timeout=60, what="h1 alive")
    finally:
        running.send_signal(signal.SIGTERM)
        running.wait(30)
    assert running.returncode == 0, running.stderr
    assert controller.store.get(heartbeat_key("h1")) is None
    assert client.get("/v1/hosts/h1").json()["agent"] == "no heartbeat"  # at once, not after 3 beats
    refused = agent(store, "nosuchhost")
    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert "--host nosuchhost: the applied spec (three-hosts, revision" in stderr and "h1, h2, h3" in stderr
    assert controller.store.get(status_key("nosuchhost")) is None


def test_forget_host_removes_a_host_the_spec_no_longer_has(client: httpx.Client, controller: Controller):
    put_spec(client)
    url = str(client.base_url).rstrip("/")
    ghost = AgentStatus(host="ghost", backend="sim", state=AgentState.CONVERGED, desired_revision=0, realized_revision=0,
                        agent="1@gone-machine")
    controller.store.put(status_key("ghost"), ghost.to_json())
    assert "ghost" in [h["host"] for h in client.get("/v1/hosts").json()["hosts"]]
    in_spec = netvirt("forget-host", "h1", "--controller", url)
    assert in_spec.exit_code == 2 and "host 'h1' is in the applied spec" in in_spec.stderr
    done = netvirt("forget-host", "ghost", "--controller", url)
    assert done.exit_code == 0, done.output
    assert "ghost" not in [h["host"] for h in client.get("/v1/hosts").json()["hosts"]]
    again = netvirt("forget-host", "ghost", "--controller", url)
    assert again.exit_code == 2 and "knows no host 'ghost'" in again.stderr

