"""How a trace shows the hops the userspace switch does: user mode, outside the host kernel.

Contract: ``trace_view(network, hosts)`` returns a function ``Walk -> Walk`` for ``Tracer(view=)``:
every event in a switch namespace (``oracle.switch_namespaces``) of one of ``hosts`` is relabelled
— mode User, level "Userspace Switch", and the technique of what the switch does there (its
poll-mode driver at a port, its flow-cached switching, its own encapsulation, its router) — and
marked ``bypass``, so the ``kernel_bypass`` anomaly names the blind spot: tcpdump and netfilter
on the host do not see these hops — except a frame arriving at a port, which the port's kernel
device still receives (a capture there sees it; the switch's own transmissions bypass it). The
walk itself (the semantics) is the simulator's, unchanged.
"""

from collections.abc import Callable, Iterable
from dataclasses import replace

from netvirt.dataplane.events import Action, Walk
from netvirt.dataplane.userspace.oracle import switch_namespaces
from netvirt.graph import TUNNEL_KINDS, DeviceKind, NetworkGraph, Veth

MODE, LEVEL = "User", "Userspace Switch"
DRIVER = "Poll Mode Driver (AF_PACKET mmap rings, rx/tx bursts, no kernel stack)"
SWITCH = "Userspace Switch (flow cache: exact match -> precompiled actions)"
ROUTER = "Userspace Router (ARP/ND answers, TTL, routes, filter and NAT in the switch)"
ENCAPSULATION = {DeviceKind.VXLAN: "Userspace Encapsulation (VXLAN, RFC 7348)",
                 DeviceKind.GENEVE: "Userspace Encapsulation (Geneve with TLV options, RFC 8926)",
                 DeviceKind.NVGRE: "Userspace Encapsulation (NVGRE, RFC 7637)"}


def techniques(network: NetworkGraph, hosts: Iterable[str]) -> dict[tuple[str, str, str | None], str]:
    """(host, namespace, device or None for the stack) -> technique, for every switch place."""
    found: dict[tuple[str, str, str | None], str] = {}
    for graph in network.hosts:
        if graph.host not in hosts:
            continue
        owned = switch_namespaces(network, graph.host)
        for name in owned:
            found[(graph.host, name, None)] = ROUTER
        for dev in graph.devices:
            if dev.namespace not in owned:
                continue
            port = dev.kind is DeviceKind.NIC or (isinstance(dev.config, Veth) and dev.config.peer_namespace not in owned)
            found[(graph.host, dev.namespace, dev.name)] = (
                DRIVER if port else ENCAPSULATION[dev.kind] if dev.kind in TUNNEL_KINDS
                else SWITCH if dev.kind is DeviceKind.BRIDGE else ROUTER)
    return found


def trace_view(network: NetworkGraph, hosts: Iterable[str]) -> Callable[[Walk], Walk]:
    """See the module docstring."""
    places = techniques(network, set(hosts))

    def view(walk: Walk) -> Walk:
        events = tuple(
            replace(event, mode=MODE, level=LEVEL, technique=technique,
                    bypass=not (event.action is Action.RECEIVE and technique == DRIVER))
            if (technique := places.get((event.host, event.namespace, event.device))) is not None else event
            for event in walk.events)
        return replace(walk, events=events)

    return view
