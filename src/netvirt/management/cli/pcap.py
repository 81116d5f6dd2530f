"""``netvirt pcap ...``: read capture files."""

import typer


def register(app: typer.Typer) -> None:
    pass
