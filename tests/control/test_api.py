"""The controller's REST API, served by uvicorn on a loopback port in a thread of the test (the
`netvirt controller` process itself runs in test_multihost.py), and the CLI against it."""

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from control_helpers import eventually
from etcd_server import free_port
from test_controller import SPEC, edited
from typer.testing import CliRunner

from netvirt.control.agent import Agent, AgentThread
from netvirt.control.compile import compile_host
from netvirt.control.controller import Controller
from netvirt.control.state.keys import heartbeat_key
from netvirt.control.store import open_store
from netvirt.dataplane.sim.backend import SimBackend
from netvirt.graph import to_json
from netvirt.management.api import create_app
from netvirt.management.server import Limits, bind, is_loopback, listen_address, serve, server
from netvirt.management.cli import _register, app
from netvirt.management.spec import SpecError, as_data, loads


@pytest.fixture
def controller(tmp_path: Path) -> Controller:
    with open_store(f"sqlite://{tmp_path / 'store.db'}") as store:
        yield Controller(store)


@contextmanager
def served(controller: Controller, token: str | None = None, limits: Limits = Limits()) -> Iterator[httpx.Client]:
    """The API over ``controller`` on a free loopback port, configured as ``netvirt controller``
    serves it; a client of it."""
    port = free_port()
    running = server(create_app(controller, token), limits)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [bind("127.0.0.1", port)]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: running.started, what="uvicorn started")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        running.should_exit = True
        thread.join(10)


@pytest.fixture
def client(controller: Controller) -> Iterator[httpx.Client]:
    with served(controller) as client:
        yield client


def put_spec(client: httpx.Client, text: str = SPEC, **extra) -> httpx.Response:
    return client.put("/v1/spec", json={"text": text, "filename": "three.yaml", **extra})


def test_healthz_and_openapi(client: httpx.Client, controller: Controller):
    assert client.get("/healthz").json() == {"status": "ok", "store": controller.store.url, "revision": 0}
    document = client.get("/openapi.json").json()
    assert {"/healthz", "/v1/spec", "/v1/hosts", "/v1/hosts/{host}", "/v1/trace", "/v1/reach"} <= document["paths"].keys()
    assert {"put", "get", "delete"} <= document["paths"]["/v1/spec"].keys()


def test_apply_get_delete(client: httpx.Client):
    reply = put_spec(client)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert (result["changed"], result["removed"], result["unchanged"]) == (["h1", "h2", "h3"], [], [])
    assert result["incremental"] is False
    got = client.get("/v1/spec").json()
    assert got == {"revision": result["revision"], "name": "three-hosts", "spec": as_data(loads(SPEC))}
    assert put_spec(client, edited("tcp/80", "tcp/81")).json()["incremental"] is True
    deleted = client.delete("/v1/spec").json()
    assert deleted["removed"] == ["h1", "h2", "h3"] and deleted["revision"] > got["revision"]
    missing = client.get("/v1/spec")
    assert (missing.status_code, missing.json()) == (404, {"detail": "no spec is applied"})


def test_invalid_spec_gives_422_with_the_same_located_problems_and_changes_nothing(client: httpx.Client):
    put_spec(client)
    before = client.get("/v1/spec").json()
    bad = edited("host: h3, network: red", "host: h9, network: reed")
    reply = put_spec(client, bad)
    assert reply.status_code == 422
    with pytest.raises(SpecError) as raised:
        loads(bad, "three.yaml")
    expected = [problem.as_dict() | {"text": str(problem)} for problem in raised.value.problems]
    assert reply.json()["detail"] == {"summary": "2 problems", "problems": expected}
    assert [p["text"] for p in expected] == [
        "three.yaml:13:38: error: endpoints[2].host: unknown host 'h9' (did you mean 'h1'?)",
        "three.yaml:13:51: error: endpoints[2].network: unknown network 'reed' (did you mean 'red'?)",
    ]
    assert client.get("/v1/spec").json() == before
    assert client.put("/v1/spec", json={"filename": "x.yaml"}).status_code == 422  # no text at all


def test_stale_revision_gives_409(client: httpx.Client):
    first = put_spec(client).json()["revision"]
    second = put_spec(client, edited("tcp/80", "tcp/81")).json()["revision"]
    reply = put_spec(client, edited("tcp/80", "tcp/82"), expected_revision=first)
    assert reply.status_code == 409
    assert reply.json()["detail"].startswith(f"the applied spec is at revision {second}, not at revision {first};")
    assert client.delete("/v1/spec", params={"expected_revision": first}).status_code == 409


