"""Tracing packets through a graph: ``Tracer(network).trace(...) -> Trace``, and the outside world.

Contract: a ``Tracer`` owns one simulator with a flow cache (``dataplane.sim.FlowCache``): each
trace is a walk from fresh state — the same packet from the same place always gives the same
trace — and a repeated one costs a cache hit (of the finished trace). After a delivered packet the destination's
answer (SYN|ACK, UDP reply, echo reply) is walked too, in the state the request left; the
anomaly checks compare the two paths. ``with_internet`` adds the outside world to a compiled
network: one namespace on its underlay that owns ``INTERNET`` and answers on any port.
"""

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface, ip_network

from netvirt.dataplane.events import Walk
from netvirt.dataplane.sim import FlowCache
from netvirt.graph import (
    Attachment,
    Device,
    DeviceKind,
    HostGraph,
    Mode,
    Namespace,
    NamespaceKind,
    NetworkGraph,
    Proto,
    Route,
    Segment,
    Socket,
)
from netvirt.trace.anomalies import check
from netvirt.trace.model import Trace, build
from netvirt.wire.builders import probe

INTERNET = ip_address("203.0.113.10")  # TEST-NET-3 (RFC 5737): "a server on the internet"
INTERNET6 = ip_address("2001:db8:ffff::10")
INTERNET_HOST = "internet"


@dataclass(frozen=True, slots=True)
class Flow:
    """What to send: from namespace ``namespace`` of ``host`` (address ``src``) to ``dst``."""

    host: str
    namespace: str
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    proto: str = "tcp"
    src_port: int = 40000
    dst_port: int = 80
    size: int = 0

    def packet(self) -> bytes:
        return probe(self.src, self.dst, self.proto, src_port=self.src_port if self.proto != "icmp" else 1,
                     dst_port=self.dst_port if self.proto != "icmp" else 0, size=self.size)


class Tracer:
    """See the module docstring. ``compiled`` picks the tuple-space classifier (else linear);
    ``view`` rewrites each walk before it becomes a trace (how a backend shows its hops, e.g.
    ``dataplane.userspace.labels.trace_view``).
    Finished traces are memoised too (``hits``/``misses``), so a repeated trace is one lookup;
    ``capacity`` 0 turns both caches off."""

    def __init__(self, network: NetworkGraph, *, compiled: bool = True, capacity: int = 65536,
                 view: Callable[[Walk], Walk] | None = None) -> None:
        self.cache = FlowCache(network, compiled=compiled, capacity=capacity)
        self.view = view
        self.topology = self.cache.simulator.topology
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._traces: dict[tuple[Flow, frozenset, bool], Trace] = {}
        self._warm = False

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def trace(self, flow: Flow, *, skip: frozenset[tuple[str, str]] = frozenset(), anomalies: bool = True) -> Trace:
        """The trace of ``flow``; events in the ``skip`` (host, namespace)s before the first other
        one are left out (the outside world of a walkthrough)."""
        key = (flow, skip, anomalies)
        found = self._traces.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        self._warm = False  # the cache starts every walk from fresh state
        walk, answer = self.cache.exchange(flow.host, flow.namespace, flow.packet())
        if self.view is not None:
            walk, answer = self.view(walk), None if answer is None else self.view(answer)
        trace = build(walk, self.topology.stages, skip=skip)
        if answer is not None:
            trace = trace.with_answer(build(answer, self.topology.stages))
        if anomalies:
            trace = trace.with_anomalies(check(trace, walk, answer, self.topology))
        if self.capacity:
            if len(self._traces) >= self.capacity:
                del self._traces[next(iter(self._traces))]
            self._traces[key] = trace
        return trace

    def verdict(self, flow: Flow):
        """Only the outcome of ``flow``: no hops recorded, no conntrack entries from earlier flows,
        but neighbour caches and learned FDB entries kept warm (as in a running network) — what
        ``reach`` needs for thousands of flows. The verdict equals ``trace(flow).disposition``."""
        simulator = self.cache.simulator
        if not self._warm:
            simulator.reset()
            simulator.announce()
            self._warm = True
        simulator.reset(connections_only=True)
        return simulator.send(flow.host, flow.namespace, flow.packet(), record=False)


def with_internet(network: NetworkGraph, ports=()) -> NetworkGraph:
    """``network`` plus host ``internet``: a namespace on the first underlay segment owning
    ``INTERNET`` (and ``INTERNET6``), listening on ``ports`` (``("tcp", 443)``...); an internet
    host already there is replaced (so listeners can be added to a deployed network's graph).
    The ``linux`` backend builds it as any host (sockets are the applications' part)."""
    if not network.segments:
        raise ValueError("the network has no underlay segment to reach the outside from")
    if any(graph.host == INTERNET_HOST for graph in network.hosts):
        network = without_internet(network)
    ports = tuple(sorted(set(ports)))
    segment = network.segments[0]
    sockets = tuple(Device.of(DeviceKind.SOCKET, f"{proto}-{port}", "internet", config=Socket(
        proto=Proto(proto), port=port, app="internet server")) for proto, port in ports)
    nic = Device.of(DeviceKind.NIC, "eth0", "internet", mac="02:4e:56:ff:ff:01", mode=Mode.HARDWARE,
                    level="Internet", technique="Upstream Router / Internet",
                    addresses=(ip_interface(f"{INTERNET}/24"), ip_interface(f"{INTERNET6}/64")), mtu=segment.mtu)
    namespace = Namespace(name="internet", kind=NamespaceKind.EXTERNAL, routes=(
        Route(dst=ip_network("0.0.0.0/0"), dev="eth0"), Route(dst=ip_network("::/0"), dev="eth0")))
    internet = HostGraph(host=INTERNET_HOST, namespaces=(namespace,), devices=(nic, *sockets))
    attached = Segment(name=segment.name, mtu=segment.mtu,
                       attachments=(*segment.attachments, Attachment(INTERNET_HOST, "internet", "eth0")))
    return NetworkGraph(hosts=(*network.hosts, internet), segments=(attached, *network.segments[1:]))


def without_internet(network: NetworkGraph) -> NetworkGraph:
    """``network`` without the outside world ``with_internet`` added."""
    segments = tuple(Segment(name=segment.name, mtu=segment.mtu, attachments=tuple(
        a for a in segment.attachments if a.host != INTERNET_HOST)) for segment in network.segments)
    return NetworkGraph(hosts=tuple(g for g in network.hosts if g.host != INTERNET_HOST), segments=segments)
