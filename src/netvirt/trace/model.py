"""The trace of one packet: ``Trace(disposition, reason, hops, anomalies)``, hops grouped in rows.

Contract: a ``Hop`` is one event (``dataplane.events.Event``) with its walkthrough ``step``;
consecutive hops of one stage form a ``Row`` (Step | Mode | System Level | Technique), numbered
from 1 — the grouping of the notes' tables. Where the graph names stages (``graph.Stage``,
environments do) a hop belongs to the stage of its place; other hops are grouped automatically:
the sending application, each namespace's IP stack, and runs of devices with the same labels.
``to_json`` is the public JSON interface documented in docs/trace.md.
"""

from dataclasses import dataclass, field, replace

from netvirt.dataplane.events import Action, Disposition, Event, Walk
from netvirt.graph import Stage
from netvirt.wire import ParseError, dissect, summary, to_json

__all__ = ["Action", "Anomaly", "Disposition", "Hop", "Row", "Trace", "build"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something on the path a network engineer should know: what, at which step, and the fix."""

    kind: str
    step: int
    message: str
    fix: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "step": self.step, "message": self.message, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop of a trace (DESIGN.md §7): ``action`` at ``device`` (None: the namespace's IP stack)
    of ``namespace`` (written ``HOST:NAMESPACE``), in walkthrough step ``step``; ``packet`` is the
    frame after the action. ``message`` says what happened, ``rule`` which filter rule decided;
    ``reply``: part of an answer the network generated (RST, ICMP error); ``bypass``: outside the
    host kernel (invisible to its tcpdump and netfilter)."""

    step: int
    mode: str
    level: str
    technique: str
    device: str | None
    namespace: str
    action: Action
    packet: bytes
    mtu: int
    overhead: int
    message: str = ""
    rule: str = ""
    reply: bool = False
    bypass: bool = False
    cause: str = ""

    @classmethod
    def of(cls, step: int, event: Event) -> "Hop":
        return cls(step, event.mode, event.level, event.technique, event.device, f"{event.host}:{event.namespace}",
                   event.action, event.packet, event.mtu, event.overhead, event.message, event.rule, event.reply,
                   event.bypass, event.cause)

    def summary(self) -> str:
        """The packet as one tcpdump-like line."""
        try:
            return summary(dissect(self.packet))
        except ParseError as error:
            return f"[undecodable at {error.layer} byte {error.offset}: {error.reason}]"

    def to_json(self) -> dict:
        try:
            layers = to_json(dissect(self.packet))
        except ParseError:
            layers = []
        return {
            "step": self.step,
            "mode": self.mode,
            "level": self.level,
            "technique": self.technique,
            "device": self.device,
            "namespace": self.namespace,
            "action": self.action.value,
            "packet": {"summary": self.summary(), "layers": layers, "bytes": self.packet.hex()},
            "mtu": self.mtu,
            "overhead": self.overhead,
        }


@dataclass(frozen=True, slots=True)
class Row:
    """One walkthrough step: its name, labels and hops."""

    step: int
    name: str
    mode: str
    level: str
    technique: str
    hops: tuple[Hop, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    """How one packet travelled: outcome, every hop, the walkthrough rows and the anomalies."""

    disposition: Disposition
    reason: str
    hops: tuple[Hop, ...]
    rows: tuple[Row, ...]
    anomalies: tuple[Anomaly, ...] = field(default=())
    answer: "Trace | None" = None
    """The destination's answer (SYN|ACK, UDP reply, echo reply) walked back to the sender, in the
    state the request left; None when the request was not delivered to a kernel socket."""

    def to_json(self) -> dict:
        data = self._walk_json()
        data["anomalies"] = [anomaly.to_json() for anomaly in self.anomalies]
        data["answer"] = self.answer._walk_json() if self.answer is not None else None
        return data

    def _walk_json(self) -> dict:
        index = {id(hop): i for i, hop in enumerate(self.hops)}
        steps = [{"step": row.step, "name": row.name, "mode": row.mode, "level": row.level,
                  "technique": row.technique, "hops": [index[id(hop)] for hop in row.hops]} for row in self.rows]
        return {"disposition": self.disposition.value, "reason": self.reason,
                "hops": [hop.to_json() for hop in self.hops], "steps": steps}

    def with_anomalies(self, anomalies) -> "Trace":
        return replace(self, anomalies=tuple(anomalies))

    def with_answer(self, answer: "Trace | None") -> "Trace":
        return replace(self, answer=answer)

    @property
    def path(self) -> str:
        """The rows' names joined by arrows — the notes' "Network Path" notation."""
        return " -> ".join(row.name for row in self.rows)


def build(walk: Walk, stages: dict[tuple[str, str], Stage], *, skip: frozenset[tuple[str, str]] = frozenset()) -> Trace:
    """The ``Trace`` of a simulator walk. ``stages`` maps ``(host, place)`` to its stage (the
    simulator's ``Topology.stages``); leading events in the ``(host, namespace)``s of ``skip``
    (the outside world a walkthrough starts from) are left out, unless nothing else happened.

    Rows: a hop belongs to the stage of its place; unstaged hops group by what they happen at
    (the sender, a namespace's IP stack, a device; a veth's two ends are one row). Two hops are
    always shown with their neighbours: a neighbour resolution with the hop that uses it, and
    the underlay routing of a tunnel packet with the tunnel's encapsulation or decapsulation.
    """
    events = list(walk.events)
    start = next((i for i, event in enumerate(events) if (event.host, event.namespace) not in skip), 0)
    events = events[start:]  # everything stays when the packet never left the outside world
    groups = [_group_of(event, stages) for event in events]
    _attach(events, groups)
    hops: list[Hop] = []
    rows: list[Row] = []
    members: list[Event] = []
    for index, event in enumerate(events):
        members.append(event)
        if index + 1 < len(events) and groups[index + 1][0] == groups[index][0]:
            continue
        step = len(rows) + 1
        row_hops = tuple(Hop.of(step, member) for member in members)
        key, name, labels = groups[index]
        if labels is None:
            first = next((m for m in members if m.action is not Action.ARP), members[0])
            labels = (first.mode, first.level, first.technique)
        hops.extend(row_hops)
        rows.append(Row(step, name, *labels, row_hops))
        members = []
    return Trace(walk.disposition, walk.reason, tuple(hops), tuple(rows))


Group = tuple[object, str, tuple[str, str, str] | None]


def _group_of(event: Event, stages: dict[tuple[str, str], Stage]) -> Group:
    """The row key, name and labels (None: the first hop's) of an event on its own."""
    stage = stages.get((event.host, event.place))
    if event.technique.startswith("tc eBPF program") and (event.host, event.namespace) in stages:
        stage = stages[(event.host, event.namespace)]  # tc runs in the kernel, after the driver: its namespace's step
    if stage is None and event.action is Action.DRIVER:
        stage = stages.get((event.host, f"{event.namespace}/{event.device}"))
    if stage is None and event.device is None and event.action is not Action.SEND:
        stage = stages.get((event.host, event.namespace))
    if stage is not None:
        return (event.host, stage.name, event.reply), stage.name, (stage.mode.value, stage.level, stage.technique)
    if event.action is Action.SEND:
        return ("send", event.host, event.namespace), f"{event.namespace} (sender)", None
    if event.device is None:
        labels = (event.mode, event.level, event.technique) if event.bypass else (  # a stack outside the kernel
            "Kernel", event.level, "IP Stack (Routing & Netfilter)")
        return ("stack", event.host, event.namespace, event.reply), f"{event.namespace} IP stack", labels
    return ("device", event.host, event.namespace, event.device, event.reply), f"{event.namespace}/{event.device}", None


def _attach(events: list[Event], groups: list[Group]) -> None:
    """Regroup the hops that belong with a neighbour (see ``build``), in place."""
    for index in range(len(events) - 1, -1, -1):  # backwards: a chain of resolutions joins the user
        if events[index].action is Action.ARP and index + 1 < len(events):
            groups[index] = groups[index + 1]
    for index, event in enumerate(events):
        if index and event.action is Action.RECEIVE and groups[index][0][0] == "device":
            previous = events[index - 1]
            if previous.action is Action.TRANSMIT and previous.technique == event.technique and \
                    previous.host == event.host and groups[index - 1][0][0] == "device":
                groups[index] = groups[index - 1]  # the far end of the same wire (a veth pair)
        if event.device is None and event.overhead and index:
            if events[index - 1].overhead or events[index - 1].action is Action.ENCAP:
                groups[index] = groups[index - 1]
                continue
            for later in range(index + 1, len(events)):
                if events[later].action is Action.DECAP:
                    groups[index] = groups[later]
                    break
                if not events[later].overhead:
                    break
