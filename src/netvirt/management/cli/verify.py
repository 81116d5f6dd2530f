"""``netvirt verify``: real probes through a deployment in the kernel, compared with the simulator's
prediction in both directions. Exit codes: 0 all agree, 1 a disagreement or runtime failure, 2 bad input.
"""

import contextlib
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from netvirt.management.cli.choices import TextOrJson
from netvirt.management.cli.linux import (
    DeploymentOption,
    FormatOption,
    SpecArgument,
    compiled,
    fail,
    kernel_settings,
    names,
    require_net_admin,
)
from netvirt.management.cli.options import conflicts


def register(app: typer.Typer) -> None:
    app.command()(verify)


def verify(
    spec: SpecArgument,
    source: Annotated[str | None, typer.Option("--from", help="Endpoint or address sending the probe.")] = None,
    target: Annotated[str | None, typer.Option("--to", help="Endpoint, address, IP:PORT or service.")] = None,
    proto: Annotated[str | None, typer.Option("--proto", help="tcp, udp or icmp (default: the target's).")] = None,
    dport: Annotated[int | None, typer.Option("--dport", min=1, max=65535, help="Destination port.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every endpoint pair and service, as `netvirt reach`.")] = False,
    detail: Annotated[bool, typer.Option("--detail", help="The packet at every place, side by side.")] = False,
    deployment: DeploymentOption = None,
    format: FormatOption = TextOrJson.text,
) -> None:
    """Send real probes through the kernel and compare with the simulator's prediction.

    For each flow (TCP connect, UDP request or ICMP echo): the disposition and where it was
    delivered, the devices the request crossed in order (the drop point is the last), the packet
    at each (addresses, ports, NAT rewrites) and the encapsulation on the underlay (VNI, outer
    addresses and port). Needs the network up (`netvirt up SPEC`). Exit 1 on any disagreement.
    """
    import random

    from netvirt.dataplane import registry
    from netvirt.trace.plan import BadInput, outside_world, plan_trace, verify_probes
    from netvirt.trace.verify import Verifier

    conflicts(("--proto icmp", proto == "icmp"), ("--dport", dport is not None))
    loaded, network, deployment = compiled(spec, "verify", deployment)
    if all_ == (source is not None or target is not None):
        fail("verify", "give --from and --to (with --proto/--dport), or --all", 2)
    if proto is not None and proto not in ("tcp", "udp", "icmp"):
        fail("verify", f"--proto {proto}: choose tcp, udp or icmp", 2)
    base = random.randrange(20000, 50000)  # fresh source ports: no conntrack state from earlier runs
    if all_:
        labelled = [(p.source, p.target, p.flow) for p in verify_probes(loaded, base)]
    else:
        try:
            _, flow, _ = plan_trace(loaded, source, target, proto, dport, base, None, compile=lambda _: network)
        except BadInput as error:
            fail("verify", str(error), 2)
        labelled = [(source, target, flow)]
    network = outside_world(network, [flow for _, _, flow in labelled])  # listening where the flows go
    require_net_admin("verify")
    observer = registry.observer("linux", deployment, prefix=kernel_settings()["prefix"])
    missing = [g.host for g in network.hosts if not observer.exists(g.host, g.host)]
    if missing:
        fail("verify", f"hosts {', '.join(missing)} are not up; run `netvirt up {spec}` first", 1)
    from netvirt.dataplane.userspace import process
    from netvirt.dataplane.userspace.backend import verification

    settings = kernel_settings()
    userspace = process.hosts(process.run_dir(settings["state_dir"], settings["prefix"], deployment))
    options = verification(network, userspace) if userspace else {}
    in_kernel = options.get("exists", lambda place: True)
    drift = missing_devices(network, names(deployment), in_kernel)
    for place in drift:
        typer.echo(f"netvirt verify: drift: device {place} is missing (`netvirt up {spec}` repairs it); "
                   "flows through it cannot agree", err=True)
    options["exists"] = lambda place: in_kernel(place) and f"{place[0]}:{place[1]}/{place[2]}" not in drift
    with probing(len(labelled)) as progress, Verifier(network, observer, **options) as verifier:
        results = verifier.verify_all([flow for _, _, flow in labelled], progress=progress)
    agree = all(r.agrees for r in results) and not drift
    if format is TextOrJson.json:
        typer.echo(json.dumps({"spec": loaded.name, "agree": agree, "drift": drift, "flows": [
            {"from": a, "to": b, **r.to_json()} for (a, b, _), r in zip(labelled, results, strict=True)]}, indent=2))
    else:
        _verify_table(labelled, results, detail or not all_)
    if not agree:
        raise typer.Exit(1)


