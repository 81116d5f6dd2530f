"""``netvirt trace`` and ``netvirt reach``: walk packets through a spec, hop by hop.

``trace SPEC --from SRC --to DST`` compiles the spec (``control.compile``) and traces one packet
between endpoints, addresses, services or the outside world; ``trace SPEC --stack NAME`` (or just
``trace SPEC`` when the spec has one stack) builds the stack's environment graph
(``environments``) and walks a packet from the outside up to its app — the notes' walkthroughs.
``reach SPEC`` answers every endpoint pair and service at once. Bad input: a message naming what
is wrong and what would be right, exit code 2. The library functions ``plan_trace`` and
``reach_probes`` are what the commands run, for other front ends (the REST API).
"""

import sys
from enum import Enum
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Annotated

import typer

from netvirt.control.compile import CompileError, compile_network
from netvirt.environments import StackError, build
from netvirt.management.cli.choices import TableOrJson
from netvirt.management.cli.spec import load_or_exit
from netvirt.management.spec import Spec
from netvirt.trace import INTERNET, Flow, Probe, Tracer, compare, reach, with_internet
from netvirt.trace import reachability as reach_module
from netvirt.trace import render
from netvirt.trace.run import INTERNET6, INTERNET_HOST

Address = IPv4Address | IPv6Address


class BadInput(ValueError):
    """A ``--from``/``--to``/``--stack`` the spec cannot answer; the message says how to fix it."""


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    pcap = "pcap"


class Proto(str, Enum):
    tcp = "tcp"
    udp = "udp"
    icmp = "icmp"


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)
    app.command("reach")(reach_command)


# --- the commands --------------------------------------------------------------------------------


