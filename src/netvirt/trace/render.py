"""Renderers of a ``Trace``: text table, markdown, JSON and pcap.

Contract: all are deterministic (the same trace gives the same output). ``table`` and
``markdown`` show one row per walkthrough step — the notes' ``Step | Mode | System Level |
Technique`` — or, with ``detail``, one row per hop with the action and the packet at that point;
then the outcome, the path and the anomalies. ``json_text`` is the public interface documented
in docs/trace.md. ``pcap`` writes the packet as it is at every hop, one frame per hop (1 ms
apart from 2000-01-01 00:00:00 UTC, so files are reproducible).
"""

import json
from typing import BinaryIO

from netvirt.trace.model import Trace
from netvirt.wire.pcap import Writer

PCAP_EPOCH_NS = 946_684_800 * 1_000_000_000
HEADERS = ("Step", "Mode", "System Level", "Technique")
DETAIL_HEADERS = ("Step", "Mode", "System Level", "Technique", "Device", "Action", "Packet")


def _rows(trace: Trace, detail: bool) -> list[tuple[str, ...]]:
    if not detail:
        return [(f"{row.step}. {row.name}", row.mode, row.level, row.technique) for row in trace.rows]
    rows = []
    for row in trace.rows:
        for index, hop in enumerate(row.hops):
            where = f"{hop.namespace}/{hop.device}" if hop.device else f"{hop.namespace} (stack)"
            action = hop.action.value + (" (answer)" if hop.reply else "")
            text = hop.summary() + (f"  [{hop.message}]" if hop.message else "")
            rows.append((f"{row.step}. {row.name}" if index == 0 else "", hop.mode, hop.level, hop.technique,
                         where, action, text))
    return rows


def _footer(trace: Trace) -> list[str]:
    lines = [f"Outcome: {trace.disposition.value} — {trace.reason}", f"Path: {trace.path}"]
    if trace.answer is not None:
        lines += [f"Answer: {trace.answer.disposition.value} — {trace.answer.reason}",
                  f"Answer path: {trace.answer.path}"]
    for anomaly in trace.anomalies:
        lines.append(f"Anomaly [{anomaly.kind}] at step {anomaly.step}: {anomaly.message}")
        lines.append(f"  fix: {anomaly.fix}")
    return lines


def table(trace: Trace, *, detail: bool = False) -> str:
    """Aligned text columns (see the module docstring)."""
    headers = DETAIL_HEADERS if detail else HEADERS
    rows = _rows(trace, detail)
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i])
              for i in range(len(headers))]
    widths[-1] = 0  # the last column is not padded
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * max(width, len(header)) for header, width in zip(headers, widths)))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + [""] + _footer(trace)) + "\n"


def markdown(trace: Trace, *, detail: bool = False) -> str:
    """A markdown table in the notes' format, then the outcome, path and anomalies as a list."""
    headers = DETAIL_HEADERS if detail else HEADERS
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(":---" for _ in headers) + " |"]
    for row in _rows(trace, detail):
        cells = [cell.replace("|", "\\|") for cell in row]
        if cells[0]:
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {line}" if not line.startswith("  ") else f"  {line.strip()}" for line in _footer(trace)]
    return "\n".join(lines) + "\n"


def json_text(trace: Trace) -> str:
    """The JSON interface (docs/trace.md), indented, keys in the documented order."""
    return json.dumps(trace.to_json(), indent=2) + "\n"


def pcap(trace: Trace, destination: str | BinaryIO) -> int:
    """Write one frame per hop to a pcap file; returns the number of frames."""
    with Writer(destination) as writer:
        for index, hop in enumerate(trace.hops):
            writer.write(hop.packet, PCAP_EPOCH_NS + index * 1_000_000)
    return len(trace.hops)
