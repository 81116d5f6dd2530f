"""The indexes the simulator walks: who is wired to whom, addresses, routes, sockets, chains.

Contract: built once from a ``NetworkGraph`` (read-only afterwards). A *place* is
``(host, namespace, device)``. Wiring, as docs/trace.md describes it:

- a veth's wire ends at its peer; a ``Link`` joins its two ends; a segment joins its attachments;
- a switch (bridge, hypervisor switch, NIC eswitch) has as ports the devices naming it ``master``
  and the device at the other end of its own link;
- devices naming a NIC as ``parent`` are *bound* to it: an eswitch, a DPDK PMD, an AF_XDP socket,
  an NDIS filter or a macvlan sees the NIC's frames first;
- a ``socket`` device listens in its namespace (``parent`` set: behind a DPDK PMD / AF_XDP socket).

Each namespace gets Linux's connected routes (one per interface prefix) after its own routes.
"""

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_interface, ip_network

from netvirt.dataplane.sim.classify import CompiledClassifier, LinearClassifier
from netvirt.graph import (
    TUNNEL_KINDS,
    Chain,
    Device,
    DeviceHook,
    DeviceKind,
    HookKind,
    Namespace,
    NetworkGraph,
    Proto,
    RouteType,
    Socket,
    Stage,
    Veth,
)
from netvirt.wire import geneve
from netvirt.wire.addresses import mac_to_bytes

Place = tuple[str, str, str]
Space = tuple[str, str]  # (host, namespace)
LOOPBACK = (ip_interface("127.0.0.1/8"), ip_interface("::1/128"))
BOUND_KINDS = (DeviceKind.NIC_ESWITCH, DeviceKind.DPDK_PMD, DeviceKind.AF_XDP_SOCKET, DeviceKind.NDIS_FILTER,
               DeviceKind.MACVLAN)


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """A route lowered for lookup: ``prefix`` bits of ``network`` (an int) of ``version``."""

    version: int
    network: int
    prefix: int
    shift: int
    via: bytes | None
    dev: str | None
    metric: int
    kind: RouteType
    src: bytes | None
    text: str


@dataclass(frozen=True, slots=True)
class TunnelIndex:
    """A tunnel's config lowered to bytes: local address, fixed remote, FDB (MAC -> remotes), the
    default remotes (head-end replication for broadcast and unknown MACs) and the Geneve options
    as the wire codec takes them."""

    local: bytes | None
    remote: bytes | None
    fdb: dict[bytes, list[bytes]]
    defaults: list[bytes]
    options: tuple[geneve.Option, ...] = ()


@dataclass(slots=True)
class NamespaceIndex:
    """One namespace, lowered: local addresses, routes, neighbours, sockets, tunnels, chains."""

    host: str
    namespace: Namespace
    addresses: dict[bytes, tuple[str, int]] = field(default_factory=dict)  # address -> (device, prefix)
    routes: list[RouteEntry] = field(default_factory=list)
    neighbours: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    sockets: dict[tuple[int, int], list[Device]] = field(default_factory=dict)
    tunnels: list[Device] = field(default_factory=list)
    chains: dict[tuple[str, str], tuple[Chain, object]] = field(default_factory=dict)

    def classifier(self, table: str, hook: str):
        """``(chain, classifier)`` at ``table``/``hook``, or None."""
        return self.chains.get((table, hook))


