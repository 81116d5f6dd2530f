"""Read a host's device graph back from the kernel (the ``linux`` backend's ``realized``).

Contract: ``read_host(names, host, reference, ...)`` looks only at the kernel namespaces of
``host`` in that deployment (``Names.graph_namespace``) and returns a ``HostGraph`` of what is
really there: namespaces; links with kind, MTU, MAC, addresses, master, parent, state; veth
peers (ends that are each other's peer); VXLAN settings and static FDB; bridges' static FDB;
netvirt's routes (protocol 77), permanent neighbours; forwarding and rp_filter sysctls; filter and
NAT rules identified by their ``nv:`` digests; sockets while something listens on them.

What the kernel does not know — levels, techniques, origins, namespace kinds, the order of
lists — comes from ``reference`` (usually the desired graph), so a host in sync reads back equal
to it and ``graph.diff`` shows exactly the drift. A NIC is a veth whose peer is its port on the
underlay segment. A MAC the reference leaves to the kernel (None) reads back as None.

With ``previous`` (an earlier ``read_host`` of the same host, trusted to still hold), only the
graph namespaces named in ``stale``, and namespaces ``previous`` does not have, are read from the
kernel; the others are taken from ``previous`` as they are, and a veth end there still pairs with
the link it paired with. The namespaces come from the kernel's list either way.
"""

import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface, ip_network

from netvirt.dataplane.kernel import links, netns, targets
from netvirt.dataplane.kernel.links import RTPROT_NETVIRT, graph_metric
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.graph import (
    FLOOD_MAC,
    Bridge,
    Chain,
    Device,
    DeviceKind,
    FdbEntry,
    HostGraph,
    Namespace,
    NamespaceKind,
    Neighbour,
    PortRange,
    Route,
    RouteType,
    RpFilter,
    Segment,
    Socket,
    Tunnel,
    Veth,
)

UNKNOWN = "?"
_RP_FILTER = {"0": RpFilter.OFF, "1": RpFilter.STRICT, "2": RpFilter.LOOSE}
_TCP_LISTEN = "0A"


def graph_place(names: Names, kernel_namespace: str) -> tuple[str, str] | None:
    """(host, graph namespace) of a kernel namespace of ``names`` (None: not a host's)."""
    start = f"{names.prefix}-{names.deployment}-"
    if not kernel_namespace.startswith(start) or is_segment(names, kernel_namespace):
        return None
    local = kernel_namespace[len(start):]
    host, dot, rest = local.partition(".")
    return (host, rest if dot else host)


def is_segment(names: Names, kernel_namespace: str) -> bool:
    return kernel_namespace.startswith(f"{names.prefix}-{names.deployment}-_")


def segment_port(names: Names, host: str, namespace: str, nic: str) -> str:
    """The link name, in its segment's namespace, of the port NIC ``namespace/nic`` of ``host``
    plugs into (``nv-eth0-1a2b3``: derived from all three, so every host gets its own)."""
    return names.link(f"{host}:{namespace}", nic)


def link_names(kernel_namespace: str) -> list[str]:
    """The names of every link in ``kernel_namespace``."""
    ipr = netns.netlink(kernel_namespace)
    try:
        return [msg.get("IFLA_IFNAME") for msg in ipr.get_links()]
    finally:
        ipr.close()


@dataclass
class _Link:
    namespace: str  # kernel namespace
    name: str
    index: int
    kind: str | None
    mtu: int
    mac: str | None
    up: bool
    master: int | None
    peer: int | None
    underlay: int | None
    data: dict = field(default_factory=dict)
    addresses: list = field(default_factory=list)


@dataclass
class _Space:
    """What one kernel namespace holds."""

    name: str
    links: dict[str, _Link]
    routes: list[Route]
    neighbours: list[Neighbour]
    bridge_fdb: dict[str, list[tuple[str, str]]]
    vxlan_fdb: dict[str, list[tuple[str, str]]]
    sysctls: dict[str, str | None]
    listening: set[tuple[str, int]]

    def by_index(self, index: int | None) -> str | None:
        return next((link.name for link in self.links.values() if link.index == index), None)