def test_hosts_desired_versus_realized(client: httpx.Client, controller: Controller):
    put_spec(client)
    assert [h["state"] for h in client.get("/v1/hosts").json()["hosts"]] == ["no agent"] * 3
    agents = [AgentThread(Agent(h, controller.store, SimBackend(h))).start() for h in ("h1", "h2")]
    try:
        eventually(lambda: [h["state"] for h in client.get("/v1/hosts").json()["hosts"]] == ["converged", "converged", "no agent"])
        listing = client.get("/v1/hosts").json()
        assert listing["converged"] is False
        h1 = listing["hosts"][0]
        assert h1["in_sync"] and h1["status"]["realized_revision"] == h1["desired_revision"]
        assert h1["status"]["backend"] == "sim" and h1["status"]["errors"] == []
        detail = client.get("/v1/hosts/h1").json()
        assert detail["desired"] == detail["realized"] == json.loads(to_json(compile_host(loads(SPEC), "h1")))
        assert detail["differences"] == []
        h3 = client.get("/v1/hosts/h3").json()
        assert h3["realized"] is None and h3["differences"] and h3["state"] == "no agent"
        assert client.get("/v1/hosts/nowhere").status_code == 404
    finally:
        for agent in agents:
            agent.stop()


def test_trace_and_reach_give_the_same_json_as_the_cli(client: httpx.Client, tmp_path: Path):
    assert client.post("/v1/trace", json={"from": "db-1", "to": "web-1"}).status_code == 404
    assert client.get("/v1/reach").status_code == 404
    spec_file = tmp_path / "three.yaml"
    spec_file.write_text(SPEC)
    put_spec(client)
    traced = client.post("/v1/trace", json={"from": "db-1", "to": "web-1", "dport": 80})
    assert traced.status_code == 200, traced.text
    cli = netvirt("trace", str(spec_file), "--from", "db-1", "--to", "web-1", "--dport", "80", "-f", "json")
    assert cli.exit_code == 0, cli.output
    assert traced.json() == json.loads(cli.stdout) and traced.json()["hops"]
    reached = client.get("/v1/reach")
    cli = netvirt("reach", str(spec_file), "-f", "json")
    assert reached.json() == json.loads(cli.stdout) and len(reached.json()) > 1
    bad = client.post("/v1/trace", json={"from": "db-1", "to": "nobody"})
    cli = netvirt("trace", str(spec_file), "--from", "db-1", "--to", "nobody")
    assert bad.status_code == 422 and cli.exit_code == 2
    assert f"netvirt: {bad.json()['detail']}" == cli.stderr.strip()


def test_trace_refuses_a_port_for_icmp_like_the_cli(client: httpx.Client, tmp_path: Path):
    put_spec(client)
    refused = client.post("/v1/trace", json={"from": "db-1", "to": "web-1", "proto": "icmp", "dport": 80})
    [detail] = refused.json()["detail"]
    assert refused.status_code == 422 and detail["loc"] == ["body", "dport"] and "ICMP has no ports" in detail["msg"]
    spec_file = tmp_path / "three.yaml"
    spec_file.write_text(SPEC)
    cli = netvirt("trace", str(spec_file), "--from", "db-1", "--to", "web-1", "--proto", "icmp", "--dport", "80")
    assert cli.exit_code == 2 and "--proto icmp" in cli.stderr
    assert client.post("/v1/trace", json={"from": "db-1", "to": "web-1", "proto": "icmp"}).status_code == 200


