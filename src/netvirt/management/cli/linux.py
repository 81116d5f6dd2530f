"""``netvirt up|down|status|exec|capture|log|logs``: networks in the real Linux kernel.

``up`` is the controller's machinery on one machine: an embedded controller on an in-memory store
publishes every host's graph, and one in-process agent per host converges its ``LinuxBackend``
(``--backend sim`` runs the same with simulated hosts). Every host graph is planned first; a spec
the kernel cannot realise is refused (exit 2) before anything is created. ``down`` removes exactly
what netvirt recorded. ``status SPEC`` compares desired and realized per host (``status`` without
a spec file asks the controller, see ``netvirt.management.cli.control``). Exit codes: 0 ok,
1 runtime failure (also: not in sync, a probe that disagrees), 2 bad input.
"""

import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from netvirt.management.cli import control
from netvirt.management.cli.choices import BackendName, PollMode, TextOrJson
from netvirt.management.cli.spec import load_or_exit

SpecArgument = Annotated[Path, typer.Argument(help="The spec file (YAML or JSON).", show_default=False)]


FormatOption = Annotated[TextOrJson, typer.Option("--format", "-f", help="text, or json for tools.")]


def register(app: typer.Typer) -> None:
    for command in (up, down, status, capture, log, logs):
        app.command()(command)
    app.command(name="exec", context_settings={"allow_interspersed_args": False})(exec_)


def fail(command: str, message: str, code: int) -> NoReturn:
    typer.echo(f"netvirt {command}: {message}", err=True)
    raise typer.Exit(code)


def require_net_admin(command: str) -> None:
    from netvirt.dataplane.kernel import netns

    if not netns.can_admin_network():
        fail(command, "needs CAP_NET_ADMIN to change network namespaces (run it as root)", 1)


DeploymentOption = Annotated[str | None, typer.Option(
    "--deployment", help="Look at this deployment instead of SPEC's own (networks built by agents: netvirt).",
    show_default=False)]


def compiled(spec_path: Path, command: str, deployment: str | None = None):
    """(spec, network graph, deployment name) of ``spec_path`` — the deployment named after the
    spec unless ``deployment`` is given; exit 2 when either is invalid. The graph has the outside
    world (``trace.plan.outside_world``: host ``internet`` on the underlay segment, the server
    203.0.113.10 of ``--to external``), which ``up`` builds beside the spec's hosts."""
    from netvirt.control.compile import CompileError, compile_network
    from netvirt.dataplane.kernel.naming import NameError_, deployment_name

    from netvirt.trace.plan import outside_world

    spec = load_or_exit(spec_path, command)
    try:
        network = outside_world(compile_network(spec))  # the lab's outside world is deployed too
    except CompileError as error:
        fail(command, f"{spec_path}: {error}", 2)
    if deployment is not None:
        try:
            names(deployment)
        except NameError_ as error:
            fail(command, f"--deployment {deployment}: {error}", 2)
    return spec, network, deployment or deployment_name(spec.name)


def kernel_settings() -> dict[str, Any]:
    """Where kernel objects are named and recorded: prefix ``nv`` and ``/run/netvirt``, unless
    $NETVIRT_PREFIX / $NETVIRT_STATE_DIR say otherwise (the privileged tests use ``nvt``)."""
    from netvirt.dataplane.kernel.naming import PRODUCTION_PREFIX
    from netvirt.dataplane.kernel.ownership import STATE_DIR

    return {"prefix": os.environ.get("NETVIRT_PREFIX", PRODUCTION_PREFIX),
            "state_dir": Path(os.environ.get("NETVIRT_STATE_DIR", STATE_DIR))}


def names(deployment: str):
    """The kernel naming scheme of ``deployment`` (see ``kernel_settings``)."""
    from netvirt.dataplane.kernel.naming import Names

    return Names(deployment, kernel_settings()["prefix"])


KERNEL_BACKENDS = ("linux", "ebpf")


def parse_backends(default: str, values: list[str], hosts: list[str], command: str) -> dict[str, str]:
    """``--backend`` for every host, then ``--host-backend HOST=linux|ebpf`` (repeatable) -> host -> backend."""
    chosen = dict.fromkeys(hosts, default)
    for value in values:
        host, _, kind = value.partition("=")
        if kind not in KERNEL_BACKENDS or not host:
            fail(command, f"--host-backend {value}: give HOST=linux or HOST=ebpf", 2)
        if host not in chosen:
            fail(command, f"--host-backend {value}: the spec has no host {host!r} (hosts: {', '.join(hosts)})", 2)
        chosen[host] = kind
    return chosen


