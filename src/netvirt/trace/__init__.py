"""Traces: how one packet travels, hop by hop, and where it dies and why (DESIGN.md §7).

Contract: ``Tracer(network).trace(Flow(...)) -> Trace(disposition, reason, hops, anomalies)``
walks real bytes through the simulator (``dataplane.sim``); every ``Hop`` has its walkthrough
step, mode, system level, technique, device, namespace, ``Action`` (a closed enum), the packet
at that point, MTU and encapsulation overhead; ``Trace.rows`` group hops into the notes'
walkthrough steps. Renderers (``render``): table, markdown, JSON (a public interface,
docs/trace.md), pcap. ``anomalies.check`` explains what is wrong on a path and how to fix it;
``reach`` answers reachability for many probes and compares two networks. ``plan`` turns a
spec's names (endpoints, services, ``IP:PORT``, ``external``) into flows and probe sets for every
front end. The vocabulary (``Action``, ``Disposition``) is ``dataplane.events``, not the simulator's.
"""

from netvirt.dataplane.events import Action, Disposition
from netvirt.trace.model import Anomaly, Hop, Row, Trace, build
from netvirt.trace.reachability import Change, Probe, Reachability, compare, reach
from netvirt.trace.run import INTERNET, Flow, Tracer, with_internet

__all__ = [
    "INTERNET",
    "Action",
    "Anomaly",
    "Change",
    "Disposition",
    "Flow",
    "Hop",
    "Probe",
    "Reachability",
    "Row",
    "Trace",
    "Tracer",
    "build",
    "compare",
    "reach",
    "with_internet",
]
