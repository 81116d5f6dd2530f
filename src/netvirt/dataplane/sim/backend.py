"""The simulator as a ``Backend``: realising a host graph in the simulator means holding it.

Contract: ``SimBackend(host)`` can realise every device kind, encapsulation, hook and netfilter
table (model-only kinds exist only here). ``apply`` refuses a graph with problems whole (the
report lists them, nothing changes); otherwise the held graph becomes exactly the given one.
``realized`` reads it back (an empty graph before the first apply and after ``teardown``).
"""

from typing import ClassVar

from netvirt.dataplane.api import ApplyReport, Capabilities, Encapsulation, plan
from netvirt.graph import DeviceKind, HookKind, HostGraph, Problem, diff

CAPABILITIES = Capabilities(
    backend="sim",
    device_kinds=frozenset(DeviceKind),
    encapsulations=frozenset(Encapsulation),
    hooks=frozenset(HookKind),
    netfilter=True,
    nat=True,
    where="in the simulator",
)


class SimBackend:
    """One simulated host's data plane."""

    name: ClassVar[str] = "sim"

    def __init__(self, host: str) -> None:
        self.host = host
        self._graph = HostGraph(host=host)

    @classmethod
    def declared(cls) -> Capabilities:
        return CAPABILITIES

    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def apply(self, graph: HostGraph) -> ApplyReport:
        problems = plan(graph, CAPABILITIES)
        if graph.host != self.host:
            problems.insert(0, Problem(graph.host, f"graph is for host {graph.host!r}, this backend is {self.host!r}"))
        if problems:
            return ApplyReport(errors=tuple(problems))
        report = ApplyReport.from_diff(diff(self._graph, graph))
        self._graph = graph
        return report

    def realized(self) -> HostGraph:
        return self._graph

    def forget(self) -> None:
        """Nothing to distrust: the simulator's state is the graph it was given."""

    def teardown(self) -> None:
        self._graph = HostGraph(host=self.host)