def deployed_backends(network, deployment: str) -> dict[str, str]:
    """Which kernel backend built each host of ``deployment``: ``ebpf`` where its programs are pinned."""
    from netvirt.dataplane.ebpf.backend import deployed_with_ebpf

    found = deployed_with_ebpf(names(deployment), [graph.host for graph in network.hosts])
    return {graph.host: "ebpf" if graph.host in found else "linux" for graph in network.hosts}


def parse_filters(values: list[str], hosts: list[str], command: str) -> dict[str, str]:
    """``--filter nftables|iptables|HOST=nftables|HOST=iptables`` (repeatable) -> host -> backend."""
    from netvirt.dataplane.linux.backend import FILTERS

    chosen = dict.fromkeys(hosts, "nftables")
    given: dict[str, str] = {}  # "" (every host) or a host -> the --filter that set it
    for value in values:
        host, _, kind = value.rpartition("=")
        if kind not in FILTERS:
            fail(command, f"--filter {value}: the filter backend must be {' or '.join(FILTERS)}", 2)
        if host and host not in chosen:
            fail(command, f"--filter {value}: the spec has no host {host!r} (hosts: {', '.join(hosts)})", 2)
        if host in given:
            fail(command, f"--filter {value} and --filter {given[host]} say the same host twice: give one", 2)
        given[host] = value
    for host, value in sorted(given.items()):  # every host first, then each host named
        for name in [host] if host else hosts:
            chosen[name] = value.rpartition("=")[2]
    return chosen


# --- up -------------------------------------------------------------------------------------------


