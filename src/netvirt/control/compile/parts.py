"""Parts: the device-graph fragments one spec object contributes to one host.

Contract: each builder is a pure function of ``Facts`` and returns a ``Part`` — the namespaces and
devices it owns plus what it adds to the host namespace (routes, neighbours, rules). ``assemble``
joins a host's parts into its ``HostGraph``: the host namespace first, then the parts' namespaces
and devices in part order (host, networks, routers, endpoints; each by name). docs/control-plane.md
("Compiler") describes the topology these builders emit.
"""

from collections.abc import Iterable, Iterator
from enum import IntEnum
from ipaddress import ip_network
from itertools import chain
from operator import attrgetter
from typing import NamedTuple

from netvirt.control.compile import naming
from netvirt.control.compile.facts import CompileError, Facts, host_prefix, with_prefix
from netvirt.control.compile.policy import ESTABLISHED, interface_rules
from netvirt.graph import (
    Bridge,
    Chain,
    DROP,
    DROP_LIST_PROGRAM,
    Chunks,
    Device,
    DeviceHook,
    DeviceKind,
    FdbEntry,
    GeneveOption,
    HookKind,
    HostGraph,
    IPInterface,
    Masquerade,
    Match,
    Namespace,
    NamespaceKind,
    Neighbour,
    NetfilterHook,
    Proto,
    Route,
    Rule,
    Socket,
    Tunnel,
    Veth,
)
from netvirt.management.spec import Network
from netvirt.management.spec.encap import overhead

TUNNEL_KINDS = {"vxlan": DeviceKind.VXLAN, "geneve": DeviceKind.GENEVE, "nvgre": DeviceKind.NVGRE}
TUNNEL_PORTS = {"vxlan": 4789, "geneve": 6081, "nvgre": 4789}  # NVGRE is GRE: the port is unused
ENDPOINT_KINDS = {"vm": NamespaceKind.VM, "container": NamespaceKind.CONTAINER, "pod": NamespaceKind.POD}
DEFAULT_ROUTE = {4: ip_network("0.0.0.0/0"), 6: ip_network("::/0")}
UPLINK_METRIC = 100  # below any static default route of the spec (metric 0)
Tunnels = dict[tuple[str, str], tuple]
"""(network, host) -> (spec network, spec host, flood list, tunnel device): the last tunnel built there."""


class Part(NamedTuple):
    """What one spec object puts on one host; the last six fields go into the host namespace.
    (A named tuple: the engine makes hundreds per port change, at a third of a dataclass's cost.)"""

    namespaces: tuple[Namespace, ...] = ()
    devices: tuple[Device, ...] = ()
    routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    input: tuple[Rule, ...] = ()
    output: tuple[Rule, ...] = ()
    nat_output: tuple[Rule, ...] = ()
    nat_postrouting: tuple[Rule, ...] = ()

    @property
    def shares(self) -> bool:
        """Whether it adds anything to the host namespace."""
        return bool(self.routes or self.neighbours or self.input or self.output or self.nat_output or self.nat_postrouting)


# --- hosts ---------------------------------------------------------------------------------------


def host_part(facts: Facts, host: str) -> Part:
    """The host's underlay NIC and underlay routes; SNAT egress when an SNAT router is present."""
    spec_host = facts.hosts[host]
    underlay = spec_host.underlay
    origin = f"host/{host}"
    nic = Device.of(
        DeviceKind.NIC,
        naming.NIC,
        host,
        mtu=spec_host.mtu,
        mac=naming.nic_mac(host),
        addresses=(underlay,),
        hooks=drop_list_hooks(spec_host.drop_from),
        origin=origin,
    )
    routes = [facts.route(underlay.network, naming.NIC)]
    routes += [facts.route(prefix, naming.NIC) for prefix in facts.underlay_peers[underlay.network]]
    masquerade: tuple[Rule, ...] = ()
    if any(facts.routers[r].snat and host in facts.router_hosts[r] for r in facts.routers):
        routes.append(facts.route(DEFAULT_ROUTE[underlay.version], naming.NIC))
        uplinks = ip_network(naming.uplink_range(underlay.version))
        masquerade = (
            Rule(
                match=Match(src=uplinks, out_iface=naming.NIC),
                action=Masquerade(),
                comment="snat egress: router uplinks behind the underlay address",
            ),
        )
    return Part(devices=(nic,), routes=tuple(routes), nat_postrouting=masquerade)


