"""The ``netvirt`` command line. Exit codes: 0 ok, 1 runtime failure, 2 bad input.

Each command group lives in its own module and registers itself on ``app`` in ``_register``.
"""

import typer

app = typer.Typer(
    name="netvirt",
    help="Build virtual networks and trace how a packet travels through them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Build virtual networks and trace how a packet travels through them."""


def _register() -> None:
    from netvirt.management.cli import control, demo, linux, pcap, spec, trace

    for module in (control, demo, linux, pcap, spec, trace):
        module.register(app)


def main() -> None:
    _register()
    app()
