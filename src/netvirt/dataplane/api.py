"""The Backend protocol (DESIGN.md §5), what a backend can do, and the plan-time check.

Contract: a backend declares ``capabilities()``; ``plan(graph, capabilities)`` lists every
reason it cannot realise ``graph`` (graph invariants first, then each device, tunnel, hook and
netfilter table it lacks), each naming the backends that can. A backend's ``apply`` refuses a
graph with problems before touching anything; it never skips silently.
"""

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


# Which backends can realise device hooks and netfilter tables (devices declare their own).
HOOK_BACKENDS: dict[str, frozenset[str]] = {
    HookKind.XDP: frozenset({"sim", "ebpf"}),
    HookKind.TC_INGRESS: frozenset({"sim", "ebpf"}),
    HookKind.TC_EGRESS: frozenset({"sim", "ebpf"}),
    "netfilter": frozenset({"sim", "linux", "ebpf"}),
    "nat": frozenset({"sim", "linux", "ebpf"}),
}


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

    def capabilities(self) -> Capabilities:
        """What this backend can realise here (consulted at plan time)."""
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


def plan(graph: HostGraph, capabilities: Capabilities) -> list[Problem]:
    """Every reason ``capabilities.backend`` cannot realise ``graph`` (empty: it can)."""
    problems = validate(graph)
    for dev in graph.devices:
        problems.extend(_device_problems(graph.host, dev, capabilities))
    for ns in graph.namespaces:
        for table, chains, able in (("filter", ns.filter, capabilities.netfilter), ("nat", ns.nat, capabilities.nat)):
            if chains and not able:
                key = "netfilter" if table == "filter" else "nat"
                why = _qualified(capabilities, key) + _can(HOOK_BACKENDS[key], capabilities)
                message = f"{table} rules cannot be realised by backend '{capabilities.backend}'{why}"
                problems.append(Problem(f"{graph.host}:{ns.name}", message))
    return problems


def _device_problems(host: str, dev: Device, caps: Capabilities) -> list[Problem]:
    where = f"{host}:{dev.namespace}/{dev.name}"
    what = f"device '{dev.name}' ({dev.kind})"
    can = _can(dev.backends, caps)
    if caps.backend not in dev.backends:
        reason = " (model-only)" if dev.backends == {"sim"} else ""
        return [Problem(where, f"{what} cannot be realised by backend '{caps.backend}'{reason}{can}")]
    if dev.kind not in caps.device_kinds:
        return [Problem(where, f"{what} cannot be realised by backend '{caps.backend}'{_qualified(caps, dev.kind)}{can}")]
    if dev.kind in TUNNEL_KINDS and Encapsulation(dev.kind.value) not in caps.encapsulations:
        why = _qualified(caps, dev.kind.value)
        return [Problem(where, f"{what} cannot be realised by backend '{caps.backend}'{why}{can}")]
    return [
        Problem(
            where,
            f"{hook.kind} hook '{hook.program}' on {what} cannot be realised by backend "
            f"'{caps.backend}'{_qualified(caps, hook.kind)}{_can(HOOK_BACKENDS[hook.kind], caps)}",
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
