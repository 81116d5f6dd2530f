"""The compiler: a resolved spec -> per-host device graphs, from scratch or incrementally.

Contract: ``compile_network(spec)`` / ``compile_host(spec, host)`` are pure and deterministic and
emit graphs that pass ``netvirt.graph.validate``; ``Engine(spec).update(new_spec)`` returns exactly
the host graphs that changed, equal to what a full compile of ``new_spec`` gives. A valid spec the
graph cannot express raises ``CompileError``. docs/control-plane.md describes the topology.
"""

from netvirt.control.compile.compiler import compile_host, compile_network
from netvirt.control.compile.engine import NODES, Engine, NodeStats
from netvirt.control.compile.facts import CompileError

__all__ = ["NODES", "CompileError", "Engine", "NodeStats", "compile_host", "compile_network"]
