"""Reachability: for every probe (a source, a target and the flow between them) — allowed or
dropped, and by what — and what a change to the network alters.

Contract: ``reach(tracer, probes)`` walks each probe's flow from fresh state (no hops recorded)
and returns one ``Reachability`` per probe, in probe order; ``compare(old, new)`` lists the probes
whose verdict or reason differ, were added or removed, keyed by (source, target, proto, port).
Which probes to run (every endpoint pair on its listening ports, every service from every
endpoint of its tenant) is the caller's choice: ``netvirt reach`` builds them from the spec.
"""

import json
from dataclasses import dataclass

from netvirt.dataplane.events import Disposition
from netvirt.trace.run import Flow, Tracer


@dataclass(frozen=True, slots=True)
class Probe:
    """A question: can ``source`` reach ``target`` (an endpoint, or ``service/NAME``) with ``flow``?
    ``expect``: the (host, namespace)s where delivery counts (the target's, a service's backends');
    a delivery anywhere else is reported as misdelivered (e.g. the same address in another tenant)."""

    source: str
    target: str
    flow: Flow
    expect: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Reachability:
    """The answer: ``allowed`` (delivered) or not, the walk's disposition and its reason."""

    source: str
    target: str
    proto: str
    port: int
    disposition: Disposition
    reason: str

    @property
    def allowed(self) -> bool:
        return self.disposition is Disposition.DELIVERED

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.source, self.target, self.proto, self.port)

    def to_json(self) -> dict:
        return {"from": self.source, "to": self.target, "proto": self.proto, "port": self.port,
                "verdict": "allowed" if self.allowed else "dropped", "disposition": self.disposition.value,
                "reason": self.reason}


def reach(tracer: Tracer, probes: list[Probe]) -> list[Reachability]:
    """The verdict of every probe (see the module docstring)."""
    results = []
    for item in probes:
        walk = tracer.verdict(item.flow)
        port = item.flow.dst_port if item.flow.proto != "icmp" else 0
        disposition, reason = walk.disposition, walk.reason
        if item.expect and walk.delivered_in is not None and walk.delivered_in not in item.expect:
            host, namespace = walk.delivered_in
            disposition = Disposition.DROPPED
            reason = (f"misdelivered: {item.flow.dst} means {host}:{namespace} to {item.source}, not {item.target} "
                      f"({walk.reason})")
        results.append(Reachability(item.source, item.target, item.flow.proto, port, disposition, reason))
    return results


@dataclass(frozen=True, slots=True)
class Change:
    """One probe whose answer differs between two networks (None: the probe exists on one side)."""

    old: Reachability | None
    new: Reachability | None

    def to_json(self) -> dict:
        return {"old": None if self.old is None else self.old.to_json(),
                "new": None if self.new is None else self.new.to_json()}


def compare(old: list[Reachability], new: list[Reachability]) -> list[Change]:
    """What changes from ``old`` to ``new``, ordered by probe key."""
    before = {item.key: item for item in old}
    after = {item.key: item for item in new}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        if a is None or b is None or (a.allowed, a.reason) != (b.allowed, b.reason):
            changes.append(Change(a, b))
    return changes


def table(results: list[Reachability]) -> str:
    """One line per probe: from, to, what, verdict, reason."""
    rows = [("From", "To", "Flow", "Verdict", "By")]
    rows += [(r.source, r.target, f"{r.proto}/{r.port}" if r.proto != "icmp" else "icmp",
              "allowed" if r.allowed else "dropped", r.reason) for r in results]
    return _columns(rows) + f"\n{sum(r.allowed for r in results)} of {len(results)} allowed\n"


def diff_table(changes: list[Change]) -> str:
    if not changes:
        return "no change in reachability\n"
    rows = [("From", "To", "Flow", "Before", "After", "Now by")]
    for change in changes:
        either = change.new or change.old
        flow = f"{either.proto}/{either.port}" if either.proto != "icmp" else "icmp"
        before = "-" if change.old is None else "allowed" if change.old.allowed else "dropped"
        after = "-" if change.new is None else "allowed" if change.new.allowed else "dropped"
        rows.append((either.source, either.target, flow, before, after, "" if change.new is None else change.new.reason))
    return _columns(rows) + f"\n{len(changes)} change(s)\n"


def to_json(results: list[Reachability]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2) + "\n"


def diff_json(changes: list[Change]) -> str:
    return json.dumps([c.to_json() for c in changes], indent=2) + "\n"


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    widths[-1] = 0
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * max(w, len(h)) for w, h in zip(widths, rows[0])))
    return "\n".join(lines)