def up(
    spec: SpecArgument,
    backend: Annotated[BackendName, typer.Option(help="The data plane to build the network in.")] = BackendName.linux,
    filter: Annotated[
        list[str] | None,
        typer.Option("--filter", help="nftables (default) or iptables, for every host or as HOST=KIND (repeatable)."),
    ] = None,
    host_backend: Annotated[
        list[str] | None,
        typer.Option("--host-backend", help="HOST=linux or HOST=ebpf: this host's kernel backend (repeatable; "
                     "hosts of both kinds share the overlay)."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait for every host to converge.")] = 120.0,
    poll_mode: Annotated[PollMode, typer.Option(
        help="--backend userspace: busy (a whole core, lowest latency) or adaptive (sleeps when idle).")
    ] = PollMode.adaptive,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Rebuild the deployment of SPEC's name even if another spec file built it.")] = False,
    format: FormatOption = TextOrJson.text,
) -> None:
    """Build SPEC's network (idempotent: converges from any state, repairs drift)."""
    from netvirt.dataplane.linux.backend import check_network, network_backends
    from netvirt.dataplane.sim.backend import SimBackend
    from netvirt.graph import DeviceKind

    loaded, network, deployment = compiled(spec, "up")
    hosts = [host.name for host in loaded.hosts]
    filters = parse_filters(filter or [], hosts, "up")
    if not hosts:  # nothing to build: no agent would ever report
        if format is TextOrJson.json:
            typer.echo(json.dumps({"spec": loaded.name, "deployment": deployment, "backend": backend.value,
                                   "filters": {}, "seconds": 0.0, "hosts": []}, indent=2))
        else:
            typer.echo(f"{loaded.name}: the spec has no hosts; nothing to build")
        return
    kernel = backend.value in KERNEL_BACKENDS
    if host_backend and not kernel:
        fail("up", "--host-backend needs a kernel --backend (linux or ebpf)", 2)
    if kernel or backend.value == "userspace":
        require_net_admin("up")
        if kernel:
            kinds = parse_backends(backend.value, host_backend or [], hosts, "up")
            backends: dict[str, Any] = network_backends(network, deployment, filters, kinds=kinds, **kernel_settings())
        else:
            from netvirt.dataplane.userspace.backend import UserspaceBackend

            backends = UserspaceBackend.for_network(network, deployment=deployment, mode=poll_mode.value,
                                                    **kernel_settings())
            outside = network_backends(network, deployment, **kernel_settings())
            backends |= {host: outside[host] for host in backends if host not in hosts}  # the outside world: kernel
        problems = check_network(backends, network)
        if problems:
            for problem in problems:
                typer.echo(f"{spec}: {problem.where}: {problem.message}", err=True)
            used = " and ".join(sorted({made.name for made in backends.values()}))
            fail("up", f"{len(problems)} problem(s) with backend {used}; nothing was created", 2)
        claim_deployment(spec, loaded.name, deployment, replace)
        if backend.value != "userspace":  # the kernel takes the datapath back from a switch of an earlier up
            from netvirt.dataplane.userspace import process

            settings = kernel_settings()
            process.stop_all(process.run_dir(settings["state_dir"], settings["prefix"], deployment))
    else:
        backends = {graph.host: SimBackend(graph.host) for graph in network.hosts}
    started = time.monotonic()
    # SIGTERM ends like Ctrl-C: agents stop, what is built stays (``netvirt down`` removes it)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        states = converge(loaded, backends, timeout, Console(stderr=True), network)
    except KeyboardInterrupt:
        fail("up", "interrupted; what was built stays (run `netvirt down` to remove it)", 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    elapsed = time.monotonic() - started
    rows = []
    for graph in network.hosts:
        result = getattr(backends[graph.host], "last_report", None)
        rows.append({
            "host": graph.host,
            "state": states[graph.host],
            "namespaces": len(graph.namespaces),
            "devices": len([d for d in graph.devices if d.kind is not DeviceKind.SOCKET]),  # as `status` counts
            "created": result.created if result else None,
            "changed": result.changed if result else None,
            "deleted": result.deleted if result else None,
            "unchanged": result.unchanged if result else None,
        })
    if format is TextOrJson.json:
        typer.echo(json.dumps({"spec": loaded.name, "deployment": deployment, "backend": backend.value,
                               "filters": filters, "seconds": round(elapsed, 3), "hosts": rows}, indent=2))
        return
    table = Table("HOST", "STATE", "NAMESPACES", "DEVICES", "CREATED", "CHANGED", "DELETED", "UNCHANGED", box=None)
    for row in rows:
        table.add_row(*(str("-" if row[key] is None else row[key]) for key in
                        ("host", "state", "namespaces", "devices", "created", "changed", "deleted", "unchanged")))
    Console(width=200).print(table)
    where = f" (namespaces {kernel_settings()['prefix']}-{deployment}-*; `netvirt down {spec}` removes them)" \
        if kernel or backend.value == "userspace" else ""
    typer.echo(f"{loaded.name}: {len(rows)} hosts up with backend {backend.value} in {elapsed:.1f}s{where}")


def claim_deployment(spec_path: Path, spec_name: str, deployment: str, replace: bool) -> None:
    """Claim ``deployment`` for the spec at ``spec_path`` (see ``dataplane.kernel.claims``); exit 2,
    touching nothing, when another spec with the same name built it, unless ``replace``."""
    from netvirt.dataplane.kernel import claims

    state_dir = kernel_settings()["state_dir"]
    claim = claims.SpecClaim.of(spec_name, spec_path)
    held = claims.conflict(state_dir, deployment, claim)
    if held is not None and not replace:
        fail("up", f"{spec_path}: deployment {deployment} belongs to {held.describe()}, not to this file "
                   f"(content sha256 {claim.sha256[:12]}); nothing was changed. Give this spec another `name:`, "
                   f"run `netvirt down {held.path}` first, or give --replace to rebuild it from {spec_path}", 2)
    claims.write(state_dir, deployment, claim)


def owned_or_exit(spec_path: Path, spec_name: str, deployment: str, command: str) -> None:
    """Exit 2 when ``deployment`` was built by another spec than the one at ``spec_path``."""
    from netvirt.dataplane.kernel import claims

    held = claims.conflict(kernel_settings()["state_dir"], deployment, claims.SpecClaim.of(spec_name, spec_path))
    if held is not None:
        fail(command, f"{spec_path}: deployment {deployment} belongs to {held.describe()}, not to this file; "
                      f"nothing was changed (give that spec: `netvirt {command} {held.path}`)", 2)


def converge(loaded: Any, backends: dict[str, Any], timeout: float, console: Console, network: Any) -> dict[str, str]:
    """Publish ``loaded`` through an embedded controller (in-memory store) with one in-process
    agent per host driving ``backends`` — the controller's machinery on one machine — showing
    each host's progress on ``console``; then apply the hosts of ``network`` that are no spec
    host (the outside world) directly. The hosts' states once all converged (exit 1 when a
    host fails or ``timeout`` passes)."""
    from netvirt.control.controller import Embedded
    from netvirt.control.store import open_store

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=console, transient=True)
    tasks = {host: progress.add_task(f"{host}: waiting", total=None) for host in backends}

    def report(host: str, what: str) -> None:
        progress.update(tasks[host], description=f"{host}: {what}")

    for backend in backends.values():
        if hasattr(backend, "progress"):
            backend.progress = report
    with progress, Embedded(open_store("sqlite://:memory:"), lambda host: backends[host]) as embedded:
        embedded.apply(loaded)
        states = _wait(embedded, timeout, report)
        for graph in network.hosts:
            if graph.host in states:
                continue
            report(graph.host, "applying")
            result = backends[graph.host].apply(graph)
            if not result.ok:
                for error in result.errors:
                    typer.echo(f"{graph.host}: {error.where}: {error.message}", err=True)
                fail("up", f"{graph.host} (the outside world) failed to apply", 1)
            states[graph.host] = "converged"
            report(graph.host, "converged")
        return states


def _interrupt(*_: object) -> NoReturn:
    raise KeyboardInterrupt


def _wait(embedded, timeout: float, report) -> dict[str, str]:
    """Poll until every host converged; fail (exit 1) as soon as one reports a failure."""
    deadline = time.monotonic() + timeout
    while True:
        states = embedded.controller.hosts()
        for state in states:
            if state.in_sync:
                report(state.host, "converged")
        if states and all(state.in_sync for state in states):
            return {state.host: state.summary for state in states}
        failed = [s for s in states if s.summary == "failed" and s.status is not None]
        if failed:
            for state in failed:
                for error in state.status.errors:
                    typer.echo(f"{state.host}: {error}", err=True)
            fail("up", f"{', '.join(s.host for s in failed)} failed; fix the cause and run `netvirt up` again "
                       "(it converges from where it stopped) or `netvirt down`", 1)
        if time.monotonic() > deadline:
            late = ", ".join(f"{s.host} ({s.summary})" for s in states if not s.in_sync)
            fail("up", f"not converged after {timeout:g}s: {late}", 1)
        time.sleep(0.05)


# --- down -----------------------------------------------------------------------------------------


def down(
    spec: Annotated[Path | None, typer.Argument(help="The spec whose network to remove.", show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every network netvirt recorded on this machine.")] = False,
    format: FormatOption = TextOrJson.text,
) -> None:
    """Remove exactly the kernel objects netvirt made for SPEC (or, with --all, for every spec)."""
    from netvirt.dataplane.linux.backend import network_backends
    from netvirt.dataplane.kernel import claims
    from netvirt.dataplane.kernel.cleanup import cleanup, cleanup_all, unrecorded

    from netvirt.dataplane.userspace import process

    if (spec is None) == (not all_):
        fail("down", "give a SPEC or --all (not both)", 2)
    require_net_admin("down")
    reports = []
    settings = kernel_settings()
    if spec is not None:
        loaded, network, deployment = compiled(spec, "down")
        owned_or_exit(spec, loaded.name, deployment, "down")
        process.stop_all(process.run_dir(settings["state_dir"], settings["prefix"], deployment))  # the switches first
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=Console(stderr=True),
                      transient=True) as progress:
            task = progress.add_task("", total=len(network.hosts))
            for host, backend in network_backends(network, deployment, **kernel_settings()).items():
                progress.update(task, description=f"{host}: tearing down")
                backend.teardown()
                reports += backend.last_teardown
                progress.advance(task)
        reports.append(cleanup(names(deployment), kernel_settings()["state_dir"]))  # whatever a crashed or older `up` left
        reports = [_merged(deployment, reports)]
        claims.drop(settings["state_dir"], deployment)
    else:
        for run_dir in sorted((Path(settings["state_dir"]) / "userspace").glob(f"{settings['prefix']}-*")):
            process.stop_all(run_dir)
        reports = cleanup_all(settings["state_dir"])
        for claimed in claims.claimed(settings["state_dir"]):
            claims.drop(settings["state_dir"], claimed)
    strays = unrecorded(kernel_settings()["prefix"], kernel_settings()["state_dir"])
    if format is TextOrJson.json:
        typer.echo(json.dumps({
            "deployments": [{"deployment": r.deployment, "removed": len(r.removed), "already_gone": len(r.already_gone),
                             "refused": [str(o) for o in r.refused], "held_by": r.held_by} for r in reports],
            "unrecorded_namespaces": strays,
        }, indent=2))
    else:
        for r in reports:
            typer.echo(f"{r.deployment}: removed {len(r.removed)} recorded objects"
                       + (f" ({len(r.already_gone)} already gone)" if r.already_gone else ""))
            for pids in r.held_by.items():
                typer.echo(f"  namespace {pids[0]} is still held by processes {pids[1]} (netvirt does not kill them)")
        if not reports:
            typer.echo("nothing recorded: no netvirt network on this machine")
        if strays:
            typer.echo(f"namespaces named like netvirt's but not recorded (left alone): {', '.join(strays)}")


def _merged(deployment: str, reports: list) -> Any:
    from netvirt.dataplane.kernel.ownership import CleanupReport

    merged = CleanupReport(deployment)
    for report in reports:
        merged.removed += report.removed
        merged.already_gone += report.already_gone
        merged.refused += report.refused
        merged.held_by |= report.held_by
    return merged


# --- status ---------------------------------------------------------------------------------------


def _is_name(text: str) -> bool:
    from netvirt.management.spec.values import check_name

    try:
        check_name(text)
    except ValueError:
        return False
    return True


def status(
    target: Annotated[
        str | None,
        typer.Argument(help="A spec file: its kernel state per host. Otherwise a host name (or nothing): "
                            "ask the controller.", show_default=False),
    ] = None,
    format: FormatOption = TextOrJson.text,
    controller: control.ControllerOption = control.DEFAULT_CONTROLLER,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    token_file: control.TokenOption = None,
    deployment: DeploymentOption = None,
) -> None:
    """Desired vs realized per host: of SPEC in this kernel, or from the controller.

    For a spec: every namespace, device and rule the kernel lacks, has extra or differs in
    (drift such as a deleted veth or a flushed ruleset; `netvirt up SPEC` repairs it), and
    sockets nothing listens on. Exit 1 unless every host is in sync.
    """
    if target is not None and not Path(target).exists() and not _is_name(target):
        fail("status", f"{target}: no such spec file (and not a host name to ask the controller about)", 2)
    if target is None and not control.answers(controller):
        typer.echo(f"no controller at {controller} (give --controller URL to ask one)", err=True)
        _print_deployments(as_json or format is TextOrJson.json)
        return
    if target is None or not Path(target).exists():
        control.status(target, controller, as_json or format is TextOrJson.json, token_file)
        return
    from netvirt.dataplane.linux.backend import network_backends
    from netvirt.dataplane.userspace import process
    from netvirt.dataplane.userspace.backend import kernel_graph
    from netvirt.dataplane.userspace.oracle import switch_namespaces
    from netvirt.graph import DeviceKind, diff

    spec_path = Path(target)
    loaded, network, deployment = compiled(spec_path, "status", deployment)
    require_net_admin("status")
    settings = kernel_settings()
    backends = network_backends(network, deployment, kinds=deployed_backends(network, deployment), **settings)
    run_dir = process.run_dir(settings["state_dir"], settings["prefix"], deployment)
    userspace = set(process.hosts(run_dir))  # hosts whose datapath a userspace switch owns
    hosts = []
    for graph in network.hosts:
        backend = backends[graph.host]
        # under a userspace switch only its ports and the endpoints are kernel objects
        desired = kernel_graph(graph, switch_namespaces(network, graph.host)) if graph.host in userspace else graph
        switch = process.counters(run_dir, graph.host) if graph.host in userspace else None
        realized = backend.read(desired)
        sockets = {dev.key for dev in desired.devices if dev.kind is DeviceKind.SOCKET}
        changes = diff(realized, desired).changes
        missing_apps = sorted(f"{c.key}" for c in changes if (c.key.split("/")[0], c.key.split("/")[-1]) in sockets
                              and c.kind == "device")
        differences = [_difference(c) for c in changes if c.key not in missing_apps]
        drift = backend.drift(desired) if realized.namespaces else []
        filters = (backend.rules_in_use(desired.host) or "-") if realized.namespaces else "-"
        if graph.host in userspace and switch is None:
            differences.append("the userspace switch is not running (`netvirt up` starts it)")
        state = "down" if not realized.namespaces else ("in sync" if not differences and not drift else "drift")
        hosts.append({
            "host": desired.host, "state": state, "filter": filters,
            "backend": "userspace" if graph.host in userspace else backend.name, "switch": switch,
            "namespaces": {"desired": len(desired.namespaces), "realized": len(realized.namespaces)},
            "devices": {"desired": len(desired.devices) - len(sockets),
                        "realized": len([d for d in realized.devices if d.kind is not DeviceKind.SOCKET])},
            "differences": differences, "drift": drift, "not_listening": missing_apps,
            **_ebpf_counters(backend, desired),
        })
    in_sync = all(host["state"] == "in sync" for host in hosts)
    if format is TextOrJson.json or as_json:
        typer.echo(json.dumps({"spec": loaded.name, "deployment": deployment, "in_sync": in_sync, "hosts": hosts},
                              indent=2))
    else:
        table = Table("HOST", "STATE", "NAMESPACES", "DEVICES", "FILTER", "DIFFERENCES", box=None)
        for host in hosts:
            table.add_row(host["host"], host["state"],
                          f"{host['namespaces']['realized']}/{host['namespaces']['desired']}",
                          f"{host['devices']['realized']}/{host['devices']['desired']}",
                          host["filter"], str(len(host["differences"]) + len(host["drift"])))
        Console(width=200).print(table)
        for host in hosts:
            if host["state"] == "down":
                continue
            for line in host["differences"] + host["drift"]:
                typer.echo(f"  {host['host']}: {line}")
            if host["not_listening"]:
                typer.echo(f"  {host['host']}: nothing listens on {', '.join(host['not_listening'])} (applications)")
            if host["switch"] is not None:
                _print_switch(host["host"], host["switch"])
            for device, rows in host.get("xdp_drop", {}).items():
                counted = ", ".join(f"{row['prefix']} {row['packets']} packets / {row['bytes']} bytes" for row in rows)
                typer.echo(f"  {host['host']}: XDP drop_from on {device}: {counted}")
        if not in_sync:
            typer.echo(f"not in sync: `netvirt up {spec_path}` converges every host")
    if not in_sync:
        raise typer.Exit(1)


def deployments() -> list[dict]:
    """The deployments recorded on this machine (prefix of ``kernel_settings``): name, the spec
    file that claimed it (None: built by agents or an older netvirt), its namespaces now."""
    from netvirt.dataplane.kernel import claims, netns
    from netvirt.dataplane.kernel.ownership import RecordError, recorded_names

    settings = kernel_settings()
    try:
        recorded = [n.deployment for n in recorded_names(settings["state_dir"]) if n.prefix == settings["prefix"]]
    except (RecordError, OSError):
        recorded = []
    held = claims.claimed(settings["state_dir"])
    existing = netns.names()
    return [{"deployment": name, "spec": held[name].spec if name in held else None,
             "file": held[name].path if name in held else None,
             "namespaces": len([ns for ns in existing if names(name).owns_namespace(ns)])}
            for name in sorted(set(recorded) | set(held))]


def _print_deployments(as_json: bool) -> None:
    found = deployments()
    if as_json:
        typer.echo(json.dumps({"deployments": found}, indent=2))
        return
    if not found:
        typer.echo("no deployments on this machine")
        return
    table = Table("DEPLOYMENT", "SPEC", "FILE", "NAMESPACES", box=None)
    for row in found:
        table.add_row(row["deployment"], row["spec"] or "- (agents)", row["file"] or "-", str(row["namespaces"]))
    Console(width=200).print(table)
    typer.echo("`netvirt status SPEC [--deployment NAME]` compares one with its spec")


def _print_switch(host: str, switch: dict) -> None:
    """A userspace switch's counters: mode, CPU, flow cache, then rx/tx/drop per port."""
    cache = switch["flow_cache"]
    typer.echo(f"  {host}: userspace switch pid {switch['pid']} ({switch['mode']} polling, restarted "
               f"{switch['restarts']}x): CPU {switch['cpu_percent']}%, flow cache {cache['hits']} hits / "
               f"{cache['misses']} misses ({cache['entries']} flows)")
    table = Table("PORT", "RX", "TX", "DROP", box=None, padding=(0, 2))
    for port in switch["ports"]:
        table.add_row(port["port"], str(port["rx"]), str(port["tx"]), str(port["drop"]))
    Console(width=200).print(table)


def log(
    spec: SpecArgument,
    seconds: Annotated[float, typer.Option(min=0, help="Seconds to wait for more records.")] = 0.0,
    format: FormatOption = TextOrJson.text,
) -> None:
    """The records `log` rules wrote on SPEC's ebpf hosts (the programs' ring buffers; reading
    consumes them): namespace, chain, rule, action and flow, one line each."""
    from netvirt.dataplane.ebpf.target import log_lines

    loaded, network, deployment = compiled(spec, "log")
    require_net_admin("log")
    lines = log_lines(names(deployment), network, seconds)
    if format is TextOrJson.json:
        typer.echo(json.dumps({"spec": loaded.name, "deployment": deployment, "records": lines}, indent=2))
        return
    for line in lines:
        typer.echo(f"{line['host']}:{line['namespace']} {line['chain']} rule {line['rule']} [{line['prefix']}] "
                   f"{line['action']} {line['flow']}")


def _ebpf_counters(backend, desired) -> dict:
    """The counters of an ``ebpf`` host's programs, for ``status``: the XDP drop lists (dropped per
    entry, and passed) and the endpoint programs' per namespace."""
    if backend.name != "ebpf":
        return {}
    xdp = {device: [{"prefix": prefix, "packets": packets, "bytes": size} for prefix, packets, size in rows]
           for device, rows in backend.xdp_counters(desired).items()}
    return {"xdp_drop": xdp, "programs": backend.program_counters(desired)}


def _difference(change) -> str:
    """One line per changed object, as an operator reads it: missing / extra / differs in ..."""
    what = f"{change.kind} {change.key}"
    if change.op == "add":
        return f"missing {what}"
    if change.op == "remove":
        return f"extra {what} (not in the spec)"
    return f"{what} differs in {', '.join(change.fields)}"


# --- exec, capture --------------------------------------------------------------------------------


def kernel_namespace(spec_path: Path, place: str, command: str, deployment: str | None = None) -> tuple[str, str]:
    """(kernel namespace, graph namespace) of ``place``: an endpoint name, or HOST:NAMESPACE
    (a host's own namespace, a router's copy on that host, ...)."""
    from netvirt.graph import NamespaceKind

    spec, network, deployment = compiled(spec_path, command, deployment)
    kernel_names = names(deployment)
    if place == "external":  # the outside world's server (203.0.113.10)
        place = "internet:internet"
    host, colon, namespace = place.rpartition(":")
    if colon:
        if host not in {graph.host for graph in network.hosts}:
            fail(command, f"{place}: the spec has no host {host!r}", 2)
        graph = network.host(host)
        if namespace not in {ns.name for ns in graph.namespaces}:
            known = ", ".join(ns.name for ns in graph.namespaces)
            fail(command, f"{place}: host {host} has no namespace {namespace!r} (it has: {known})", 2)
        return kernel_names.graph_namespace(host, namespace), namespace
    for graph in network.hosts:
        for ns in graph.namespaces:
            if ns.origin == f"endpoint/{namespace}" or (
                    ns.name == namespace and ns.kind not in (NamespaceKind.HOST, NamespaceKind.ROUTER)):
                return kernel_names.graph_namespace(graph.host, ns.name), ns.name
    if namespace in spec.index["endpoints"]:  # a host endpoint lives in its host's namespace
        host = spec.endpoint(namespace).host
        return kernel_names.graph_namespace(host, host), host
    choices = ", ".join(sorted(spec.index["endpoints"]))
    fail(command, f"{place}: no endpoint {namespace!r}; give an endpoint ({choices}) or HOST:NAMESPACE", 2)


def exec_(
    spec: SpecArgument,
    endpoint: Annotated[str, typer.Argument(help="An endpoint, or HOST:NAMESPACE (e.g. host-a:acme-router).",
                                            show_default=False)],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).", show_default=False)],
    deployment: DeploymentOption = None,
) -> None:
    """Run COMMAND inside ENDPOINT's network namespace: netvirt exec SPEC web-1 -- ip addr."""
    from netvirt.dataplane.kernel import netns

    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        fail("exec", "give the command to run after --", 2)
    kernel, _ = kernel_namespace(spec, endpoint, "exec", deployment)
    require_net_admin("exec")
    if not netns.exists(kernel):
        fail("exec", f"namespace {kernel} does not exist; run `netvirt up {spec}` first", 1)
    try:
        netns.exec_in(kernel, command)
    except OSError as error:
        fail("exec", f"cannot run {command[0]!r} in {kernel}: {error.strerror or error}", 1)


def capture(
    spec: SpecArgument,
    device: Annotated[str, typer.Argument(
        help="[HOST:]NAMESPACE/DEVICE (e.g. web-1/eth0, host-a:host-a/vxlan-blue) or an underlay segment (underlay).",
        show_default=False)],
    write: Annotated[Path, typer.Option("--write", "-w", help="The pcap file to write.")],
    count: Annotated[int | None, typer.Option(help="Stop after this many frames.", min=1)] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.", min=0)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print a line per frame.")] = False,
    deployment: DeploymentOption = None,
    format: FormatOption = TextOrJson.text,
) -> None:
    """Capture frames on a device of SPEC's network into a pcap file (until Ctrl-C, --count or --duration)."""
    import threading

    from netvirt.dataplane.kernel import netns
    from netvirt.dataplane.linux.backend import SEGMENT_BRIDGE
    from netvirt.dataplane.kernel.capture import Capture, Frame
    from netvirt.dataplane.linux.readback import link_names
    from netvirt.wire import dissect, pcap, summary
    from netvirt.wire.errors import ParseError

    if "/" in device:
        place, _, link = device.rpartition("/")
        kernel, _ = kernel_namespace(spec, place, "capture", deployment)
    else:
        loaded, network, deployment = compiled(spec, "capture", deployment)
        segments = [segment.name for segment in network.segments]
        if device not in segments:
            fail("capture", f"{device}: give [HOST:]NAMESPACE/DEVICE or a segment ({', '.join(segments)})", 2)
        kernel, link = names(deployment).segment_namespace(device), SEGMENT_BRIDGE
    require_net_admin("capture")
    if not netns.exists(kernel):
        fail("capture", f"namespace {kernel} does not exist; run `netvirt up {spec}` first", 1)
    points = [(kernel, link)]
    if link == SEGMENT_BRIDGE:  # a bridge device sees only what it floods or receives itself:
        # capture what enters the segment on each host's port instead
        points = [(kernel, name) for name in link_names(kernel) if name not in ("lo", SEGMENT_BRIDGE)]
    done = threading.Event()
    seen = [0]
    lock = threading.Lock()
    try:
        writer = pcap.Writer(write, nanosecond=True)
    except OSError as error:
        fail("capture", f"cannot write {write}: {error.strerror}", 2)

    def on_frame(frame: Frame) -> None:
        with lock:
            if done.is_set() or frame.outgoing and len(points) > 1:
                return
            writer.write(frame.data, timestamp_ns=int(frame.timestamp * 1e9))
            seen[0] += 1
            if not quiet and format is TextOrJson.text:
                try:
                    text = summary(dissect(frame.data))
                except ParseError as error:
                    text = f"[undecodable] {error}"
                typer.echo(f"{seen[0]:>5} {'out' if frame.outgoing else 'in ':3} {text}")
            if count is not None and seen[0] >= count:
                done.set()

    started = time.monotonic()
    try:
        with writer, Capture(points, on_frame=on_frame, keep=False):
            typer.echo(f"capturing on {kernel}/{link} into {write} (Ctrl-C to stop)", err=True)
            done.wait(duration)
    except KeyboardInterrupt:
        pass
    except OSError as error:
        fail("capture", f"cannot capture on {kernel}/{link}: {error.strerror or error}", 1)
    if format is TextOrJson.json:
        typer.echo(json.dumps({"file": str(write), "namespace": kernel, "device": link, "frames": seen[0],
                               "seconds": round(time.monotonic() - started, 3)}))
    else:
        typer.echo(f"{seen[0]} frames written to {write}", err=True)



