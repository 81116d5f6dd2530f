"""``netvirt validate|show|schema|init|generate``: working with spec files.

Exit codes: 0 ok, 1 runtime failure, 2 bad input (an invalid spec, a file that exists, bad options).
Other commands load specs with ``load_or_exit`` so that every command reports problems alike.
"""

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netvirt.management.cli.choices import TableOrJson, TextOrJson, YamlOrJson
from netvirt.management.cli.options import output_file
from netvirt.management.spec import KINDS, Spec, SpecError, as_data, json_schema, load, starter_spec
from netvirt.management.spec.dump import dump_data
from netvirt.management.spec.generate import generate as generate_spec
from netvirt.management.spec.generate import generated

SpecPath = Annotated[
    Path, typer.Argument(help="A spec file (YAML or JSON) or a directory of them.", show_default=False)
]


def register(app: typer.Typer) -> None:
    for command in (validate, show, schema, init, generate):
        app.command()(command)


def load_or_exit(path: Path, command: str) -> Spec:
    """The resolved spec at ``path``; on problems, print them to stderr and exit 2."""
    try:
        return load(path)
    except SpecError as error:
        report_problems(error, f"netvirt {command}")
        raise typer.Exit(2) from None


def report_problems(error: SpecError, who: str, what: str = "spec") -> None:
    for problem in error.problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"{who}: invalid {what}, {error.summary}", err=True)


# --- commands ------------------------------------------------------------------------------------


def validate(
    spec: SpecPath,
    format: Annotated[TextOrJson, typer.Option("--format", "-f", help="text, or json for tools.")] = TextOrJson.text,
) -> None:
    """Check SPEC and report every problem at once as FILE:LINE:COL: error: PATH: message.

    Exit 0 when valid, 2 when not. json prints {"valid": bool, "problems": [{file, line, col, path,
    message}], "counts": {kind: n}} on stdout (the exit code is the same).
    """
    try:
        loaded = load(spec)
    except SpecError as error:
        if format is TextOrJson.json:
            typer.echo(json.dumps({"valid": False, "problems": [p.as_dict() for p in error.problems]}, indent=2))
        else:
            report_problems(error, "netvirt validate")
        raise typer.Exit(2) from None
    counts = {kind: len(getattr(loaded, kind)) for kind in KINDS}
    if format is TextOrJson.json:
        typer.echo(json.dumps({"valid": True, "problems": [], "counts": counts}, indent=2))
    else:
        summary = ", ".join(f"{kind} {count}" for kind, count in counts.items())
        typer.echo(f"{spec}: valid ({summary})")


def show(
    spec: SpecPath,
    format: Annotated[
        TableOrJson, typer.Option("--format", "-f", help="table, or json (the resolved spec).")
    ] = TableOrJson.table,
) -> None:
    """Print SPEC resolved: hosts, networks with VNI/MTU, endpoints with their allocated IPs and
    MACs, routers, policies, services and stacks. json prints the resolved spec as data (the same
    keys as a spec file, every allocated value filled in)."""
    loaded = load_or_exit(spec, "show")
    if format is TableOrJson.json:
        typer.echo(json.dumps(loaded.model_dump(mode="json", by_alias=True), indent=2))
        return
    console = Console(width=None if sys.stdout.isatty() else 160)  # pipes: wide enough for every column
    shown = [table for table in tables(loaded) if table.row_count]
    for table in shown:
        console.print(table)
    if not shown:
        typer.echo(f"{loaded.name}: an empty spec (no hosts, networks or endpoints); `netvirt init` writes a starter")


def schema(
    format: Annotated[YamlOrJson, typer.Option("--format", "-f", help="json (default) or yaml.")] = YamlOrJson.json,
) -> None:
    """Print the JSON Schema of spec files (for editor completion and checks)."""
    document = json_schema()
    if format is YamlOrJson.json:
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo(yaml.safe_dump(document, sort_keys=False), nl=False)


def init(
    path: Annotated[Path, typer.Argument(help="Where to write the starter spec.", callback=output_file)] = Path(
        "netvirt.yaml"
    ),
) -> None:
    """Write a commented starter spec to PATH (default netvirt.yaml); never overwrites a file."""
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(starter_spec())
    except FileExistsError:
        typer.echo(f"netvirt init: {path} already exists; not overwriting it (choose another path)", err=True)
        raise typer.Exit(2) from None
    except OSError as error:  # (a missing directory is refused by the argument's callback)
        typer.echo(f"netvirt init: cannot write {path}: {error.strerror or error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path}: edit it, then run: netvirt validate {path}")


