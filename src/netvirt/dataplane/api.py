"""The Backend and Observer protocols (DESIGN.md §5), what a backend can do, the plan-time check.

Contract: a backend declares ``declared()`` (what it can realise anywhere) and ``capabilities()``
(what it can realise here, e.g. on this kernel); ``plan(graph, capabilities)`` lists every
reason it cannot realise ``graph`` (graph invariants first, then each device, tunnel, hook and
netfilter table it lacks), each naming the backends that can. A backend's ``apply`` refuses a
graph with problems before touching anything; it never skips silently.
"""

import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol

from netvirt.graph import (
    TUNNEL_KINDS,
    Device,
    DeviceKind,
    GraphDiff,
    HookKind,
    HostGraph,
    Op,
    Problem,
    validate,
)


class Encapsulation(StrEnum):
    """Overlay encapsulations (each realised by the tunnel device kind of the same name)."""

    VXLAN = "vxlan"
    GENEVE = "geneve"
    NVGRE = "nvgre"


@dataclass(frozen=True, slots=True, kw_only=True)
class Capabilities:
    """What ``backend`` can realise here. ``where`` qualifies it (e.g. "on this kernel");
    ``reasons`` explains what is missing, keyed by kind/encapsulation/hook value or "netfilter"/"nat",
    e.g. ``{"geneve": "no geneve module"}``."""

    backend: str
    device_kinds: frozenset[DeviceKind]
    encapsulations: frozenset[Encapsulation]
    hooks: frozenset[HookKind]
    netfilter: bool
    nat: bool
    where: str = ""
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyReport:
    """What ``apply`` did, counted in graph objects (namespaces, devices, links), and what failed."""

    created: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    errors: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    @classmethod
    def from_diff(cls, changes: GraphDiff, errors: tuple[Problem, ...] = ()) -> "ApplyReport":
        """The counts of a diff between what existed and what ``apply`` converged to."""
        return cls(
            created=len(changes.of(Op.ADD)),
            changed=len(changes.of(Op.CHANGE)),
            deleted=len(changes.of(Op.REMOVE)),
            unchanged=changes.unchanged,
            errors=errors,
        )


class Backend(Protocol):
    """A data plane that realises one host's device graph."""

    name: ClassVar[str]

    @classmethod
    def declared(cls) -> Capabilities:
        """What this backend can realise where everything it needs is present (no probing): the
        registry names the backends that can from these."""
        ...

    def capabilities(self) -> Capabilities:
        """What this backend can realise here (consulted at plan time; at most ``declared()``)."""
        ...

    def apply(self, graph: HostGraph) -> ApplyReport:
        """Converge to exactly ``graph`` (idempotent); refuse it whole if ``plan`` finds problems."""
        ...

    def realized(self) -> HostGraph:
        """What really exists, read back."""
        ...

    def forget(self) -> None:
        """Stop trusting what the last ``apply`` did: the next one converges everything from what
        really exists (a full resync, which also repairs drift), not only what the graph changed."""
        ...

    def teardown(self) -> None:
        """Remove everything this backend made, and nothing else."""
        ...


@dataclass(frozen=True, slots=True)
class Observation:
    """One frame seen at graph place ``host:namespace/device`` (``outgoing``: sent by the device),
    with the time it was seen (seconds since the epoch)."""

    place: str
    timestamp: float
    data: bytes
    outgoing: bool