# --- logs -----------------------------------------------------------------------------------------


def logs(
    spec: SpecArgument,
    count: Annotated[int | None, typer.Option(help="Stop after this many records.", min=1)] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.", min=0)] = None,
    format: FormatOption = TextOrJson.text,
) -> None:
    """Show what SPEC's `log` rules record, as packets hit them (until Ctrl-C, --count or --duration).

    One line per logged packet: time, HOST:NAMESPACE, hook, the rule's prefix, in/out interface and
    the packet. The rules send packets to netvirt's NFLOG group in each namespace (the kernel log
    is silent outside the root namespace); only while this runs are they kept.
    """
    import threading
    from datetime import UTC, datetime

    from netvirt.dataplane.kernel import netns
    from netvirt.dataplane.kernel.nflog import LogError, LogRecord, Logs
    from netvirt.dataplane.linux.readback import graph_place

    loaded, network, deployment = compiled(spec, "logs")
    kernel_names = names(deployment)
    logged = [kernel_names.graph_namespace(graph.host, ns.name) for graph in network.hosts for ns in graph.namespaces
              if any(rule.log is not None for chain in (*ns.filter, *ns.nat) for rule in chain.rules)]
    if not logged:
        fail("logs", f"{spec}: no policy has a `log` rule (add {{action: log, ...}} to a policy's rules)", 2)
    require_net_admin("logs")
    missing = [name for name in logged if not netns.exists(name)]
    if missing:
        fail("logs", f"namespace {missing[0]} does not exist; run `netvirt up {spec}` first", 1)
    done = threading.Event()
    seen = [0]
    lock = threading.Lock()

    def on_record(record: LogRecord) -> None:
        with lock:
            if done.is_set():
                return
            seen[0] += 1
            host, namespace = graph_place(kernel_names, record.namespace) or ("?", record.namespace)
            if format is TextOrJson.json:
                typer.echo(json.dumps({"time": record.timestamp, "host": host, "namespace": namespace,
                                       "hook": record.hook, "prefix": record.prefix, "in": record.in_iface,
                                       "out": record.out_iface, "packet": record.summary()}))
            else:
                when = datetime.fromtimestamp(record.timestamp, UTC).strftime("%H:%M:%S.%f")
                typer.echo(f"{when} {host}:{namespace} {record.hook} {record.prefix} "
                           f"in={record.in_iface or '-'} out={record.out_iface or '-'} {record.summary()}")
            if count is not None and seen[0] >= count:
                done.set()

    try:
        with Logs(logged, on_record=on_record):
            typer.echo(f"listening to the log rules of {len(logged)} namespaces (Ctrl-C to stop)", err=True)
            done.wait(duration)
    except LogError as error:
        fail("logs", str(error), 1)
    except KeyboardInterrupt:
        pass