def drop_list_hooks(prefixes) -> tuple[DeviceHook, ...]:
    """A host's ``drop_from`` list as the XDP hook of its underlay NIC (none when the list is empty)."""
    if not prefixes:
        return ()
    rules = tuple(Rule(match=Match(src=prefix), action=DROP, comment=f"drop_from {prefix}") for prefix in prefixes)
    return (DeviceHook(kind=HookKind.XDP, program=DROP_LIST_PROGRAM, rules=rules),)


# --- networks ------------------------------------------------------------------------------------


def bridge_part(facts: Facts, network: str, host: str) -> Part:
    """The network's bridge on ``host``; its static FDB pins the router's gateway MAC to the leg."""
    router = facts.router_of.get(network)
    gateway = (FdbEntry(naming.gateway_mac(router), device=naming.router_leg(network)),) if router else ()
    bridge = Device.of(
        DeviceKind.BRIDGE,
        naming.bridge(network),
        host,
        config=Bridge(fdb=gateway),
        mtu=mtu_on(facts, network, host),
        origin=f"network/{network}",
    )
    return Part(devices=(bridge,))


def mtu_on(facts: Facts, network: str, host: str) -> int:
    """The MTU of ``network``'s devices on ``host``: the network's, or less where the host's
    underlay cannot carry it (a router copy on a 1500-byte host, on a network of jumbo hosts:
    the host's tunnel, bridge and leg take what its NIC can carry — the kernel refuses a tunnel
    bigger than its underlay — and the other hosts keep the network's MTU)."""
    spec_net, spec_host = facts.networks[network], facts.hosts[host]
    if spec_net.encap == "none":
        return spec_net.mtu  # type: ignore[return-value]
    fits = spec_host.mtu - overhead(spec_net.encap, spec_host.underlay.version, spec_net.options_length)
    return min(spec_net.mtu, fits)  # type: ignore[type-var]


def tunnel_parts(facts: Facts, network: str, hosts: Iterable[str], tunnels: Tunnels) -> Iterator[tuple[str, Part]]:
    """The network's tunnel on each of ``hosts`` (or, for ``encap: none``, its provider NIC). When
    only its FDB moved since the last build recorded in ``tunnels`` (a port came or went: same
    network, host and flood list), the last device gets the new FDB swapped in (``with_fdb``)
    instead of being built and checked anew; each build is recorded there."""
    spec_net = facts.networks[network]
    if spec_net.encap == "none":
        for host in hosts:
            nic = Device.of(
                DeviceKind.NIC, naming.provider_nic(network), host, mtu=spec_net.mtu, master=naming.bridge(network),
                origin=f"network/{network}",
            )
            yield host, Part(devices=(nic,))
        return
    flood, remote_fdb = facts.floods[network], facts.tunnel_fdb(network)
    for host in hosts:
        spec_host, others, fdb = facts.hosts[host], flood.others(host), remote_fdb(host)
        last = tunnels.get((network, host))
        if last is not None and last[0] is spec_net and last[1] is spec_host and last[2] is others:
            tunnel = last[3]
            if tunnel.config.fdb is not fdb:  # type: ignore[union-attr]
                tunnel = tunnel.with_config(tunnel.config.with_fdb(fdb))  # type: ignore[union-attr]
        else:
            tunnel = tunnel_device(spec_net, host, spec_host.underlay.ip, others, fdb, mtu_on(facts, network, host))
        tunnels[(network, host)] = (spec_net, spec_host, others, tunnel)
        yield host, Part(devices=(tunnel,))


def tunnel_device(spec_net: Network, host: str, local, flood: tuple, fdb: tuple, mtu: int) -> Device:
    """The tunnel device of ``spec_net`` on ``host``."""
    config = Tunnel(
        vni=spec_net.vni,  # type: ignore[arg-type]
        local=local,
        dst_port=TUNNEL_PORTS[spec_net.encap],
        learning=False,
        flood=flood,
        fdb=fdb,
        options=tuple(
            GeneveOption(option.option_class, option.type, bytes.fromhex(option.data)) for option in spec_net.geneve_options
        ),
    )
    return Device.of(
        TUNNEL_KINDS[spec_net.encap],
        naming.tunnel(spec_net.encap, spec_net.name),
        host,
        config=config,
        mtu=mtu,
        master=naming.bridge(spec_net.name),
        parent=naming.NIC,
        origin=f"network/{spec_net.name}",
    )


