"""``netvirt demo``: the README's main job."""

import typer


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo() -> None:
    """Show what netvirt does, end to end, on examples/quickstart.yaml."""
    typer.echo("netvirt demo: nothing to show yet")
