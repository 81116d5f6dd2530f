"""``netvirt diagram SPEC``: a picture of the network, optionally with one packet's path over it.

Formats: svg and png (Graphviz), dot (its source), mermaid (renders on GitHub). With --from/--to
(the flow options of ``netvirt trace``) the packet's path is drawn: hops numbered, the drop red
with its reason, encapsulations labelled (``netvirt.trace.diagram``). Without -o the text formats
go to stdout; png needs -o. Exit codes (``cli.options``): 0 ok, 1 a file that cannot be
written, 2 bad input.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from netvirt.management.cli.options import conflicts, format_of, output_file
from netvirt.management.cli.spec import load_or_exit
from netvirt.management.cli.trace import Proto


class DiagramFormat(str, Enum):
    svg = "svg"
    png = "png"
    dot = "dot"
    mermaid = "mermaid"


def register(app: typer.Typer) -> None:
    app.command("diagram")(diagram)


def diagram(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A spec file or directory.")],
    source: Annotated[str | None, typer.Option("--from", help="Trace from this endpoint, IP or 'external'.")] = None,
    target: Annotated[str | None, typer.Option("--to", help="... to this endpoint, IP, IP:PORT or service.")] = None,
    proto: Annotated[Proto | None, typer.Option("--proto", help="tcp (default), udp or icmp.")] = None,
    dport: Annotated[int | None, typer.Option("--dport", min=1, max=65535, help="Destination port.")] = None,
    format: Annotated[DiagramFormat | None, typer.Option("--format", "-f", help="svg, png, dot or mermaid; default: -o's suffix, else svg.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", callback=output_file, help="Write to FILE.")] = None,
) -> None:
    """Draw SPEC's hosts, namespaces, bridges, tunnels (VNIs), routers and underlay; with
    --from/--to, the packet's path over them (hops numbered, drops red with their reason)."""
    from netvirt.control.compile import CompileError, compile_network
    from netvirt.environments import StackError
    from netvirt.trace.plan import BadInput, plan_trace

    conflicts(("--proto icmp", proto is Proto.icmp), ("--dport", dport is not None))
    format = format_of(format, output, DiagramFormat, DiagramFormat.svg)
    spec = load_or_exit(spec_path, "diagram")
    if format is DiagramFormat.png and output is None:
        _fail("--format png writes a binary file: give -o FILE.png")
    try:
        network = compile_network(spec)
        result = None
        if source is not None or target is not None:
            protocol = None if proto is None else proto.value
            tracer, flow, skip = plan_trace(spec, source, target, protocol, dport, 40000, None, compile=lambda _: network)
            result = tracer.trace(flow, skip=skip)
    except (BadInput, StackError, CompileError) as error:
        _fail(str(error))
    write_diagram(network, result, format.value, output)


def write_diagram(network, trace, format: str, output: Path | None) -> None:
    """The diagram of ``network`` (with ``trace``'s path) in ``format``, to ``output`` or stdout."""
    from netvirt.trace.diagram import Diagram

    picture = Diagram(network, trace)
    data: bytes | str = {"dot": picture.dot, "mermaid": picture.mermaid}.get(format, lambda: picture.render(format))()
    if output is None:
        typer.echo(data.decode() if isinstance(data, bytes) else data, nl=False)
        return
    try:
        output.write_bytes(data) if isinstance(data, bytes) else output.write_text(data)
    except OSError as error:
        typer.echo(f"netvirt diagram: cannot write {output}: {error.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {output}", err=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"netvirt diagram: {message}", err=True)
    raise typer.Exit(2)