def generate(
    hosts: Annotated[int, typer.Option("--hosts", min=1, help="Number of hosts.")] = 10,
    endpoints_per_host: Annotated[int, typer.Option("--endpoints-per-host", min=0, help="Endpoints on each host.")] = 5,
    format: Annotated[YamlOrJson, typer.Option("--format", "-f", help="yaml or json.")] = YamlOrJson.yaml,
    resolved: Annotated[bool, typer.Option("--resolved", help="Write every allocated value out too.")] = False,
) -> None:
    """Print a valid spec of HOSTS x ENDPOINTS-PER-HOST endpoints (for scale tests).

    Every 10 hosts share a dual-stack network; networks alternate between two tenants whose subnets
    overlap. Addresses, MACs and VNIs are left to the allocator unless --resolved.
    """
    try:
        data = as_data(generate_spec(hosts, endpoints_per_host)) if resolved else generated(hosts, endpoints_per_host)
    except ValueError as error:
        typer.echo(f"netvirt generate: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        json.dumps(data, indent=1) if format is YamlOrJson.json else dump_data(data), nl=format is YamlOrJson.json
    )


# --- tables --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:
        table.add_row(*map(_text, row))
    return table


def tables(spec: Spec) -> list[Table]:
    """Rich tables of the resolved spec, one per kind (empty kinds give empty tables)."""
    return [
        _table(
            "hosts",
            ("name", "underlay", "mtu", "nic", "labels"),
            ((h.name, h.underlay, h.mtu, h.nic, _labels(h.labels)) for h in spec.hosts),
        ),
        _table(
            "networks",
            ("name", "tenant", "encap", "vni", "subnet", "gateway", "subnet6", "gateway6", "mtu"),
            (
                (n.name, n.tenant, n.encap, n.vni, n.subnet, n.gateway, n.subnet6, n.gateway6, n.mtu)
                for n in spec.networks
            ),
        ),
        _table(
            "routers",
            ("name", "networks", "routes", "snat"),
            (
                (
                    r.name,
                    ", ".join(r.networks),
                    ", ".join(f"{x.to} via {x.via}" for x in r.routes),
                    "yes" * r.snat or "no",
                )
                for r in spec.routers
            ),
        ),
        _table(
            "endpoints", ("name", "kind", "host", "network", "ip", "ip6", "mac", "listen", "labels"), _endpoints(spec)
        ),
        _table(
            "policies", ("policy", "scope", "direction", "#", "action", "from", "to", "proto", "ports"), _rules(spec)
        ),
        _table(
            "services",
            ("name", "tenant", "vip", "port", "target", "backends", "affinity"),
            (
                (s.name, s.tenant, s.vip, s.port, s.target_port, ", ".join(s.backends), s.affinity)
                for s in spec.services
            ),
        ),
        _table(
            "stacks",
            ("name", "layers (bottom to top)"),
            ((s.name, escape(" -> ".join(map(layer_text, s.layers)))) for s in spec.stacks),
        ),
    ]


def _endpoints(spec: Spec) -> Iterator[tuple[Any, ...]]:
    """One row per attachment; the endpoint's own columns on its first row only."""
    for endpoint in spec.endpoints:
        own = (endpoint.name, endpoint.kind, endpoint.host)
        rest = (" ".join(map(str, endpoint.listen)), _labels(endpoint.labels))
        for position, attachment in enumerate(endpoint.attachments):
            blank = position > 0
            row = (attachment.network, attachment.ip, attachment.ip6, attachment.mac)
            yield ("",) * 3 + row + ("",) * 2 if blank else own + row + rest


def _rules(spec: Spec) -> Iterator[tuple[Any, ...]]:
    """One row per rule, then the default; the policy's own columns on its first row only."""
    for policy in spec.policies:
        scope = f"network {policy.network}" if policy.network else f"tenant {policy.tenant}"
        own: tuple[Any, ...] = (policy.name, scope, policy.direction)
        for number, rule in enumerate(policy.rules, 1):
            ports = [
                f"sport {','.join(map(str, rule.src_port))}" if rule.src_port else "",
                f"dport {','.join(map(str, rule.dst_port))}" if rule.dst_port else "",
                f"type {rule.icmp_type}" if rule.icmp_type is not None else "",
            ]
            peers = (",".join(map(str, rule.from_)) or "any", ",".join(map(str, rule.to)) or "any")
            yield (*own, number, rule.action, *peers, rule.proto, " ".join(p for p in ports if p))
            own = ("", "", "")
        yield (*own, "default", policy.default, "", "", "", "")


def layer_text(layer: Any) -> str:
    """``hypervisor(virtualbox, bridged)``: the layer and its options that are set."""
    options = [
        str(value)
        for key, value in layer.model_dump(mode="json", exclude={"layer"}).items()
        if value not in (None, False, "") and key not in ("host", "endpoint", "label")
    ]
    tie = layer.host if getattr(layer, "host", None) else getattr(layer, "endpoint", None)
    text = f"{layer.layer}({', '.join(options)})" if options else layer.layer
    text = f"{text}[{tie}]" if tie else text
    return f"{layer.label}: {text}" if layer.label else text
