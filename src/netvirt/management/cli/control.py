"""``netvirt controller|agent|apply|get|delete|status|endpoint``: the control plane's services and its client.

``controller`` serves the REST API over a store; ``agent`` keeps one host converged; the other
commands (``endpoint add|change|remove|list``: one endpoint of the applied spec) talk to a
controller (``--controller URL``, default $NETVIRT_CONTROLLER or http://127.0.0.1:8470; token from ``--token-file`` or $NETVIRT_TOKEN). Exit codes: 0 ok,
1 runtime failure (unreachable, conflict, not converged), 2 bad input (an invalid spec: every
problem printed as FILE:LINE:COL: error: PATH: message, as ``netvirt validate`` prints them).
"""

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

from netvirt.management.cli.choices import BackendName, YamlOrJson
from netvirt.management.cli.options import StrictGroup, http_url, store_url

if TYPE_CHECKING:
    import httpx

DEFAULT_CONTROLLER = "http://127.0.0.1:8470"

ControllerOption = Annotated[
    str,
    typer.Option("--controller", envvar="NETVIRT_CONTROLLER", callback=http_url, help="The controller's URL."),
]
TokenOption = Annotated[
    Path | None,
    typer.Option("--token-file", help="A file holding the API token (else $NETVIRT_TOKEN)."),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="NETVIRT_STORE", callback=store_url,
        help="sqlite://PATH (default sqlite://netvirt.db) or etcd://HOST:PORT.",
    ),
]


def register(app: typer.Typer) -> None:
    # status: registered by cli.linux, which answers `status SPEC` itself and hands the rest here
    for command in (controller, agent, apply, get, delete):
        app.command()(command)
    app.command(name="forget-host")(forget_host)
    endpoints = typer.Typer(
        help="One endpoint of the applied spec: add, change, remove, list.", no_args_is_help=True, cls=StrictGroup
    )
    for command, name in ((endpoint_add, "add"), (endpoint_change, "change"), (endpoint_remove, "remove"),
                          (endpoint_list, "list")):
        endpoints.command(name=name)(command)
    app.add_typer(endpoints, name="endpoint")


# --- services -------------------------------------------------------------------------------------


def controller(
    store: StoreOption = None,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve on; not loopback needs a token.")] = "127.0.0.1:8470",
    token_file: TokenOption = None,
) -> None:
    """Serve the control plane's REST API (OpenAPI at /docs) over a store."""
    from netvirt.control.controller import Controller
    from netvirt.control.store import DEFAULT_URL, StoreError, open_store
    from netvirt.management.api import create_app
    from netvirt.management.server import ServeError, check_listen, serve

    token = _token(token_file)
    try:
        check_listen(listen, token)
    except ValueError as error:
        _fail("controller", str(error), 2)
    try:
        opened = open_store(store or DEFAULT_URL)
        opened.revision()
    except StoreError as error:
        _fail("controller", str(error), 1)
    try:
        serve(create_app(Controller(opened), token), listen, token)
    except ServeError as error:
        _fail("controller", str(error), 1)
    finally:
        opened.close()