# --- routers -------------------------------------------------------------------------------------


def router_namespace_parts(facts: Facts, router: str, hosts: Iterable[str]) -> Iterator[tuple[str, Part]]:
    """The router's namespace on each of ``hosts``: one object for all hosts of an underlay family."""
    found: dict[int, Part] = {}
    for host in hosts:
        version = facts.hosts[host].underlay.version
        part = found.get(version)
        if part is None:
            part = found[version] = Part(namespaces=(router_namespace(facts, router, version),))
        yield host, part


def router_namespace(facts: Facts, router: str, version: int) -> Namespace:
    """Connected routes of every leg, a static neighbour for every endpoint address of the router's
    networks, the spec's static routes and, with ``snat``, the default route and masquerade out of
    the uplink (``version``: the underlay's address family)."""
    spec_router = facts.routers[router]
    routes: list[Route] = []
    for name in spec_router.networks:
        leg = naming.router_leg(name)
        routes.extend(facts.route(subnet, leg) for _, subnet in gateways(facts.networks[name]))
    neighbours = Chunks(map(facts.neighbour_lists.__getitem__, spec_router.networks))  # a chunk per network: a port moves one
    for route in spec_router.routes:
        dev = next(
            (naming.router_leg(name) for name in spec_router.networks if route.via in subnet_of(facts.networks[name], route.via.version)),
            None,
        )
        routes.append(Route(dst=route.to, via=route.via, dev=dev))
    nat: tuple[Chain, ...] = ()
    if spec_router.snat:
        host_side, _ = naming.uplink_addresses(facts.uplink_slot[router], version)
        routes.append(Route(dst=DEFAULT_ROUTE[version], via=host_side.ip, dev=naming.UPLINK, metric=UPLINK_METRIC))
        masquerade = Rule(match=Match(out_iface=naming.UPLINK), action=Masquerade(), comment=f"router {router}: snat")
        nat = (Chain(hook=NetfilterHook.POSTROUTING, rules=(masquerade,)),)
    return Namespace(
        name=router,
        kind=NamespaceKind.ROUTER,
        routes=tuple(routes),
        neighbours=neighbours,
        ip_forward=True,
        ipv6_forward=True,
        nat=nat,
        origin=f"router/{router}",
    )


def router_legs_part(facts: Facts, router: str, host: str) -> Part:
    """A veth leg per network (router end: gateway addresses and the anycast gateway MAC; host
    end: a port of the network's bridge) and, with ``snat``, the uplink to the host namespace."""
    spec_router = facts.routers[router]
    origin = f"router/{router}"
    mac = naming.gateway_mac(router)
    devices: list[Device] = []
    for name in spec_router.networks:
        net = facts.networks[name]
        leg = naming.router_leg(name)
        devices.append(
            Device.of(
                DeviceKind.VETH, leg, router, config=Veth(leg, host), mtu=mtu_on(facts, name, host), mac=mac,
                addresses=gateway_addresses(net), origin=origin,
            )
        )
        devices.append(
            Device.of(
                DeviceKind.VETH, leg, host, config=Veth(leg, router), mtu=mtu_on(facts, name, host),
                master=naming.bridge(name),
                origin=origin,
            )
        )
    if spec_router.snat:
        spec_host = facts.hosts[host]
        host_side, router_side = naming.uplink_addresses(facts.uplink_slot[router], spec_host.underlay.version)
        port = naming.uplink_port(router)
        devices.append(
            Device.of(
                DeviceKind.VETH, naming.UPLINK, router, config=Veth(port, host), mtu=spec_host.mtu,
                mac=naming.uplink_mac(router, host, "router"), addresses=(router_side,), origin=origin,
            )
        )
        devices.append(
            Device.of(
                DeviceKind.VETH, port, host, config=Veth(naming.UPLINK, router), mtu=spec_host.mtu,
                mac=naming.uplink_mac(router, host, "host"), addresses=(host_side,), origin=origin,
            )
        )
    return Part(devices=tuple(devices))