def _read_space(name: str) -> _Space:
    ipr = netns.netlink(name)
    try:
        found: dict[str, _Link] = {}
        for msg in ipr.get_links():
            info = msg.get("IFLA_LINKINFO")
            data = info.get("IFLA_INFO_DATA") if info is not None else None
            values = {key: value for key, value in data["attrs"]} if data is not None and hasattr(data, "get") else {}
            link = _Link(
                namespace=name, name=msg.get("IFLA_IFNAME"), index=msg["index"], kind=links.kind(msg),
                mtu=msg.get("IFLA_MTU"), mac=msg.get("IFLA_ADDRESS"), up=bool(msg["flags"] & 1),
                master=msg.get("IFLA_MASTER"), peer=msg.get("IFLA_LINK"), underlay=values.get("IFLA_VXLAN_LINK"),
                data=values,
            )
            found[link.name] = link
        by_index = {link.index: link for link in found.values()}
        for msg in ipr.addr("dump"):
            if msg["scope"] == 0 and msg["index"] in by_index:
                by_index[msg["index"]].addresses.append(ip_interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"))
        routes = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.route("dump", family=family, proto=RTPROT_NETVIRT):
                if msg["proto"] != RTPROT_NETVIRT or msg.get("RTA_TABLE", 254) != 254:
                    continue
                version = 4 if family == socket.AF_INET else 6
                dst = msg.get("RTA_DST") or ("0.0.0.0" if version == 4 else "::")
                dev = by_index.get(msg.get("RTA_OIF"))
                kind = {1: RouteType.UNICAST, 6: RouteType.BLACKHOLE, 7: RouteType.UNREACHABLE}.get(msg["type"])
                if kind is None:
                    continue
                gateway, src = msg.get("RTA_GATEWAY"), msg.get("RTA_PREFSRC")
                routes.append(Route(
                    dst=ip_network(f"{dst}/{msg['dst_len']}"), via=ip_address(gateway) if gateway else None,
                    dev=dev.name if dev and kind is RouteType.UNICAST else None,
                    metric=graph_metric(version, msg.get("RTA_PRIORITY", 0)), kind=kind,
                    src=ip_address(src) if src else None,
                ))
        neighbours = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.neigh("dump", family=family):
                dev = by_index.get(msg["ifindex"])
                if dev is None or not msg["state"] & links.NUD_PERMANENT or msg.get("NDA_LLADDR") is None:
                    continue
                neighbours.append(Neighbour(ip_address(msg.get("NDA_DST")), msg.get("NDA_LLADDR"), dev.name))
        bridge_fdb = {
            link.name: [(mac, by_index[port].name) for mac, port in links.static_bridge_fdb(ipr, link.index) if port in by_index]
            for link in found.values() if link.kind == "bridge"
        }
        vxlan_fdb = {link.name: links.vxlan_fdb(ipr, link.index) for link in found.values() if link.kind == "vxlan"}
    finally:
        ipr.close()
    keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.rp_filter"]
    sysctls, sockets = netns.call_in(name, lambda: (netns.read_sysctls_here(keys), _listening_here()))
    return _Space(name, found, routes, neighbours, bridge_fdb, vxlan_fdb, sysctls, sockets)


def listening(name: str) -> set[tuple[str, int]]:
    """(proto, port) of the TCP sockets listening and UDP sockets bound in namespace ``name``."""
    return netns.call_in(name, _listening_here)


def _listening_here() -> set[tuple[str, int]]:
    """``listening`` for the namespace of the calling thread."""
    found = set()
    for proto, files in (("tcp", ("tcp", "tcp6")), ("udp", ("udp", "udp6"))):
        for file in files:
            try:
                lines = open(f"/proc/thread-self/net/{file}").read().splitlines()[1:]
            except FileNotFoundError:
                continue
            for line in lines:
                fields = line.split()
                if proto == "tcp" and fields[3] != _TCP_LISTEN:
                    continue
                found.add((proto, int(fields[1].rsplit(":", 1)[1], 16)))
    return found


def read_host(
    names: Names,
    host: str,
    reference: HostGraph | None,
    segments: dict[tuple[str, str, str], Segment],
    previous: HostGraph | None = None,
    stale: Collection[str] = (),
) -> HostGraph:
    """What the kernel holds for ``host`` (see the module docstring)."""
    existing = netns.names()
    kernel = names.host_namespaces(host, [name for name in existing if netns.exists(name)])
    if not kernel:
        return HostGraph(host=host)
    graph_of = {name: graph_place(names, name)[1] for name in kernel}  # type: ignore[index]
    kept = (set(graph_of.values()) - set(stale)) & {ns.name for ns in previous.namespaces} if previous else set()
    spaces = {name: _read_space(name) for name in kernel if graph_of[name] not in kept}
    ref_ns = {ns.name: ns for ns in reference.namespaces} if reference else {}
    ref_dev = {dev.key: dev for dev in reference.devices} if reference else {}
    read = {graph_of[name] for name in spaces}
    # a NIC is told from a veth by its port on the segment: read segments only for NICs read here
    nics = any(dev.kind is DeviceKind.NIC and dev.namespace in read for dev in ref_dev.values())
    segment_spaces = {name: _read_space(name) for name in existing
                      if nics and is_segment(names, name) and netns.exists(name)}
    kept_devices = [dev for dev in previous.devices if dev.namespace in kept] if previous else []
    reader = _Reader(names, host, spaces, segment_spaces, graph_of, ref_dev, kept_devices)
    namespaces = [ns for ns in previous.namespaces if ns.name in kept] if previous else []
    devices = list(kept_devices)
    for kernel_name, space in spaces.items():
        graph_name = graph_of[kernel_name]
        reference_ns = ref_ns.get(graph_name)
        for link in space.links.values():
            if link.kind in ("veth", "bridge", "vxlan"):
                device = reader.device(graph_name, link)
                if device is not None:
                    devices.append(device)
        for dev in (reference.devices if reference else ()):
            if dev.namespace == graph_name and isinstance(dev.config, Socket):
                if (dev.config.proto.value, dev.config.port) in space.listening:
                    devices.append(dev)
        namespaces.append(_namespace(names, graph_name, kernel_name, space, reference_ns, host))
    ns_order = [ns.name for ns in reference.namespaces] if reference else []
    dev_order = [dev.key for dev in reference.devices] if reference else []
    return HostGraph(
        host=host,
        namespaces=_ordered(namespaces, ns_order, lambda ns: ns.name),
        devices=_ordered(devices, dev_order, lambda dev: dev.key),
        stages=reference.stages if reference else (),
    )


class _Reader:
    """Turns kernel links into graph devices, with the reference's labels."""

    def __init__(self, names, host, spaces, segment_spaces, graph_of, ref_dev, kept_devices) -> None:
        self.names, self.host = names, host
        self.spaces, self.segment_spaces = spaces, segment_spaces
        self.graph_of, self.ref_dev = graph_of, ref_dev
        self.kernel_of = {graph_of[name]: name for name in spaces}  # of the namespaces read
        # (namespace, name) -> the veth end, in a namespace not read, that was paired with it
        self.kept_peers = {(dev.config.peer_namespace, dev.config.peer): (dev.namespace, dev.name)
                           for dev in kept_devices if isinstance(dev.config, Veth)}

    def device(self, namespace: str, link: _Link) -> Device | None:
        reference = self.ref_dev.get((namespace, link.name))
        space = self.spaces[link.namespace]
        kind, config = self._kind_and_config(namespace, link, reference)
        if kind is None:
            return None
        fields: dict = {}
        if reference is not None and reference.kind is kind:
            fields = {"mode": reference.mode, "level": reference.level, "technique": reference.technique,
                      "origin": reference.origin}
        want_mac = reference.mac if reference is not None else link.mac
        parent = space.by_index(link.underlay) if kind is DeviceKind.VXLAN else None
        return Device.of(
            kind, link.name, namespace, config=config, mtu=link.mtu,
            mac=link.mac if want_mac is not None else None,
            addresses=_ordered(link.addresses, list(reference.addresses) if reference else [], lambda a: a),
            master=space.by_index(link.master), parent=parent, up=link.up, **fields,
        )

    def _kind_and_config(self, namespace: str, link: _Link, reference: Device | None):
        if link.kind == "bridge":
            space = self.spaces[link.namespace]
            entries = [FdbEntry(mac, device=port) for mac, port in space.bridge_fdb.get(link.name, [])]
            order = list(reference.config.fdb) if reference is not None and isinstance(reference.config, Bridge) else []
            ageing = link.data.get("IFLA_BR_AGEING_TIME", 30000) // 100
            return DeviceKind.BRIDGE, Bridge(ageing_time=ageing, fdb=_ordered(entries, order, lambda e: e))
        if link.kind == "vxlan":
            return DeviceKind.VXLAN, self._tunnel(link, reference)
        if link.kind == "veth":
            return self._veth(namespace, link, reference)
        return None, None

    def _tunnel(self, link: _Link, reference: Device | None) -> Tunnel:
        data = link.data
        local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
        remote = data.get("IFLA_VXLAN_GROUP") or data.get("IFLA_VXLAN_GROUP6")
        ports = data.get("IFLA_VXLAN_PORT_RANGE") or {"low": 0, "high": 0}
        if local and ip_address(local).version == 6:
            checksum = not data.get("IFLA_VXLAN_UDP_ZERO_CSUM6_TX", 0)
        else:
            checksum = bool(data.get("IFLA_VXLAN_UDP_CSUM", 0))
        kernel = self.spaces[link.namespace].vxlan_fdb.get(link.name, [])
        flood = [ip_address(dst) for mac, dst in kernel if mac == FLOOD_MAC]
        entries = [FdbEntry(mac, remote=ip_address(dst)) for mac, dst in kernel if mac != FLOOD_MAC]
        known = reference.config if reference is not None and isinstance(reference.config, Tunnel) else Tunnel(vni=0)
        return Tunnel(
            vni=data.get("IFLA_VXLAN_ID", 0),
            local=ip_address(local) if local else None,
            remote=ip_address(remote) if remote and not ip_address(remote).is_unspecified else None,
            dst_port=data.get("IFLA_VXLAN_PORT", 4789),
            src_ports=PortRange(ports["low"], ports["high"]) if ports["low"] else PortRange(1, 65535),
            ttl=data.get("IFLA_VXLAN_TTL") or 64,
            udp_checksum=checksum,
            learning=bool(data.get("IFLA_VXLAN_LEARNING", 0)),
            flood=_ordered(flood, list(known.flood), lambda a: a),
            fdb=_ordered(entries, list(known.fdb), lambda e: e),
        )

    def _veth(self, namespace: str, link: _Link, reference: Device | None):
        if reference is not None and reference.kind is DeviceKind.NIC:
            port = segment_port(self.names, self.host, namespace, link.name)
            if any(self._paired(link, space.links.get(port)) for space in self.segment_spaces.values()):
                return DeviceKind.NIC, None
        kept = self.kept_peers.get((namespace, link.name))
        if kept is not None:  # its peer is in a namespace not read, which is trusted unchanged
            return DeviceKind.VETH, Veth(peer=kept[1], peer_namespace=kept[0])
        candidates = []
        if reference is not None and isinstance(reference.config, Veth):
            kernel_peer = self.kernel_of.get(reference.config.peer_namespace)
            if kernel_peer is not None:
                candidates.append(self.spaces[kernel_peer].links.get(reference.config.peer))
        candidates += [other for space in self.spaces.values() for other in space.links.values()]
        peer = next((other for other in candidates if self._paired(link, other)), None)
        if peer is None:
            return DeviceKind.VETH, Veth(peer=UNKNOWN, peer_namespace=UNKNOWN)
        return DeviceKind.VETH, Veth(peer=peer.name, peer_namespace=self.graph_of[peer.namespace])

    @staticmethod
    def _paired(link: _Link, other: _Link | None) -> bool:
        return (
            other is not None and other is not link and other.kind == "veth"
            and link.peer == other.index and other.peer == link.index
        )


def _namespace(names: Names, graph_name: str, kernel_name: str, space: _Space, reference: Namespace | None,
               host: str) -> Namespace:
    route_order = list(reference.routes) if reference else []
    neighbour_order = list(reference.neighbours) if reference else []
    chains: tuple[tuple[Chain, ...], tuple[Chain, ...]] = ((), ())
    if reference is not None and (reference.filter or reference.nat):
        wanted = Ruleset(filter=reference.filter, nat=reference.nat)
        found = targets.read(names, kernel_name, wanted)
        chains = (found.filter, found.nat)
    sysctls = space.sysctls
    kind = reference.kind if reference else (NamespaceKind.HOST if graph_name == host else NamespaceKind.CONTAINER)
    return Namespace(
        name=graph_name,
        kind=kind,
        routes=_ordered(space.routes, route_order, lambda r: r),
        neighbours=_ordered(space.neighbours, neighbour_order, lambda n: n),
        ip_forward=sysctls["net.ipv4.ip_forward"] == "1",
        ipv6_forward=sysctls["net.ipv6.conf.all.forwarding"] == "1",
        rp_filter=_RP_FILTER.get(sysctls["net.ipv4.conf.all.rp_filter"] or "0", RpFilter.OFF),
        filter=chains[0],
        nat=chains[1],
        conntrack_zone=reference.conntrack_zone if reference else 0,
        origin=reference.origin if reference else "",
    )


def _ordered(items, order, key) -> tuple:
    """``items`` in the order of the keys in ``order`` (``key`` gives an item's), the others
    after them, sorted by the repr of their keys."""
    position = {wanted: number for number, wanted in enumerate(order)}
    return tuple(sorted(items, key=lambda item: (position.get(key(item), len(position)), repr(key(item)))))