class Topology:
    """See the module docstring. ``compiled`` picks the tuple-space classifier over the linear one."""

    def __init__(self, network: NetworkGraph, compiled: bool = True) -> None:
        self.network = network
        self.devices: dict[Place, Device] = {}
        self.macs: dict[Place, bytes] = {}
        self.spaces: dict[Space, NamespaceIndex] = {}
        self.wire: dict[Place, Place] = {}
        self.segment_of: dict[Place, str] = {}
        self.segment_ports: dict[str, list[Place]] = {}
        self.segment_mtu: dict[str, int] = {}
        self.ports: dict[Place, list[Place]] = {}
        self.bound: dict[Place, list[Device]] = {}
        self.binding: dict[tuple[Place, DeviceKind], Device] = {}  # (nic, kind) -> the device bound to it
        self.hooks: dict[tuple[Place, HookKind], DeviceHook] = {}
        self.members: dict[Space, list[Device]] = {}
        self.tunnels: dict[Place, TunnelIndex] = {}
        self.stages: dict[tuple[str, str], Stage] = {}
        make = CompiledClassifier if compiled else LinearClassifier
        for graph in network.hosts:
            host = graph.host
            for ns in graph.namespaces:
                self.spaces[(host, ns.name)] = NamespaceIndex(host, ns)
            for dev in graph.devices:
                place = (host, dev.namespace, dev.name)
                self.devices[place] = dev
                if dev.mac is not None:
                    self.macs[place] = mac_to_bytes(dev.mac)
            for stage in graph.stages:
                for where in stage.places:
                    self.stages[(host, where)] = stage
            for link in graph.links:
                a, b = (host, link.a.namespace, link.a.device), (host, link.b.namespace, link.b.device)
                self.wire[a], self.wire[b] = b, a
            for dev in graph.devices:
                self._index_device(host, dev)
            for ns in graph.namespaces:
                self._index_namespace(self.spaces[(host, ns.name)], make)
        for segment in network.segments:
            ends = [(a.host, a.namespace, a.device) for a in segment.attachments]
            self.segment_ports[segment.name] = ends
            self.segment_mtu[segment.name] = segment.mtu
            for end in ends:
                self.segment_of[end] = segment.name

    def _index_device(self, host: str, dev: Device) -> None:
        place = (host, dev.namespace, dev.name)
        space = self.spaces.get((host, dev.namespace))
        if isinstance(dev.config, Veth):
            self.wire[place] = (host, dev.config.peer_namespace, dev.config.peer)
        if dev.master is not None:
            self.ports.setdefault((host, dev.namespace, dev.master), []).append(place)
        if dev.parent is not None and dev.kind in BOUND_KINDS + (DeviceKind.HYPERVISOR_SWITCH,):
            lower = (host, self.lower_namespace(dev), dev.parent)
            self.bound.setdefault(lower, []).append(dev)
            self.binding.setdefault((lower, dev.kind), dev)
        for hook in dev.hooks:
            self.hooks[(place, hook.kind)] = hook
        self.members.setdefault((host, dev.namespace), []).append(dev)
        if space is None:
            return
        for interface in dev.addresses:
            space.addresses[interface.ip.packed] = (dev.name, interface.network.prefixlen)
        if isinstance(dev.config, Socket):
            proto = Proto(dev.config.proto).number
            space.sockets.setdefault((proto, dev.config.port), []).append(dev)
        if dev.kind in TUNNEL_KINDS:
            space.tunnels.append(dev)
            config = dev.config
            fdb: dict[bytes, list[bytes]] = {}
            for entry in config.fdb:
                if entry.remote is not None:
                    fdb.setdefault(mac_to_bytes(entry.mac), []).append(entry.remote.packed)
            defaults = [remote.packed for remote in config.flood]
            options = tuple(geneve.Option(o.option_class, o.type, o.data) for o in config.options)
            self.tunnels[place] = TunnelIndex(None if config.local is None else config.local.packed,
                                              None if config.remote is None else config.remote.packed, fdb, defaults,
                                              options)

    def _index_namespace(self, space: NamespaceIndex, make) -> None:
        ns = space.namespace
        for interface in LOOPBACK:
            space.addresses.setdefault(interface.ip.packed, ("lo", interface.network.prefixlen))
        routes = [_lower(route.dst, route.via, route.dev, route.metric, route.kind, route.src) for route in ns.routes]
        explicit = {(r.version, r.network, r.prefix) for r in routes}
        for dev in sorted(self.members.get((space.host, ns.name), ()), key=lambda d: d.name):
            for interface in dev.addresses:
                entry = _lower(interface.network, None, dev.name, 0, RouteType.UNICAST, interface.ip)
                if (entry.version, entry.network, entry.prefix) not in explicit:
                    routes.append(entry)
        space.routes = sorted(routes, key=lambda r: (-r.prefix, r.metric))
        for neighbour in ns.neighbours:
            space.neighbours[(neighbour.dev, neighbour.address.packed)] = mac_to_bytes(neighbour.mac)
        for table, chains in (("filter", ns.filter), ("nat", ns.nat)):
            for chain in chains:
                space.chains[(table, chain.hook.value)] = (chain, make(chain.rules, chain.policy))

    def port_mac(self, place: Place) -> bytes | None:
        """The MAC behind a switch port: the port's own, or its wire peer's (a VM's vNIC)."""
        peer = self.wire.get(place)
        if peer is not None and peer in self.macs and self.devices[place].kind is not DeviceKind.VETH:
            return self.macs[peer]
        return self.macs.get(place)

    @staticmethod
    def lower_namespace(dev: Device) -> str:
        """The namespace of ``dev``'s parent (a macvlan moved out of its lower device's namespace)."""
        return getattr(dev.config, "lower_namespace", None) or dev.namespace

    def route(self, space: NamespaceIndex, dst: bytes) -> RouteEntry | None:
        """Longest-prefix match (lowest metric among equals) for ``dst``."""
        value = int.from_bytes(dst, "big")
        version = 4 if len(dst) == 4 else 6
        for entry in space.routes:
            if entry.version == version and value >> entry.shift == entry.network:
                return entry
        return None


def _lower(dst: IPv4Network | IPv6Network, via, dev, metric, kind, src) -> RouteEntry:
    network = ip_network(dst)
    shift = network.max_prefixlen - network.prefixlen
    return RouteEntry(network.version, int(network.network_address) >> shift, network.prefixlen, shift,
                      None if via is None else via.packed, dev, metric, kind,
                      None if src is None else src.packed, str(network))
