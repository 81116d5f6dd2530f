"""The REST API against abuse: strict tokens, malformed and oversized bodies, slow and partial
requests, too many connections, a busy port; a fuzz test of request bodies and a soak test of 200
trickling partial requests. Servers are made by netvirt.management.server, as the controller's."""

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from etcd_server import free_port
from fuzz_budget import fuzz
from hypothesis import given
from hypothesis import strategies as st
from test_api import controller, put_spec, served  # noqa: F401 (the fixture)
from test_controller import SPEC
from typer.testing import CliRunner

from netvirt.control.controller import Controller
from netvirt.management.cli import _register, app
from netvirt.management.server import Limits, ServeError, bearer, bind

SHORT = Limits(header_timeout=1.0, body_timeout=1.0, max_body=4096, max_connections=40)


def partial(port: int, head: bytes = b"GET /healthz HTTP/1.1\r\nHost: x\r\n") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``within`` seconds (None: still open)."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def still_open(sock: socket.socket) -> bool:
    """Whether the server keeps ``sock`` open (nothing sent, no end of stream)."""
    sock.setblocking(False)
    try:
        return not sock.recv(4096) and False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def port_of(client: httpx.Client) -> int:
    return int(str(client.base_url).rsplit(":", 1)[1].strip("/"))


def test_bearer_is_parsed_strictly(controller: Controller):
    assert bearer("Bearer tok") == "tok" and bearer("bearer tok") == "tok"
    for header in ("tok", "Bearer", "Bearer ", "Bearer  tok", "Basic tok", "Bearertok", "Bearer tok "):
        assert bearer(header) is None, header
    with served(controller, token="tok") as client:
        for header in ("tok", "Token tok", "Bearer  tok"):
            assert client.get("/v1/hosts", headers={"Authorization": header}).status_code == 401
        assert client.get("/v1/hosts", headers={"Authorization": "Bearer tok"}).status_code == 200


def test_blank_token_is_no_token_for_a_public_listen(tmp_path: Path):
    _register()
    result = CliRunner().invoke(
        app, ["controller", "--listen", "0.0.0.0:8470", "--store", f"sqlite://{tmp_path}/s.db"], env={"NETVIRT_TOKEN": " \t "}
    )
    assert result.exit_code == 2 and "without a token" in result.output


def test_malformed_json_is_400_wrong_shapes_422_never_500(controller: Controller):
    with served(controller) as client:
        reply = client.put("/v1/spec", content=b'{"text": ', headers={"content-type": "application/json"})
        assert reply.status_code == 400
        assert reply.json()["detail"] == "malformed JSON: Expecting value (line 1, column 10)"
        reply = client.put("/v1/spec", json={"text": 5})
        assert reply.status_code == 422 and reply.json()["detail"][0]["loc"] == ["body", "text"]
        reply = client.put("/v1/spec", content=b'{"text": "\\ud800"}', headers={"content-type": "application/json"})
        assert reply.status_code == 422
        assert reply.json()["detail"]["problems"][0]["text"] == "spec.yaml:1:1: error: lone surrogate U+D800: not Unicode text"
        reply = client.post("/v1/trace", content=b"[1, 2", headers={"content-type": "application/json"})
        assert reply.status_code == 400


def test_bodies_over_the_limit_get_413(controller: Controller):
    with served(controller, limits=SHORT) as client:
        assert put_spec(client, "x" * 5000).status_code == 413  # declared length
        chunks = iter([b'{"text": "', b"x" * 3000, b"y" * 3000, b'"}'])
        reply = client.put("/v1/spec", content=chunks, headers={"content-type": "application/json"})  # chunked
        assert reply.status_code == 413
        assert client.get("/healthz").status_code == 200


