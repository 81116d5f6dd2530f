"""``netvirt validate|show|schema|init|generate``: working with spec files."""

import typer


def register(app: typer.Typer) -> None:
    pass