def agent(
    host: Annotated[str, typer.Option("--host", help="The host (as named in the spec) this agent runs.")],
    store: StoreOption = None,
    backend: Annotated[BackendName, typer.Option(help="The data plane to drive.")] = BackendName.sim,
    resync: Annotated[float, typer.Option(min=0.1, help="Seconds between full resyncs (repairs drift).")] = 30.0,
    heartbeat: Annotated[
        float, typer.Option(min=0.1, help="Seconds between heartbeats (stale after 3 missed).")
    ] = 10.0,
) -> None:
    """Keep HOST's data plane equal to its desired graph, reporting back; runs until SIGTERM/SIGINT."""
    from netvirt.control.agent import Agent, AgentThread
    from netvirt.control.controller import Controller
    from netvirt.dataplane import registry
    from netvirt.control.store import DEFAULT_URL, StoreError, open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        opened = open_store(store or DEFAULT_URL)
        data_plane = registry.make(backend.value, host)
    except ValueError as error:  # a backend this host cannot have
        _fail("agent", str(error), 2)
    except (StoreError, ImportError) as error:  # the store or the data plane cannot be had here
        _fail("agent", str(error), 1)
    try:
        applied = Controller(opened).current()
    except StoreError as error:
        _fail("agent", str(error), 1)
    known = [h.name for h in applied.spec.hosts] if applied is not None else None
    if known is not None and host not in known:
        opened.close()
        _fail("agent", f"--host {host}: the applied spec ({applied.spec.name}, revision {applied.revision}) has no "
                       f"host {host!r}; give one of {', '.join(known)} (or apply a spec that has it first)", 2)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running = AgentThread(Agent(host, opened, data_plane, resync_interval=resync, heartbeat_interval=heartbeat)).start()
    try:
        while not stop.wait(1):
            pass
    finally:
        running.stop()
        opened.close()


# --- client ---------------------------------------------------------------------------------------


