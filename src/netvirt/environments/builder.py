"""A small builder for one host's environment graph: namespaces, devices, links, stages.

Contract: collects graph objects in the order they are added (graphs are deterministic), hands
out MAC addresses from one counter (locally administered ``02:4e:56:00:00:NN`` — "NV"), and
builds the ``HostGraph`` plus the outside world's segment. Names are checked by the graph
constructors; ``finish`` validates the result and raises ``StackError`` listing problems.
"""

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, ip_interface

from netvirt.graph import (
    Attachment,
    Chain,
    Device,
    DeviceKind,
    DeviceRef,
    HostGraph,
    Link,
    Mode,
    Namespace,
    NamespaceKind,
    Neighbour,
    NetfilterHook,
    NetworkGraph,
    Route,
    Segment,
    Stage,
    Verdict,
    validate,
)


class StackError(ValueError):
    """A stack that cannot be built: says which layer and why, and how to fix it."""


@dataclass
class NamespacePlan:
    """A namespace being built (mutable until ``finish``)."""

    name: str
    kind: NamespaceKind
    routes: list[Route] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    ip_forward: bool = False
    filter: list[Chain] = field(default_factory=list)
    nat: dict[str, list] = field(default_factory=dict)  # hook -> rules
    origin: str = ""


@dataclass
class GraphBuilder:
    """See the module docstring."""

    host: str
    namespaces: dict[str, NamespacePlan] = field(default_factory=dict)
    devices: list[Device] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    segment: list[Attachment] = field(default_factory=list)
    segment_mtu: int = 1500
    joins: dict[str, list[str]] = field(default_factory=dict)
    _macs: int = 0

    def namespace(self, name: str, kind: NamespaceKind, origin: str = "") -> NamespacePlan:
        plan = NamespacePlan(name, kind, origin=origin)
        self.namespaces[name] = plan
        return plan

    def mac(self) -> str:
        self._macs += 1
        return f"02:4e:56:00:00:{self._macs:02x}"

    def device(self, kind: DeviceKind, name: str, namespace: str, **fields) -> Device:
        """Add a device; gives it a MAC unless ``mac`` is passed (None: no MAC)."""
        if "mac" not in fields and kind not in (DeviceKind.SOCKET, DeviceKind.DPDK_PMD, DeviceKind.AF_XDP_SOCKET,
                                                DeviceKind.NDIS_FILTER, DeviceKind.NIC_ESWITCH):
            fields["mac"] = self.mac()
        if "addresses" in fields:
            fields["addresses"] = tuple(ip_interface(a) for a in fields["addresses"])
        dev = Device.of(kind, name, namespace, **fields)
        self.devices.append(dev)
        return dev

    def link(self, a: Device, b: Device, technique: str = "") -> None:
        self.links.append(Link(a=DeviceRef(a.namespace, a.name), b=DeviceRef(b.namespace, b.name), technique=technique))

    def attach(self, dev: Device) -> None:
        """Plug ``dev`` into the outside network segment."""
        self.segment.append(Attachment(self.host, dev.namespace, dev.name))

    def join(self, namespace: str, *places: str) -> None:
        """Show ``places`` in whichever stage later takes the IP stack of ``namespace``."""
        self.joins.setdefault(namespace, []).extend(places)

    def stage(self, name: str, mode: Mode | str, level: str, technique: str, *places: str) -> None:
        """Group the hops at ``places`` in one walkthrough step (see ``graph.Stage``)."""
        joined = [extra for place in places for extra in self.joins.pop(place, ())]
        self.stages.append(Stage(name=name, mode=Mode(mode), level=level, technique=technique,
                                 places=(*places, *joined)))

    def staged(self, place: str) -> bool:
        return any(place in stage.places for stage in self.stages)

    def finish(self) -> NetworkGraph:
        namespaces = []
        for plan in self.namespaces.values():
            nat = tuple(Chain(hook=NetfilterHook(hook), rules=tuple(rules), policy=Verdict.ACCEPT)
                        for hook, rules in plan.nat.items())
            namespaces.append(Namespace(name=plan.name, kind=plan.kind, routes=tuple(plan.routes),
                                        neighbours=tuple(plan.neighbours), ip_forward=plan.ip_forward,
                                        filter=tuple(plan.filter), nat=nat, origin=plan.origin))
        graph = HostGraph(host=self.host, namespaces=tuple(namespaces), devices=tuple(self.devices),
                          links=tuple(self.links), stages=tuple(self.stages))
        network = NetworkGraph(hosts=(graph,), segments=(Segment(name="lan", attachments=tuple(self.segment),
                                                                 mtu=self.segment_mtu),))
        problems = validate(network)
        if problems:
            raise StackError("the environment graph is inconsistent (a netvirt bug): "
                                   + "; ".join(str(p) for p in problems))
        return network


def host_address(interface: IPv4Interface, offset: int) -> IPv4Interface:
    """The ``offset``-th address of ``interface``'s network, with its prefix."""
    return ip_interface(f"{interface.network.network_address + offset}/{interface.network.prefixlen}")


def last_address(interface: IPv4Interface) -> IPv4Address:
    network = interface.network
    return network.broadcast_address - 1 if network.num_addresses > 2 else network.network_address
