"""``netvirt import containerlab TOPO.clab.yml``: other tools' topologies as netvirt specs.

The spec is validated before it is written (``-o FILE``, else stdout); what cannot be mapped is
printed as located problems (``FILE:LINE:COL: error: PATH: message``) and nothing is written,
exit 2. How interfaces became attachments is printed on stderr.
"""

from pathlib import Path
from typing import Annotated

import typer

from netvirt.management.cli.options import StrictGroup, output_file
from netvirt.management.cli.spec import report_problems


def register(app: typer.Typer) -> None:
    importers = typer.Typer(help="Write a netvirt spec from another tool's topology.", no_args_is_help=True, cls=StrictGroup)
    importers.command("containerlab")(containerlab)
    app.add_typer(importers, name="import")


def containerlab(
    topology: Annotated[Path, typer.Argument(metavar="TOPO", help="A containerlab topology (*.clab.yml).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", callback=output_file, help="Write the spec to FILE.")] = None,
) -> None:
    """Nodes become endpoints, links networks, kinds container/vm/host; then trace and verify the lab."""
    from netvirt.management.spec import SpecError, loads
    from netvirt.management.spec.containerlab import from_containerlab
    from netvirt.management.spec.dump import dump_data

    try:
        text = topology.read_text()
    except (OSError, UnicodeDecodeError) as error:
        typer.echo(f"netvirt import containerlab: cannot read {topology}: {getattr(error, 'strerror', None) or error}", err=True)
        raise typer.Exit(2) from None
    try:
        data, notes = from_containerlab(text, str(topology))
    except SpecError as error:
        report_problems(error, "netvirt import containerlab", "topology")
        raise typer.Exit(2) from None
    try:
        spec_text = dump_data(data)
        loads(spec_text, str(output or "imported.yaml"))
    except SpecError as error:
        report_problems(error, "netvirt import containerlab")
        raise typer.Exit(2) from None
    for note in notes:
        typer.echo(note, err=True)
    if output is None:
        typer.echo(spec_text, nl=False)
    else:
        output.write_text(spec_text)
        typer.echo(f"wrote {output}: {len(data['endpoints'])} endpoints, {len(data['networks'])} networks", err=True)