def gateways(network: Network) -> list[tuple]:
    """(gateway, subnet) of each address family the network has a gateway in."""
    pairs = ((network.gateway, network.subnet), (network.gateway6, network.subnet6))
    return [(gateway, subnet) for gateway, subnet in pairs if subnet is not None and gateway is not None]


def gateway_addresses(network: Network) -> tuple[IPInterface, ...]:
    return tuple(with_prefix(gateway, subnet.prefixlen) for gateway, subnet in gateways(network))


def subnet_of(network: Network, version: int):
    subnet = network.subnet if version == 4 else network.subnet6
    return subnet if subnet is not None else ()


# --- endpoints -----------------------------------------------------------------------------------


def endpoint_part(facts: Facts, endpoint: str) -> Part:
    """An endpoint: its own namespace (or, for ``kind: host``, interfaces in the host namespace)
    with one veth per attachment into the network's bridge, routes, the gateway's neighbour
    entry, listening sockets, policy chains and the DNAT rules of its tenants' services."""
    spec_ep = facts.endpoints[endpoint]
    in_host = spec_ep.kind == "host"
    namespace = spec_ep.host if in_host else endpoint
    origin = f"endpoint/{endpoint}"
    devices: list[Device] = []
    routes: list[Route] = []
    neighbours: list[Neighbour] = []
    ingress: list[Rule] = []
    egress: list[Rule] = []
    defaulted: set[int] = set()
    service_iface: str | None = None
    tenants: list[str] = []
    for index, attachment in enumerate(spec_ep.attachments):
        net = facts.networks[attachment.network]
        iface = naming.host_interface(endpoint, index) if in_host else naming.interface(index)
        port = naming.endpoint_port(endpoint, index)
        addresses = tuple(
            with_prefix(address, subnet.prefixlen)
            for address, subnet in ((attachment.ip, net.subnet), (attachment.ip6, net.subnet6))
            if address is not None and subnet is not None
        )
        devices.append(
            Device.of(
                DeviceKind.VETH, iface, namespace, config=Veth(port, spec_ep.host), mtu=net.mtu, mac=attachment.mac,
                addresses=addresses, origin=origin,
            )
        )
        devices.append(
            Device.of(
                DeviceKind.VETH, port, spec_ep.host, config=Veth(iface, namespace), mtu=net.mtu,
                master=naming.bridge(net.name), origin=origin,
            )
        )
        routes.extend(facts.route(address.network, iface) for address in addresses)
        router = facts.router_of.get(net.name)
        if router is not None:
            mac = naming.gateway_mac(router)
            for address in addresses:
                gateway = net.gateway if address.version == 4 else net.gateway6
                neighbours.append(facts.neighbour(gateway, mac, iface))  # type: ignore[arg-type]
                routes.extend(routed(facts, router, net, gateway, iface, in_host, address.version, defaulted))
        prefixes = tuple(host_prefix(address.ip) for address in addresses)
        ingress.extend(interface_rules(facts, spec_ep, net, iface, prefixes, "ingress"))
        egress.extend(interface_rules(facts, spec_ep, net, iface, prefixes, "egress"))
        if net.tenant not in tenants:
            tenants.append(net.tenant)
            if service_iface is None and facts.services_of(net.tenant):
                service_iface = iface
    nat_output = tuple(rule for tenant in sorted(tenants) for rule in facts.services_of(tenant))
    if service_iface is not None:
        routes.extend(facts.route(prefix, service_iface) for prefix in service_prefixes(facts, nat_output))
    for listen in spec_ep.listen:
        name = naming.link_name(f"{listen.proto}-{listen.port}-", endpoint) if in_host else naming.socket(listen.proto, listen.port)
        socket = Socket(proto=Proto(listen.proto), port=listen.port, app=endpoint)
        devices.append(Device.of(DeviceKind.SOCKET, name, namespace, config=socket, origin=origin))
    if in_host:
        return Part(
            devices=tuple(devices),
            routes=tuple(routes),
            neighbours=tuple(neighbours),
            input=tuple(ingress),
            output=tuple(egress),
            nat_output=nat_output,
        )
    own = Namespace(
        name=endpoint,
        kind=ENDPOINT_KINDS[spec_ep.kind],
        routes=tuple(routes),
        neighbours=tuple(neighbours),
        filter=filter_chains(ingress, egress),
        nat=(Chain(hook=NetfilterHook.OUTPUT, rules=nat_output),) if nat_output else (),
        origin=origin,
    )
    return Part(namespaces=(own,), devices=tuple(devices))


