"""The ``netvirt`` command line. Exit codes: 0 ok, 1 runtime failure, 2 bad input.

Each command group lives in its own module and registers itself on ``app`` in ``_register``;
the convention every command follows for options and exit codes is ``cli.options``.
"""

from typing import Annotated

import typer

from netvirt.management.cli.options import StrictGroup, run, version

app = typer.Typer(
    name="netvirt",
    help="Build virtual networks and trace how a packet travels through them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=StrictGroup,
)


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=version, is_eager=True, help="Print netvirt's version and exit.")
    ] = False,
) -> None:
    """Build virtual networks and trace how a packet travels through them."""


def _register() -> None:
    from netvirt.management.cli import control, demo, diagram, importers, linux, pcap, spec, trace, verify

    for module in (control, demo, diagram, importers, linux, pcap, spec, trace, verify):
        module.register(app)


def main() -> None:
    _register()
    run(app)
