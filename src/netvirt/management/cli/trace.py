"""``netvirt trace`` and ``netvirt reach``: walk packets through a spec, hop by hop.

``trace SPEC --from SRC --to DST`` compiles the spec (``control.compile``) and traces one packet
between endpoints, addresses, services or the outside world; ``trace SPEC --stack NAME`` (or just
``trace SPEC`` when the spec has one stack) builds the stack's environment graph
(``environments``) and walks a packet from the outside up to its app — the notes' walkthroughs.
``reach SPEC`` answers every endpoint pair and service at once. Bad input: a message naming what
is wrong and what would be right, exit code 2. The planning (names, addresses, services and
``external`` into flows; the reach probes) is ``netvirt.trace.plan``: this module parses and renders.
"""

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from netvirt.control.compile import CompileError, compile_network
from netvirt.environments import StackError
from netvirt.management.cli.choices import BackendName, TableOrJson
from netvirt.management.cli.options import conflicts, format_of, output_file
from netvirt.management.cli.spec import load_or_exit
from netvirt.management.spec import Spec
from netvirt.trace import compare, render
from netvirt.trace import reachability as reach_module
from netvirt.trace.plan import BadInput, plan_trace, reach_spec


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    pcap = "pcap"
    svg = "svg"


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
    format: Annotated[Format | None, typer.Option("--format", "-f", help="table, markdown, json, pcap or svg (the path drawn); default: -o's suffix, else table.")] = None,
    detail: Annotated[bool, typer.Option("--detail", help="One row per device, with action and packet.")] = False,
    size: Annotated[int, typer.Option("--size", min=0, max=65535, help="IP packet size in bytes (DF set).")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", callback=output_file, help="Write to FILE (pcap needs it).")
    ] = None,
    backend: Annotated[BackendName, typer.Option(
        help="Show the hops as this data plane does them (userspace: the poll-mode switch's user-mode hops; "
             "ebpf: its tc and XDP programs).")
    ] = BackendName.sim,
) -> None:
    """Trace one packet hop by hop: mode, system level and technique at every step; where it dies
    and why; anomalies with fixes.

    With --stack (or when SPEC has exactly one stack and no --from) the packet enters from the
    outside at the stack's bottom layer and travels up to its app, as in the notes' walkthroughs.
    """
    conflicts(("--proto icmp", proto is Proto.icmp), ("--dport", dport is not None))
    format = format_of(format, output, Format, Format.table)
    spec = load_or_exit(spec_path, "trace")
    if format is Format.pcap and output is None:
        _fail("--format pcap writes a binary file: give -o FILE.pcap")
    try:
        tracer, flow, skip = plan_trace(spec, source, target, None if proto is None else proto.value, dport, sport,
                                        stack, size, compile=compile_network)
    except (BadInput, StackError, CompileError) as error:
        _fail(str(error))
    if backend.value == "userspace":
        from netvirt.dataplane.userspace.labels import trace_view

        network = tracer.topology.network
        tracer.view = trace_view(network, [graph.host for graph in network.hosts])
    if backend.value == "ebpf":
        from netvirt.dataplane.ebpf.predict import ebpf_view

        tracer.view = ebpf_view(tracer.topology.network)
    result = tracer.trace(flow, skip=skip)
    if format is Format.svg:
        from netvirt.management.cli.diagram import write_diagram

        write_diagram(tracer.topology.network, result, "svg", output)
        return
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
    output: Annotated[Path | None, typer.Option("--output", "-o", callback=output_file, help="Write to FILE.")] = None,
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
        return reach_spec(spec, compile=compile_network)
    except CompileError as error:
        _fail(str(error))


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _fail(message: str) -> None:
    typer.echo(f"netvirt: {message}", err=True)
    raise typer.Exit(2)