def routed(facts: Facts, router: str, net: Network, gateway, iface: str, in_host: bool, version: int, defaulted: set[int]):
    """Routes via the gateway: the default route (first routed attachment per family), or, for a
    ``kind: host`` endpoint (whose host keeps its own default), the router's other prefixes."""
    if not in_host:
        if version in defaulted:
            return []
        defaulted.add(version)
        return [facts.route(DEFAULT_ROUTE[version], iface, gateway)]
    spec_router = facts.routers[router]
    prefixes = [subnet_of(facts.networks[name], version) for name in spec_router.networks if name != net.name]
    prefixes += [route.to for route in spec_router.routes if route.to.version == version]
    return [facts.route(prefix, iface, gateway) for prefix in prefixes if prefix != ()]


def service_prefixes(facts: Facts, rules: tuple[Rule, ...]) -> list:
    """The service subnet, plus VIPs pinned outside it: where the first packet to a VIP is routed
    before the output NAT hook rewrites it to a backend."""
    found = [facts.service_subnet]
    for rule in rules:
        vip = rule.match.dst
        if vip is not None and not (vip.version == facts.service_subnet.version and vip.subnet_of(facts.service_subnet)):
            found.append(vip)
    return list(dict.fromkeys(found))


def filter_chains(ingress: Iterable[Rule], egress: Iterable[Rule]) -> tuple[Chain, ...]:
    """Input and output chains (policy accept: interfaces without policies pass) when non-empty."""
    chains = []
    for hook, rules in ((NetfilterHook.INPUT, tuple(ingress)), (NetfilterHook.OUTPUT, tuple(egress))):
        if rules:
            chains.append(Chain(hook=hook, rules=(ESTABLISHED, *rules)))
    return tuple(chains)


# --- a host's parts ------------------------------------------------------------------------------


class PartKind(IntEnum):
    """What a part is: the host's own (NIC, underlay routes), a network's bridge or tunnel, a
    router's namespace or legs, an endpoint."""

    HOST = 0
    BRIDGE = 1
    TUNNEL = 2
    ROUTER_NAMESPACE = 3
    ROUTER_LEGS = 4
    ENDPOINT = 5


class Family(IntEnum):
    """The kind of spec object a part belongs to; a host's parts are assembled family by family."""

    HOST = 0
    NETWORK = 1
    ROUTER = 2
    ENDPOINT = 3


FAMILY = {
    PartKind.HOST: Family.HOST, PartKind.BRIDGE: Family.NETWORK, PartKind.TUNNEL: Family.NETWORK,
    PartKind.ROUTER_NAMESPACE: Family.ROUTER, PartKind.ROUTER_LEGS: Family.ROUTER, PartKind.ENDPOINT: Family.ENDPOINT,
}


class PartKey(NamedTuple):
    """Which part of a host: ``kind`` of the spec object ``name`` ("" for the host's own part).
    Keys sort in assembly order — the host, then the networks by name (bridge, tunnel), the
    routers (namespace, legs), the endpoints — so ``family`` leads; build keys with ``part_key``."""

    family: Family
    name: str
    kind: PartKind


def part_key(kind: PartKind, name: str = "") -> PartKey:
    return PartKey(FAMILY[kind], name, kind)


HOST_KEY = part_key(PartKind.HOST)
NETWORK_PARTS = (PartKind.BRIDGE, PartKind.TUNNEL)
ROUTER_PARTS = (PartKind.ROUTER_NAMESPACE, PartKind.ROUTER_LEGS)


def part_keys(networks: Iterable[str], routers: Iterable[str], endpoints: Iterable[str]) -> list[PartKey]:
    """The keys of the parts of a host, given what is placed there, in assembly order."""
    keys = [HOST_KEY]
    keys += [part_key(kind, name) for name in networks for kind in NETWORK_PARTS]
    keys += [part_key(kind, name) for name in routers for kind in ROUTER_PARTS]
    keys += [part_key(PartKind.ENDPOINT, name) for name in endpoints]
    return sorted(keys)