class Observer(Protocol):
    """Capture and probes inside a realised network, in graph terms (``trace.verify`` uses it).

    ``start`` captures every frame on the given devices, both directions, until ``stop``;
    ``frames`` collects what was seen so far (the same objects on every call, in arrival order per
    device); ``open_socket`` is a socket inside a graph namespace, for sending probes and serving
    them; ``exists`` says whether a graph namespace is realised to observe in."""

    def start(self, devices: Iterable[tuple[str, str, str]]) -> None:
        """Capture on every (host, namespace, device) from now on."""
        ...

    def stop(self) -> None:
        """End the capture (frames seen so far stay readable)."""
        ...

    def frames(self) -> list[Observation]:
        """Everything captured so far."""
        ...

    def open_socket(self, host: str, namespace: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        """A new socket inside graph namespace ``namespace`` of ``host``."""
        ...

    def exists(self, host: str, namespace: str) -> bool:
        """Whether that graph namespace is realised."""
        ...


def plan(graph: HostGraph, capabilities: Capabilities, others: Mapping[str, Capabilities] | None = None) -> list[Problem]:
    """Every reason ``capabilities.backend`` cannot realise ``graph`` (empty: it can). Refusals
    name the backends that can, from ``others`` (default: every registered backend's
    ``declared()``, looked up only when there is something to refuse)."""
    problems = validate(graph)
    can = _Others(others)
    for dev in graph.devices:
        problems.extend(_device_problems(graph.host, dev, capabilities, can))
    for ns in graph.namespaces:
        for table, chains, able in (("filter", ns.filter, capabilities.netfilter), ("nat", ns.nat, capabilities.nat)):
            if chains and not able:
                key = "netfilter" if table == "filter" else "nat"
                who = can.which(lambda c, key=key: c.netfilter if key == "netfilter" else c.nat)
                why = _qualified(capabilities, key) + _can(who, capabilities)
                message = f"{table} rules cannot be realised by backend '{capabilities.backend}'{why}"
                problems.append(Problem(f"{graph.host}:{ns.name}", message))
    return problems


class _Others:
    """The declared capabilities of every backend, fetched on first use."""

    def __init__(self, given: Mapping[str, Capabilities] | None) -> None:
        self._given = given

    def all(self) -> Mapping[str, Capabilities]:
        if self._given is None:
            from netvirt.dataplane import registry  # the registry imports this module

            self._given = registry.declared_all()
        return self._given

    def which(self, able: Callable[[Capabilities], bool]) -> frozenset[str]:
        return frozenset(name for name, caps in self.all().items() if able(caps))


def _builds(caps: Capabilities, dev: Device) -> bool:
    """Whether ``caps`` include ``dev``'s kind (and, for a tunnel, its encapsulation)."""
    return dev.kind in caps.device_kinds and (
        dev.kind not in TUNNEL_KINDS or Encapsulation(dev.kind.value) in caps.encapsulations)


def _device_problems(host: str, dev: Device, caps: Capabilities, others: _Others) -> list[Problem]:
    where = f"{host}:{dev.namespace}/{dev.name}"
    what = f"device '{dev.name}' ({dev.kind})"
    if not _builds(caps, dev):
        who = others.which(lambda c: _builds(c, dev))
        own = others.all().get(caps.backend)
        if own is not None and not _builds(own, dev) and dev.kind.value not in caps.reasons:  # never, anywhere
            reason = " (model-only)" if who == {"sim"} else ""
            return [Problem(where, f"{what} cannot be realised by backend '{caps.backend}'{reason}{_can(who, caps)}")]
        why = _qualified(caps, dev.kind.value)
        return [Problem(where, f"{what} cannot be realised by backend '{caps.backend}'{why}{_can(who, caps)}")]
    return [
        Problem(
            where,
            f"{hook.kind} hook '{hook.program}' on {what} cannot be realised by backend "
            f"'{caps.backend}'{_qualified(caps, hook.kind)}{_can(others.which(lambda c, k=hook.kind: k in c.hooks), caps)}",
        )
        for hook in dev.hooks
        if hook.kind not in caps.hooks
    ]
def _can(backends: frozenset[str], caps: Capabilities) -> str:
    others = sorted(backends - {caps.backend})
    return f"; backends that can: {', '.join(others)}" if others else "; no backend can realise it"


def _qualified(caps: Capabilities, key: str) -> str:
    """' on this kernel (no geneve module)' — where the backend probed and why the thing is missing."""
    where = f" {caps.where}" if caps.where else ""
    reason = caps.reasons.get(key)
    return f"{where} ({reason})" if reason else where