def test_partial_heads_and_bodies_are_closed_after_their_timeout(controller: Controller):
    with served(controller, limits=SHORT) as client:
        port = port_of(client)
        head = partial(port)
        body = partial(port, b"PUT /v1/spec HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{")
        started = time.monotonic()
        assert closed_by_server(head, 5).startswith(b"HTTP/1.1 408")
        assert closed_by_server(body, 5) is not None
        assert time.monotonic() - started < 5
        kept = partial(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # a whole request: answered
        assert b" 200 " in kept.recv(4096).split(b"\r\n")[0] + b" "


def test_a_full_server_closes_the_longest_waiting_connection(controller: Controller):
    limits = Limits(header_timeout=30, max_connections=20)
    with served(controller, limits=limits) as client:
        port = port_of(client)
        held = [partial(port) for _ in range(30)]
        for _ in range(5):
            assert client.get("/healthz").status_code == 200
        time.sleep(0.2)
        kept = [still_open(sock) for sock in held]
        assert kept.count(False) >= 11  # the oldest made room
        assert not kept[0] and kept[-1]
        for sock in held:
            sock.close()


def test_a_busy_port_is_a_clear_runtime_failure(tmp_path: Path):
    port = free_port()
    with bind("127.0.0.1", port):
        with pytest.raises(ServeError, match=f"127.0.0.1:{port} is in use by another process"):
            bind("127.0.0.1", port)
        _register()
        store = f"sqlite://{tmp_path}/s.db"
        result = CliRunner().invoke(app, ["controller", "--listen", f"127.0.0.1:{port}", "--store", store])
    assert result.exit_code == 1 and f"netvirt controller: 127.0.0.1:{port} is in use" in result.output


# --- soak: 200 trickling partial requests -----------------------------------------------------------


def test_soak_200_trickling_partial_requests(controller: Controller):
    """200 connections trickle a request head a byte at a time; a client keeps being answered; the
    server closes every partial one after the header timeout (bounded: about 3 s)."""
    limits = Limits(header_timeout=2.0, max_connections=400)
    with served(controller, limits=limits) as client:
        port = port_of(client)
        trickling = [partial(port, b"G") for _ in range(200)]
        answered, deadline = 0, time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for sock in trickling:
                try:
                    sock.send(b"E")
                except OSError:
                    pass
            assert client.get("/healthz").status_code == 200
            answered += 1
        assert answered >= 3
        results = [closed_by_server(sock, 3.0) for sock in trickling]
        assert all(result is not None for result in results), "partial requests left open"
        assert sum(result.startswith(b"HTTP/1.1 408") for result in results if result) >= 190
        assert client.get("/healthz").status_code == 200
        for sock in trickling:
            sock.close()


# --- fuzz: request bodies ---------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
SPEC_TEXT = st.sampled_from([SPEC, SPEC.replace("h3", "H3"), "name: [", '{"hosts": 1}', "\ud800", ""]) | st.text()
BODIES = st.one_of(
    st.builds(lambda text, name, rev: {"text": text, "filename": name, "expected_revision": rev},
              SPEC_TEXT, st.sampled_from(["a.yaml", "a.json", "x", ""]), st.none() | st.integers(-5, 5) | JSONISH),
    st.dictionaries(st.sampled_from(["text", "filename", "expected_revision", "from", "to", "proto", "dport", "size"]),
                    JSONISH, max_size=5),
    JSONISH,
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    from netvirt.control.store import open_store

    with open_store(f"sqlite://{tmp_path_factory.mktemp('fuzz') / 'store.db'}") as store:
        controller = Controller(store)
        with served(controller) as client:
            yield client


@fuzz(100)
@given(body=BODIES, raw=st.booleans(), path=st.sampled_from(["/v1/spec", "/v1/trace"]))
def test_fuzzed_bodies_get_only_4xx_with_located_problems(fuzzed, body, raw, path):
    text = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    if raw:  # cut it anywhere: malformed JSON
        text = text[: len(text) // 2]
    reply = fuzzed.request("PUT" if path == "/v1/spec" else "POST", path, content=text,
                           headers={"content-type": "application/json"})
    assert reply.status_code < 500, reply.text
    if reply.status_code == 200:
        return
    detail = reply.json()["detail"]
    if reply.status_code == 422 and isinstance(detail, dict):  # an invalid spec
        assert detail["problems"] and all(p.get("text") for p in detail["problems"])
        assert all(p["line"] >= 1 or p["path"] == "" for p in detail["problems"] if "line" in p)
    elif reply.status_code == 422 and isinstance(detail, list):  # the wrong shape
        assert all(item["loc"] and item["msg"] for item in detail)
    else:
        assert reply.status_code in (400, 404, 409, 422) and detail


def test_the_controller_stays_below_its_open_files_limit(tmp_path: Path):
    """`netvirt controller` with 128 descriptors and 300 connections held: it answers, sheds the
    oldest waiting ones, and logs no accept errors (the flood of EMFILE tracebacks)."""
    import resource
    import subprocess
    import sys

    port = free_port()

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    args = [sys.executable, "-m", "netvirt", "controller", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*args, "--store", f"sqlite://{tmp_path}/s.db"], stderr=subprocess.PIPE, preexec_fn=limited
    )
    held: list[socket.socket] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(100):
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            held = [partial(port) for _ in range(300)]
            assert all(client.get("/healthz").status_code == 200 for _ in range(5))
            time.sleep(0.2)
            open_files = len(list(Path(f"/proc/{process.pid}/fd").iterdir()))
    finally:
        for sock in held:
            sock.close()
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert open_files < 128
    assert b"accept" not in stderr and len(stderr) < 2000, stderr[:2000]
