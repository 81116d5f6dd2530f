"""``netvirt pcap show``: decode the frames of a pcap or pcapng file, like tcpdump.

A frame netvirt cannot decode becomes an error entry (layer, offset, reason) and the listing goes
on; a file that is missing, unreadable or malformed as a capture is bad input: a message on stderr
and exit code 2.
"""

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from netvirt.management.cli.choices import TextOrJson
from netvirt.management.cli.options import StrictGroup
from netvirt.wire import Malformed, ParseError, dissect, summary, to_json
from netvirt.wire.pcap import LINKTYPE_ETHERNET, Frame, PcapError, format_timestamp, read

pcap_app = typer.Typer(help="Read capture files (pcap, pcapng).", no_args_is_help=True, cls=StrictGroup)


def register(app: typer.Typer) -> None:
    app.add_typer(pcap_app, name="pcap")


@pcap_app.command()
def show(
    file: Annotated[Path, typer.Argument(help="A pcap or pcapng capture file.")],
    format: Annotated[
        TextOrJson, typer.Option("--format", "-f", help="text: one line per frame; json: all layers.")
    ] = TextOrJson.text,
) -> None:
    """Decode every frame of FILE, through VXLAN, Geneve and NVGRE into the inner frames.

    text prints one line per frame: number, UTC time, summary. json prints a list of
    {"index": N, "layers": [...]}, or {"index": N, "error": {"layer", "offset", "reason"}} for a
    frame that does not decode.
    """
    try:
        if format is TextOrJson.json:
            # a whole document or nothing; one frame per line (fast, and greppable)
            entries = [json.dumps(frame_json(frame)) for frame in read(file)]
            typer.echo("[\n" + ",\n".join(entries) + "\n]" if entries else "[]")
        else:
            for frame in read(file):  # streamed, as tcpdump does: frames before damage still show
                typer.echo(frame_line(frame))
    except PcapError as error:  # names the file, the offset and the problem
        typer.echo(f"netvirt pcap show: {error}", err=True)
        raise typer.Exit(2) from None
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as tcpdump does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as error:
        typer.echo(f"netvirt pcap show: cannot read {file}: {error.strerror or error}", err=True)
        raise typer.Exit(2) from None


def frame_json(frame: Frame) -> dict[str, Any]:
    """``{"index": N, "layers": [...]}``, or ``{"index": N, "error": {...}}`` if undecodable."""
    decoded = _decode(frame)
    if isinstance(decoded, ParseError):
        error = {"layer": decoded.layer, "offset": decoded.offset, "reason": decoded.reason}
        return {"index": frame.index, "error": error}
    return {"index": frame.index, "layers": to_json(decoded)}


def frame_line(frame: Frame) -> str:
    """One tcpdump-like line: frame number, UTC time, summary (or a marked decode error)."""
    decoded = _decode(frame)
    text = f"[undecodable] {decoded}" if isinstance(decoded, ParseError) else summary(decoded)
    return f"{frame.index:>4}  {format_timestamp(frame.timestamp_ns)}  {text}"


def _decode(frame: Frame) -> list | ParseError:
    """The layers of the frame, or why they cannot be had."""
    if frame.linktype != LINKTYPE_ETHERNET:
        reason = f"link type {frame.linktype} is not Ethernet (1): netvirt decodes Ethernet frames"
        return Malformed("pcap", 0, reason)
    try:
        return dissect(frame.data)
    except ParseError as error:
        return error
