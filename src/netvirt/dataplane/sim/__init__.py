"""The simulated data plane: executes device graphs on real packet bytes, deterministically.

Contract: the oracle every other backend is checked against; no I/O, no privileges. Packet
filtering runs on the classifiers of ``netvirt.dataplane.sim.classify`` (linear first-match, the
reference, and the compiled tuple-space classifier, proven to give identical verdicts).
``Simulator(network).send(host, namespace, packet) -> Walk`` walks an IP packet an application
sends (``netvirt.wire.builders.probe`` makes one); every ``Event`` of the walk carries the packet's bytes at that hop (valid checksums).
``FlowCache`` memoises walks of repeated flows. docs/trace.md describes the semantics.
"""

from netvirt.dataplane.sim.cache import FlowCache
from netvirt.dataplane.sim.engine import Simulator
from netvirt.dataplane.sim.topology import Topology

__all__ = ["FlowCache", "Simulator", "Topology"]