def apply(
    spec: Annotated[Path, typer.Argument(help="The spec file (YAML or JSON).")],
    controller: ControllerOption = DEFAULT_CONTROLLER,
    expected_revision: Annotated[
        int | None, typer.Option(help="Refuse (exit 1) unless the applied spec is at this revision.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until every host realized it.")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to --wait.")] = 60.0,
    token_file: TokenOption = None,
) -> None:
    """Validate SPEC, then publish it to every host through the controller."""
    text = _read_text(spec, "apply")
    client = Client(controller, _token(token_file), "apply")
    body = {"text": text, "filename": str(spec), "expected_revision": expected_revision}
    result = client.call("PUT", "/v1/spec", json=body)
    typer.echo(
        f"applied revision {result['revision']}: {_hosts('changed', result['changed'])}, "
        f"{_hosts('removed', result['removed'])}, {len(result['unchanged'])} unchanged"
    )
    if wait:
        _wait(client, timeout)


def get(
    controller: ControllerOption = DEFAULT_CONTROLLER,
    format: Annotated[YamlOrJson, typer.Option("--format", "-f", help="Output format.")] = YamlOrJson.yaml,
    token_file: TokenOption = None,
) -> None:
    """Print the applied spec (with every allocated value) and its revision."""
    _print_revisioned(Client(controller, _token(token_file), "get").call("GET", "/v1/spec"), "spec", format)


def delete(
    controller: ControllerOption = DEFAULT_CONTROLLER,
    expected_revision: Annotated[int | None, typer.Option(help="Refuse unless the spec is at this revision.")] = None,
    token_file: TokenOption = None,
) -> None:
    """Remove the applied spec: every host's agent tears its data plane down."""
    params = {} if expected_revision is None else {"expected_revision": expected_revision}
    result = Client(controller, _token(token_file), "delete").call("DELETE", "/v1/spec", params=params)
    typer.echo(f"deleted at revision {result['revision']}: {_hosts('removed', result['removed'])}")


EndpointFile = Annotated[Path, typer.Argument(help="One endpoint as a spec file writes it (YAML or JSON; - reads stdin).")]
RevisionOption = Annotated[int | None, typer.Option(help="Refuse (exit 1) unless the applied spec is at this revision.")]
WaitOption = Annotated[bool, typer.Option(help="Wait until every host realized it.")]


def endpoint_add(
    file: EndpointFile,
    controller: ControllerOption = DEFAULT_CONTROLLER,
    expected_revision: RevisionOption = None,
    wait: WaitOption = False,
    token_file: TokenOption = None,
) -> None:
    """Add one endpoint to the applied spec (validated as a whole spec; problems located in FILE)."""
    body = {"text": _read_text(file, "endpoint add"), "filename": str(file), "expected_revision": expected_revision}
    _endpoint_changed(Client(controller, _token(token_file), "endpoint add"), "POST", "/v1/endpoints", body, wait)


def endpoint_change(
    name: Annotated[str, typer.Argument(help="The endpoint to change.")],
    file: EndpointFile,
    controller: ControllerOption = DEFAULT_CONTROLLER,
    expected_revision: RevisionOption = None,
    wait: WaitOption = False,
    token_file: TokenOption = None,
) -> None:
    """Replace endpoint NAME by the one in FILE (keys left out are allocated or defaulted again)."""
    body = {"text": _read_text(file, "endpoint change"), "filename": str(file), "expected_revision": expected_revision}
    client = Client(controller, _token(token_file), "endpoint change")
    _endpoint_changed(client, "PUT", f"/v1/endpoints/{name}", body, wait)


def endpoint_remove(
    name: Annotated[str, typer.Argument(help="The endpoint to remove.")],
    controller: ControllerOption = DEFAULT_CONTROLLER,
    expected_revision: RevisionOption = None,
    wait: WaitOption = False,
    token_file: TokenOption = None,
) -> None:
    """Remove endpoint NAME from the applied spec."""
    params = {} if expected_revision is None else {"expected_revision": expected_revision}
    client = Client(controller, _token(token_file), "endpoint remove")
    _endpoint_changed(client, "DELETE", f"/v1/endpoints/{name}", None, wait, params=params)


def endpoint_list(
    controller: ControllerOption = DEFAULT_CONTROLLER,
    format: Annotated[YamlOrJson, typer.Option("--format", "-f", help="Output format.")] = YamlOrJson.yaml,
    token_file: TokenOption = None,
) -> None:
    """Print the applied spec's endpoints (with every allocated value) and its revision."""
    reply = Client(controller, _token(token_file), "endpoint list").call("GET", "/v1/endpoints")
    _print_revisioned(reply, "endpoints", format)


def _print_revisioned(reply: dict, key: str, format: YamlOrJson) -> None:
    """A controller reply of ``key`` at a revision: JSON as it came, or YAML under a revision comment."""
    if format is YamlOrJson.json:
        typer.echo(json.dumps(reply, indent=2))
    else:
        typer.echo(f"# revision {reply['revision']}")
        typer.echo(yaml.safe_dump(reply[key], sort_keys=False, allow_unicode=True), nl=False)


def _endpoint_changed(client: "Client", method: str, path: str, body: Any, wait: bool, **request: Any) -> None:
    result = client.call(method, path, json=body, **request)
    endpoint = result["endpoint"]
    if endpoint is not None:
        attachments = ", ".join(
            f"{a['network']} {' '.join(str(a[k]) for k in ('ip', 'ip6', 'mac') if a.get(k))}" for a in endpoint["attachments"]
        )
        typer.echo(f"endpoint {endpoint['name']} on {endpoint['host']}: {attachments}")
    typer.echo(f"applied revision {result['revision']}: {_hosts('changed', result['changed'])}")
    if wait:
        _wait(client, 60.0)


def _read_text(file: Path, command: str) -> str:
    import sys

    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        _fail(command, f"cannot read {file}: {getattr(error, 'strerror', None) or error}", 2)


def status(
    host: Annotated[str | None, typer.Argument(help="One host: also show how realized differs from desired.")] = None,
    controller: ControllerOption = DEFAULT_CONTROLLER,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON instead of a table.")] = False,
    token_file: TokenOption = None,
) -> None:
    """Per host: desired vs realized revision, agent state and errors. Exit 1 unless all converged."""
    client = Client(controller, _token(token_file), "status")
    reply = client.call("GET", f"/v1/hosts/{host}" if host else "/v1/hosts")
    states = [reply] if host else reply["hosts"]
    if as_json:
        typer.echo(json.dumps(reply, indent=2))
    else:
        table = Table("HOST", "STATE", "DESIRED", "REALIZED", "AGENT", "ERRORS", box=None)
        for state in states:
            report = state["status"] or {}
            table.add_row(
                state["host"],
                state["state"],
                str(state["desired_revision"]),
                str(report.get("realized_revision", "-")),
                f'{report.get("agent", "-")} ({state["agent"]})',
                "; ".join(report.get("errors", [])),
            )
        Console(width=200).print(table)
        for line in reply.get("differences", []) if host else []:
            typer.echo(f"  differs: {line}")
    if not all(state["in_sync"] for state in states):
        raise typer.Exit(1)


def forget_host(
    host: Annotated[str, typer.Argument(help="The host to remove from `netvirt status`.", show_default=False)],
    controller: ControllerOption = DEFAULT_CONTROLLER,
    token_file: TokenOption = None,
) -> None:
    """Forget a host the applied spec no longer has (an agent started with a wrong --host, a
    retired machine): its agent status, heartbeat and realized graph leave the controller."""
    client = Client(controller, _token(token_file), "forget-host")
    client.call("DELETE", f"/v1/hosts/{host}", refused=(404, 409))
    typer.echo(f"forgot host {host}")


def answers(url: str) -> bool:
    """Whether a controller answers at ``url`` (its health check, within a second)."""
    import httpx

    try:
        return httpx.get(url.rstrip("/") + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Client:
    """A thin client of the controller's API that turns failures into CLI exits."""

    def __init__(self, url: str, token: str | None, command: str) -> None:
        import httpx  # here, not at the top: every other netvirt command would pay for importing it

        self.url = url.rstrip("/")
        self.command = command
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def call(self, method: str, path: str, refused: tuple[int, ...] = (), **request: Any) -> Any:
        """The reply's JSON; exit 1 on failures, 2 on the HTTP statuses ``refused`` (bad input)."""
        import httpx

        try:
            reply = self.http.request(method, path, **request)
        except httpx.TransportError as error:
            _fail(self.command, f"cannot reach the controller at {self.url} ({error}); is `netvirt controller` running?", 1)
        if reply.status_code == 200:
            return reply.json()
        detail = _detail(reply)
        if reply.status_code == 422 and isinstance(detail, dict) and "problems" in detail:
            for problem in detail["problems"]:
                typer.echo(problem["text"], err=True)
            _fail(self.command, f"invalid spec, {detail['summary']}; nothing was applied", 2)
        _fail(self.command, f"{detail} (HTTP {reply.status_code} from {self.url})", 2 if reply.status_code in refused else 1)


def _wait(client: Client, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reply = client.call("GET", "/v1/hosts")
        if reply["converged"]:
            typer.echo(f"converged: {len(reply['hosts'])} hosts")
            return
        if time.monotonic() > deadline:
            late = ", ".join(f"{h['host']} ({h['state']})" for h in reply["hosts"] if not h["in_sync"])
            _fail(client.command, f"not converged after {timeout:g}s: {late}", 1)
        time.sleep(0.1)


def _detail(reply: "httpx.Response") -> Any:
    try:
        return reply.json().get("detail", reply.text)
    except ValueError:
        return reply.text


def _hosts(what: str, hosts: list[str]) -> str:
    return f"{len(hosts)} {what}" + (f" ({', '.join(hosts)})" if hosts else "")


def _token(token_file: Path | None) -> str | None:
    if token_file is None:  # blank counts as unset (a public --listen then refuses to start)
        return os.environ.get("NETVIRT_TOKEN", "").strip() or None
    try:
        token = token_file.read_text().strip()
    except OSError as error:
        _fail("token", f"cannot read --token-file {token_file}: {error.strerror}", 2)
    if not token:
        _fail("token", f"--token-file {token_file} is empty", 2)
    return token


def _fail(command: str, message: str, code: int) -> NoReturn:
    typer.echo(f"netvirt {command}: {message}", err=True)
    raise typer.Exit(code)