def trace(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A spec file or directory.")],
    source: Annotated[str | None, typer.Option("--from", help="Endpoint, IP or 'external'.")] = None,
    target: Annotated[str | None, typer.Option("--to", help="Endpoint, IP, IP:PORT, service or 'external'.")] = None,
    proto: Annotated[Proto | None, typer.Option("--proto", help="tcp (default), udp or icmp.")] = None,
    dport: Annotated[int | None, typer.Option("--dport", min=1, max=65535, help="Destination port.")] = None,
    sport: Annotated[int, typer.Option("--sport", min=1, max=65535, help="Source port.")] = 40000,
    stack: Annotated[str | None, typer.Option("--stack", help="Walk this stack from the outside to its app.")] = None,
    format: Annotated[Format, typer.Option("--format", "-f", help="table, markdown, json or pcap.")] = Format.table,
    detail: Annotated[bool, typer.Option("--detail", help="One row per device, with action and packet.")] = False,
    size: Annotated[int, typer.Option("--size", min=0, max=65535, help="IP packet size in bytes (DF set).")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to FILE (pcap needs it).")] = None,
) -> None:
    """Trace one packet hop by hop: mode, system level and technique at every step; where it dies
    and why; anomalies with fixes.

    With --stack (or when SPEC has exactly one stack and no --from) the packet enters from the
    outside at the stack's bottom layer and travels up to its app, as in the notes' walkthroughs.
    """
    spec = load_or_exit(spec_path, "trace")
    if format is Format.pcap and output is None:
        _fail("--format pcap writes a binary file: give -o FILE.pcap")
    try:
        tracer, flow, skip = plan_trace(spec, source, target, None if proto is None else proto.value, dport, sport,
                                        stack, size)
    except (BadInput, StackError, CompileError) as error:
        _fail(str(error))
    result = tracer.trace(flow, skip=skip)
    if format is Format.pcap:
        frames = render.pcap(result, str(output))
        typer.echo(f"wrote {frames} frames (one per hop) to {output}", err=True)
        return
    text = {Format.table: lambda: render.table(result, detail=detail),
            Format.markdown: lambda: render.markdown(result, detail=detail),
            Format.json: lambda: render.json_text(result)}[format]()
    _write(text, output)


def reach_command(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A spec file or directory.")],
    format: Annotated[TableOrJson, typer.Option("--format", "-f", help="table or json.")] = TableOrJson.table,
    other: Annotated[Path | None, typer.Option("--diff", metavar="OTHER_SPEC",
                                               help="Show only what changes from SPEC to OTHER_SPEC.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to FILE.")] = None,
) -> None:
    """Every endpoint pair (on each port the target listens on; ICMP echo if none) and every
    service from every endpoint: allowed or dropped, and by what. --diff: what a change alters."""
    spec = load_or_exit(spec_path, "reach")
    results = _reach(spec)
    if other is None:
        text = reach_module.to_json(results) if format is TableOrJson.json else reach_module.table(results)
    else:
        changes = compare(results, _reach(load_or_exit(other, "reach")))
        text = reach_module.diff_json(changes) if format is TableOrJson.json else reach_module.diff_table(changes)
    _write(text, output)


def _reach(spec: Spec):
    try:
        network = compile_network(spec)
    except CompileError as error:
        _fail(str(error))
    return reach(Tracer(network), reach_probes(spec))


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _fail(message: str) -> None:
    typer.echo(f"netvirt: {message}", err=True)
    raise typer.Exit(2)


# --- planning a trace ----------------------------------------------------------------------------


def plan_trace(spec: Spec, source: str | None, target: str | None, proto: str | None, dport: int | None,
               sport: int, stack: str | None, size: int = 0) -> tuple[Tracer, Flow, frozenset[tuple[str, str]]]:
    """The tracer, the flow and the namespaces to leave out for a ``netvirt trace`` command line."""
    if stack is not None or (source is None and target is None and len(spec.stacks) == 1):
        return _plan_stack(spec, stack or spec.stacks[0].name, source, target, proto, dport, sport, size)
    if source is None or target is None:
        stacks = ", ".join(s.name for s in spec.stacks) or "none"
        raise BadInput(f"give both --from and --to (endpoint names, IPs, IP:PORT, service names or 'external'), or "
                       f"--stack NAME to walk a stack from the outside (stacks in {spec.name}: {stacks})")
    network = compile_network(spec)
    if "external" in (source, target):
        wanted = proto or "tcp"
        network = with_internet(network, ((wanted, dport or 443),) if wanted != "icmp" and target == "external" else ())
    dst, dst_proto, dst_port, dst_family = _target(spec, network, target)
    src_host, src_ns, src = _source(spec, network, source, dst_family)
    if src.version != dst.version:
        raise BadInput(f"--from {source} has no IPv{dst.version} address to reach {dst}")
    chosen = proto or dst_proto or "tcp"
    port = dport or dst_port or (443 if target == "external" else 80)
    flow = Flow(src_host, src_ns, src, dst, chosen, sport, port, size)
    return Tracer(network), flow, frozenset({(INTERNET_HOST, "internet")}) & frozenset({(src_host, src_ns)})


def _plan_stack(spec: Spec, name: str, source, target, proto, dport, sport, size):
    if name not in spec.index["stacks"]:
        stacks = ", ".join(s.name for s in spec.stacks) or "none"
        raise BadInput(f"--stack {name!r}: no such stack in {spec.name} (stacks: {stacks})")
    if source is not None or target is not None:
        raise BadInput("--stack walks a packet from the outside to the stack's app: leave out --from and --to "
                       "(use --proto/--dport to change the packet)")
    graph = build(spec, spec.stack(name))
    flow = Flow(graph.host, graph.client, graph.client_address, graph.target, proto or graph.proto, sport,
                dport or graph.port, size)
    return Tracer(graph.network), flow, frozenset({(graph.host, graph.client)})


def _target(spec: Spec, network, text: str) -> tuple[Address, str | None, int | None, int | None]:
    """``(address, proto, port, family)`` of a ``--to``; proto/port None when it does not say."""
    if text == "external":
        return INTERNET, None, None, 4
    if text in spec.index["services"]:
        service = spec.service(text)
        return service.vip, str(service.port.proto), service.port.port, service.vip.version
    if text in spec.index["endpoints"]:
        endpoint = spec.endpoint(text)
        address = _endpoint_address(endpoint, None)
        listen = endpoint.listen[0] if endpoint.listen else None
        return address, str(listen.proto) if listen else None, listen.port if listen else None, address.version
    host, _, port = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else ("", "", "")
    address_text = host.strip("[]") if host else text
    try:
        address = ip_address(address_text)
    except ValueError:
        raise BadInput(f"--to {text!r}: not an endpoint, service, address or 'external' of {spec.name} "
                       f"({_names(spec)})") from None
    if port:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise BadInput(f"--to {text!r}: the port must be 1-65535")
        return address, None, int(port), address.version
    return address, None, None, address.version


def _source(spec: Spec, network, text: str, family: int | None) -> tuple[str, str, Address]:
    if text == "external":
        return INTERNET_HOST, "internet", INTERNET if family != 6 else INTERNET6
    if text in spec.index["endpoints"]:
        endpoint = spec.endpoint(text)
        namespace = endpoint.host if endpoint.kind == "host" else endpoint.name
        return endpoint.host, namespace, _endpoint_address(endpoint, family)
    try:
        address = ip_address(text)
    except ValueError:
        raise BadInput(f"--from {text!r}: not an endpoint, address or 'external' of {spec.name} "
                       f"({_names(spec)})") from None
    owners = [(graph.host, dev.namespace) for graph in network.hosts for dev in graph.devices
              if any(a.ip == address for a in dev.addresses)]
    owners = list(dict.fromkeys(owners))
    if not owners:
        raise BadInput(f"--from {text}: no namespace of {spec.name} has this address")
    if len(owners) > 1:
        raise BadInput(f"--from {text}: the address is in several namespaces ("
                       + ", ".join(f"{h}:{n}" for h, n in owners) + "); name the endpoint instead")
    return owners[0][0], owners[0][1], address


def _endpoint_address(endpoint, family: int | None) -> Address:
    for attachment in endpoint.attachments:
        for address in (attachment.ip, attachment.ip6):
            if address is not None and (family is None or address.version == family):
                return address
    raise BadInput(f"endpoint {endpoint.name} has no IPv{family} address")


def _names(spec: Spec) -> str:
    endpoints = ", ".join(e.name for e in spec.endpoints) or "none"
    services = ", ".join(s.name for s in spec.services) or "none"
    return f"endpoints: {endpoints}; services: {services}"


# --- reachability probes -------------------------------------------------------------------------


def reach_probes(spec: Spec) -> list[Probe]:
    """Every ordered endpoint pair on each (proto, port) the target listens on (an ICMP echo
    when it listens on none), then every service VIP:port from every endpoint; IPv4 when both
    sides have it, else IPv6."""
    probes = []
    for source in spec.endpoints:
        namespace = _place_of(source)[1]
        for target in spec.endpoints:
            if target.name == source.name:
                continue
            family = _common_family(source, target)
            if family is None:
                continue
            src, dst = _endpoint_address(source, family), _endpoint_address(target, family)
            for listen in target.listen or (None,):
                proto = str(listen.proto) if listen else "icmp"
                port = listen.port if listen else 0
                probes.append(Probe(source.name, target.name, Flow(source.host, namespace, src, dst, proto, 40000, port),
                                    frozenset({_place_of(target)})))
        for service in spec.services:
            family = service.vip.version
            if not any(_has(a, family) for a in source.attachments):
                continue
            flow = Flow(source.host, namespace, _endpoint_address(source, family), service.vip,
                        str(service.port.proto), 40000, service.port.port)
            backends = frozenset(_place_of(spec.endpoint(name)) for name in service.backends)
            probes.append(Probe(source.name, f"service/{service.name}", flow, backends))
    return probes


def _place_of(endpoint) -> tuple[str, str]:
    return (endpoint.host, endpoint.host if endpoint.kind == "host" else endpoint.name)


def _has(attachment, family: int) -> bool:
    return (attachment.ip if family == 4 else attachment.ip6) is not None


def _common_family(a, b) -> int | None:
    for family in (4, 6):
        if any(_has(x, family) for x in a.attachments) and any(_has(x, family) for x in b.attachments):
            return family
    return None
