"""The switch's slow path: the simulator's decision for a frame that missed the flow cache.

Contract: ``Oracle(network, host)`` takes over the host's *switch namespaces* (its own and its
router namespaces: bridges, tunnel endpoints, the distributed router's stack, their filter and
NAT chains) — the switch does in user space everything the simulator does there. Its ``ports``
are the devices of those namespaces that lead out of them: a NIC on an underlay segment, or a
veth whose peer is in another namespace (an endpoint). ``decide(port, frame)`` walks the frame
arriving on that port through the simulator, stopping at every port it leaves by, and returns
``Decision(outputs, cacheable)``: the frames to send per port, and whether later frames of the
same flow may reuse them — not when the walk was answered by the switch's own stack (a ping to
the gateway: those answers depend on more than the key), nor when a filter dropped it (the same
flow may pass once the other side has opened the connection). The simulator keeps its state
between calls (conntrack, learned MACs, neighbours), so the first reply of a connection is seen
as ESTABLISHED, exactly as in a prediction.
"""

from dataclasses import dataclass

from netvirt.dataplane.sim.engine import Simulator
from netvirt.dataplane.events import Action
from netvirt.dataplane.sim.run import Run
from netvirt.dataplane.sim.topology import Place
from netvirt.graph import DeviceKind, NamespaceKind, NetworkGraph

SWITCH_NAMESPACE_KINDS = (NamespaceKind.HOST, NamespaceKind.ROUTER)


def switch_namespaces(network: NetworkGraph, host: str) -> set[str]:
    """The namespaces of ``host`` whose forwarding the userspace switch does itself."""
    graph = next(g for g in network.hosts if g.host == host)
    return {ns.name for ns in graph.namespaces if ns.kind in SWITCH_NAMESPACE_KINDS}


@dataclass(frozen=True, slots=True)
class Decision:
    outputs: tuple[tuple[int, bytes], ...]
    cacheable: bool


class _Stopping(Simulator):
    """The simulator, stopping where a frame leaves the switch by a port (recorded, not walked on)."""

    def __init__(self, network: NetworkGraph, boundary: dict[Place, int]) -> None:
        super().__init__(network)
        self.boundary = boundary
        self.outputs: list[tuple[int, bytes]] = []

    def transmit(self, run: Run, place: Place, frame: bytearray) -> bool:
        port = self.boundary.get(place)
        if port is None or not self.topology.devices[place].up:
            return super().transmit(run, place, frame)
        self.event(run, Action.TRANSMIT, place, frame, "out of the userspace switch")
        self.outputs.append((port, bytes(frame)))
        return True


class Oracle:
    """See the module docstring."""

    def __init__(self, network: NetworkGraph, host: str) -> None:
        self.host = host
        owned = switch_namespaces(network, host)
        graph = next(g for g in network.hosts if g.host == host)
        probe = Simulator(network)
        topology = probe.topology
        self.ports: list[Place] = []
        for dev in graph.devices:
            place = (host, dev.namespace, dev.name)
            if dev.namespace not in owned:
                continue
            peer = topology.wire.get(place)
            if dev.kind is DeviceKind.NIC and place in topology.segment_of or (
                    dev.kind is DeviceKind.VETH and peer is not None and peer[1] not in owned):
                self.ports.append(place)
        self.names = [place[2] for place in self.ports]
        self.sim = _Stopping(network, {place: i for i, place in enumerate(self.ports)})
        self.sim.announce()  # every MAC learned, every neighbour known: the network's warm state

    def decide(self, port: int, frame: bytes) -> Decision:
        sim = self.sim
        sim.outputs = []
        host, namespace, device = self.ports[port]
        walk = sim.inject(host, namespace, device, frame, record=True)
        answered = any(e.action in (Action.DELIVER, Action.REPLY) and e.host == host for e in walk.events)
        if answered:
            sim.answer(walk, record=False)
        # a filter's drop may turn into a pass once the other side opens the connection (ESTABLISHED)
        filtered = any(e.action is Action.FILTER_DROP for e in walk.events)
        return Decision(tuple(sim.outputs), not answered and not filtered)
