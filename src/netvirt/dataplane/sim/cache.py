"""A flow cache for repeated traces: the walk of a packet sent from fresh state, memoised.

Contract: ``FlowCache(network).send(host, namespace, packet)`` equals
``Simulator(network).send(host, namespace, packet)`` — a walk from empty state (no conntrack
entries, nothing learned) — and is a dictionary lookup when the same packet was sent from the
same place before. Sound because the graph is immutable and a fresh walk is a function of
(graph, place, packet bytes); the key is the exact bytes, so different flows never share an entry.
``hits``/``misses`` give the hit ratio; the oldest entry goes when ``capacity`` is reached
(``capacity`` 0: nothing is kept, every call walks).
"""

from netvirt.dataplane.sim.engine import Simulator
from netvirt.dataplane.events import Walk
from netvirt.graph import NetworkGraph


class FlowCache:
    """See the module docstring."""

    def __init__(self, network: NetworkGraph, *, compiled: bool = True, capacity: int = 65536) -> None:
        self.simulator = Simulator(network, compiled=compiled)
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._walks: dict[tuple[str, str, bytes, bool, bool], tuple[Walk, Walk | None]] = {}

    def send(self, host: str, namespace: str, packet: bytes, *, record: bool = True) -> Walk:
        """The walk of ``packet`` from fresh state (see the module docstring)."""
        return self.exchange(host, namespace, packet, record=record, answer=False)[0]

    def exchange(self, host: str, namespace: str, packet: bytes, *, record: bool = True,
                 answer: bool = True) -> tuple[Walk, Walk | None]:
        """The walk of ``packet`` and, with ``answer``, the walk of the destination's answer
        (``Simulator.answer``, in the state the request left)."""
        key = (host, namespace, bytes(packet), record, answer)
        found = self._walks.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        self.simulator.reset()
        walk = self.simulator.send(host, namespace, packet, record=record)
        reply = self.simulator.answer(walk, record=record) if answer else None
        if self.capacity:
            if len(self._walks) >= self.capacity:
                del self._walks[next(iter(self._walks))]
            self._walks[key] = (walk, reply)
        return walk, reply

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