@contextlib.contextmanager
def probing(total: int, every: float = 10.0):
    """A ``progress(done, total)`` for ``Verifier.verify_all``: a bar with the ETA in a terminal,
    else a line on stderr every ``every`` seconds (and at the end) for logs and CI."""
    console = Console(stderr=True)
    started = last = time.monotonic()
    if console.is_terminal:
        with Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("", total=total)
            yield lambda done, _: bar.update(task, completed=done)
        return

    def line(done: int, _: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or done == total:
            last = now
            left = (now - started) / done * (total - done)
            typer.echo(f"netvirt verify: {done}/{total} flows probed in {now - started:.0f}s"
                       + (f", about {left:.0f}s left" if done < total else ""), err=True)

    yield line


def missing_devices(network: Any, kernel_names: Any, in_kernel: Any) -> list[str]:
    """``host:namespace/device`` of every device of ``network`` that should be a kernel link
    (``in_kernel((host, namespace, device))``, sockets never) and its namespace lacks (drift, e.g. a
    hand-deleted veth); a missing namespace counts as all its devices missing."""
    from netvirt.dataplane.kernel import netns
    from netvirt.dataplane.linux.readback import link_names
    from netvirt.graph import DeviceKind

    missing = []
    for graph in network.hosts:
        present: dict[str, set[str]] = {}
        for dev in graph.devices:
            if dev.kind is DeviceKind.SOCKET or not in_kernel((graph.host, dev.namespace, dev.name)):
                continue
            if dev.namespace not in present:
                kernel = kernel_names.graph_namespace(graph.host, dev.namespace)
                present[dev.namespace] = set(link_names(kernel)) if netns.exists(kernel) else set()
            if dev.name not in present[dev.namespace]:
                missing.append(f"{graph.host}:{dev.namespace}/{dev.name}")
    return missing


def _verify_table(labelled: list, results: list, detail: bool) -> None:
    console = Console(width=200, highlight=False)
    table = Table("FROM", "TO", "FLOW", "PREDICTED (simulator)", "OBSERVED (kernel)", "AGREE", box=None)
    for (source, target, flow), result in zip(labelled, results, strict=True):
        what = f"{flow.proto}/{flow.dst_port}" if flow.proto != "icmp" else "icmp"
        table.add_row(source, target, what, _outcome(result.predicted), _outcome(result.observed),
                      "yes" if result.agrees else "[bold red]NO[/]")
    console.print(table)
    for (source, target, flow), result in zip(labelled, results, strict=True):
        if result.agrees and not detail:
            continue
        console.print(f"\n[bold]{source} -> {target}[/] ({flow.proto} {flow.src}:{flow.src_port} > {flow.dst}:{flow.dst_port})")
        rows = Table("", "PLACE", "PREDICTED", "OBSERVED", box=None)
        for label, want, got in (("request", result.predicted.request, result.observed.request),
                                 ("answer", result.predicted.answer, result.observed.answer)):
            places = list(want.places) + [p for p in got.places if p not in want.places]
            for index, place in enumerate(places):
                predicted, observed = want.packets.get(place), got.packets.get(place)
                rows.add_row(label if index == 0 else "", place, str(predicted) if place in want.places else "-",
                             str(observed) if observed is not None else "[red]not seen[/]")
            if not places:
                rows.add_row(label, "-", "none", "none")
        console.print(rows)
        console.print(f"  simulator: {result.predicted.detail}; answer {result.predicted.answered}\n"
                      f"  kernel:    {result.observed.detail}; answer {result.observed.answered}")
        for problem in result.problems:
            console.print(f"  [red]disagrees:[/] {problem}")
    total, agreeing = len(results), sum(r.agrees for r in results)
    console.print(f"\n{agreeing} of {total} flows: the kernel did what the simulator predicted"
                  + ("" if agreeing == total else f"; {total - agreeing} disagree"))


def _outcome(side) -> str:
    where = side.delivered_to or (side.places[-1] if side.places else "at the sender")
    return f"{side.disposition} ({where})" if side.disposition != "delivered" else f"delivered to {where}"