def test_token_is_required_when_configured(controller: Controller):
    with served(controller, token="s3cret") as client:
        assert client.get("/v1/hosts").status_code == 401
        assert client.get("/v1/hosts", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/hosts", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_unreachable_store_gives_503_naming_it():
    url = f"etcd://127.0.0.1:{free_port()}"
    with open_store(url) as store:
        with served(Controller(store)) as client:
            replies = [client.get("/healthz"), client.get("/v1/hosts"), put_spec(client)]
        for reply in replies:
            assert reply.status_code == 503 and f"store {url} is unreachable" in reply.json()["detail"]


def test_listen_rules():
    assert listen_address("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert listen_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        listen_address("8470")
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")
    with pytest.raises(ValueError, match="refusing to listen on 0.0.0.0:8470 without a token"):
        serve(None, "0.0.0.0:8470", None)
    with pytest.raises(ValueError, match="the token is blank"):
        serve(None, "0.0.0.0:8470", " \t")


# --- the CLI against the served API ---------------------------------------------------------------


def netvirt(*args: str, env: dict[str, str] | None = None):
    _register()
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def with_token(controller: Controller, tmp_path: Path):
    """The API served with a token, and the file holding it."""
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    with served(controller, token="tok-123") as client:
        yield str(client.base_url).rstrip("/"), token


def test_cli_apply_get_status_delete(with_token, tmp_path: Path):
    url, token = with_token
    spec = tmp_path / "three.yaml"
    spec.write_text(SPEC)
    auth = ["--controller", url, "--token-file", str(token)]
    applied = netvirt("apply", str(spec), *auth)
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.startswith("applied revision ") and "3 changed (h1, h2, h3), 0 removed, 0 unchanged" in applied.stdout

    got = netvirt("get", *auth)
    assert got.exit_code == 0 and "name: three-hosts" in got.stdout and got.stdout.startswith("# revision ")
    got_json = netvirt("get", "--format", "json", *auth)
    assert json.loads(got_json.stdout)["spec"] == as_data(loads(SPEC))

    status = netvirt("status", *auth)
    assert status.exit_code == 1 and status.stdout.count("no agent") == 3
    one = netvirt("status", "h1", "--json", *auth)
    assert json.loads(one.stdout)["desired"]["host"] == "h1"

    bad = tmp_path / "bad.yaml"
    bad.write_text(edited("host: h3, network: red", "host: h9, network: red"))
    rejected = netvirt("apply", str(bad), *auth)
    assert rejected.exit_code == 2
    assert rejected.stderr.splitlines() == [
        f"{bad}:13:38: error: endpoints[2].host: unknown host 'h9' (did you mean 'h1'?)",
        "netvirt apply: invalid spec, 1 problem; nothing was applied",
    ]
    revision = applied.stdout.split()[2].rstrip(":")
    stale = netvirt("apply", str(spec), "--expected-revision", "0", *auth)
    assert stale.exit_code == 1 and f"the applied spec is at revision {revision}, not at revision 0" in stale.stderr

    no_token = netvirt("get", "--controller", url, env={"NETVIRT_TOKEN": ""})
    assert no_token.exit_code == 1 and "missing or wrong token" in no_token.stderr
    with_env = netvirt("get", "--controller", url, env={"NETVIRT_TOKEN": "tok-123"})
    assert with_env.exit_code == 0

    deleted = netvirt("delete", *auth)
    assert deleted.exit_code == 0 and "3 removed (h1, h2, h3)" in deleted.stdout


def test_cli_errors_without_a_controller(tmp_path: Path):
    url = f"http://127.0.0.1:{free_port()}"
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    down = netvirt("apply", str(spec), "--controller", url)
    assert down.exit_code == 1 and f"cannot reach the controller at {url}" in down.stderr
    missing = netvirt("apply", str(tmp_path / "nope.yaml"), "--controller", url)
    assert missing.exit_code == 2 and "cannot read" in missing.stderr and "No such file" in missing.stderr


def test_controller_refuses_a_public_address_without_a_token(tmp_path: Path):
    public = netvirt("controller", "--store", f"sqlite://{tmp_path / 's.db'}", "--listen", "0.0.0.0:1", env={"NETVIRT_TOKEN": ""})
    assert public.exit_code == 2 and "refusing to listen on 0.0.0.0:1 without a token" in public.stderr
    url = f"etcd://127.0.0.1:{free_port()}"
    unreachable = netvirt("controller", "--store", url)
    assert unreachable.exit_code == 1 and f"store {url} is unreachable" in unreachable.stderr


def test_a_dead_agent_shows_as_stale(client: httpx.Client, controller: Controller):
    put_spec(client)
    running = AgentThread(Agent("h1", controller.store, SimBackend("h1"), heartbeat_interval=0.2)).start()
    try:
        eventually(lambda: client.get("/v1/hosts/h1").json()["state"] == "converged", what="h1 converged")
        h1 = client.get("/v1/hosts").json()["hosts"][0]
        assert (h1["agent"], h1["last_seen"] < 1) == ("alive", True)
        last_beat = controller.store.get(heartbeat_key("h1")).value
    finally:
        running.stop()
    assert client.get("/v1/hosts/h1").json()["agent"] == "no heartbeat"  # a stopped agent deregisters
    controller.store.put(heartbeat_key("h1"), last_beat)  # a dead one leaves its last beat behind
    stale = eventually(lambda: (h1 := client.get("/v1/hosts/h1").json())["agent"].startswith("stale") and h1, what="stale")
    assert re.fullmatch(r"stale: last seen \d+ s ago", stale["agent"]) and stale["last_seen"] >= 0.6
    assert stale["state"] == "converged", "its last report stands: the data plane outlives the agent"
    assert client.get("/v1/hosts").json()["hosts"][1]["agent"] == "no heartbeat"
    shown = netvirt("status", "--controller", str(client.base_url).rstrip("/"))
    assert "(stale: last seen " in shown.stdout and shown.stdout.count("(no heartbeat)") == 2, shown.stdout