def build_parts(facts: Facts, key: PartKey, hosts: Iterable[str], tunnels: Tunnels) -> Iterator[tuple[str, Part]]:
    """(host, the part ``key`` of it) for each of ``hosts``, in their order: one pass per part
    key, so what the hosts share is looked up once and built once (a router's namespace is one
    object on all of them). ``tunnels``: the last tunnels built, updated (see ``tunnel_parts``)."""
    kind, name = key.kind, key.name
    if kind is PartKind.TUNNEL:
        return tunnel_parts(facts, name, hosts, tunnels)
    if kind is PartKind.ROUTER_NAMESPACE:
        return router_namespace_parts(facts, name, hosts)
    if kind is PartKind.ENDPOINT:
        return ((host, endpoint_part(facts, name)) for host in hosts)
    if kind is PartKind.HOST:
        return ((host, host_part(facts, host)) for host in hosts)
    if kind is PartKind.BRIDGE:
        return ((host, bridge_part(facts, name, host)) for host in hosts)
    return ((host, router_legs_part(facts, name, host)) for host in hosts)


def build_hosts(facts: Facts, keys: dict[str, list[PartKey]], tunnels: Tunnels) -> dict[str, dict[PartKey, Part]]:
    """Every host's parts (host -> key -> part, in key order), built key by key over the hosts
    that have the key (``build_parts``)."""
    hosts_of: dict[PartKey, list[str]] = {}
    for host in sorted(keys):
        for key in keys[host]:
            hosts_of.setdefault(key, []).append(host)
    built: dict[str, dict[PartKey, Part]] = {host: {} for host in keys}
    for key, hosts in hosts_of.items():
        for host, part in build_parts(facts, key, hosts, tunnels):
            built[host][key] = part
    return {host: {key: built[host][key] for key in keys[host]} for host in keys}


# --- a host --------------------------------------------------------------------------------------


def assemble(host: str, parts: Iterable[Part], own: Namespace | None = None) -> HostGraph:
    """The host's graph: its namespace (``own``, else built from the parts' contributions), then
    the parts' namespaces and devices in part order, a chunk per part."""
    parts = tuple(parts)
    names = [ns.name for part in parts for ns in part.namespaces]
    if len(set(names)) != len(names) or host in names:
        raise clash(host, tuple(chain.from_iterable(map(NAMESPACES, parts))))
    if own is None:
        own = host_namespace(host, [part for part in parts if part.shares])
    return HostGraph(host=host, namespaces=Chunks(((own,), *map(NAMESPACES, parts))), devices=Chunks(map(DEVICES, parts)))


NAMESPACES, DEVICES = attrgetter("namespaces"), attrgetter("devices")


def host_namespace(host: str, parts: list[Part]) -> Namespace:
    """The host namespace, from what ``parts`` add to it (routes: the first of equal prefixes)."""
    nat = []
    for hook, rules in (
        (NetfilterHook.OUTPUT, unique(r for part in parts for r in part.nat_output)),
        (NetfilterHook.POSTROUTING, unique(r for part in parts for r in part.nat_postrouting)),
    ):
        if rules:
            nat.append(Chain(hook=hook, rules=rules))
    routes: dict[tuple, Route] = {}  # host-kind endpoints may add the same prefix twice: first wins
    for part in parts:
        for route in part.routes:
            routes.setdefault((route.dst, route.metric), route)
    return Namespace(
        name=host,
        kind=NamespaceKind.HOST,
        routes=tuple(routes.values()),
        neighbours=tuple(n for part in parts for n in part.neighbours),
        ip_forward=True,
        ipv6_forward=True,
        filter=filter_chains((r for part in parts for r in part.input), (r for part in parts for r in part.output)),
        nat=tuple(nat),
        origin=f"host/{host}",
    )


def clash(host: str, namespaces: tuple[Namespace, ...]) -> CompileError:
    seen: dict[str, str] = {host: f"host/{host}"}
    for ns in namespaces:
        other = seen.setdefault(ns.name, ns.origin)
        if other != ns.origin:
            break
    return CompileError(
        f"host {host}: {other} and {ns.origin} would both be namespace {ns.name!r}; "
        "rename one (hosts, routers and non-host endpoints on one host need distinct names)"
    )


def unique(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(dict.fromkeys(rules))
