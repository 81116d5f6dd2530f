"""Semantic checks and resolution: structurally valid items -> a resolved ``Spec``, or problems.

Every check works on the items that passed structural validation; a reference to an item that
failed it (a "poisoned" name) is neither an error nor followed, so one typo yields one problem.
All loops are linear (or sort-based) in the number of items: no pairwise comparisons.
"""

import ipaddress
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from netvirt.management.spec import allocate, encap
from netvirt.management.spec.model import (
    HYPERVISOR_NETWORKS,
    KINDS,
    Endpoint,
    HypervisorLayer,
    Model,
    Network,
    Spec,
)
from netvirt.management.spec.problems import Path, did_you_mean
from netvirt.management.spec.stacks import order_problems
from netvirt.management.spec.values import IPAddress, IPNetwork, ProtoPort

SINGULAR = {
    "hosts": "host",
    "networks": "network",
    "routers": "router",
    "endpoints": "endpoint",
    "policies": "policy",
    "services": "service",
    "stacks": "stack",
}
RESERVED_NAMES = ("external",)  # `netvirt trace --to external` means "outside every overlay"
FAMILY_FIELDS = ((4, "subnet", "gateway", "ip"), (6, "subnet6", "gateway6", "ip6"))
MIN_PREFIX_ROOM = {4: 30, 6: 126}  # longest prefix that still leaves a gateway and one endpoint

Report = tuple[Path, str, bool]
Items = dict[str, list[tuple[int, Any]]]


def first_usable(subnet: IPNetwork) -> int:
    return int(subnet.network_address) + 1


def last_usable(subnet: IPNetwork) -> int:
    return int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0)


class Analysis:
    """Runs every check once; when nothing was reported (here or by earlier stages), ``resolved()``
    gives the resolved spec."""

    def __init__(self, header: Spec, items: Items, poisoned: dict[str, set[str]], where: Callable[[Path], str]):
        self.header = header
        self.items = items
        self.poisoned = poisoned
        self.where = where
        self.reports: list[Report] = []
        self.named: dict[str, dict[str, tuple[int, Any]]] = {kind: {} for kind in KINDS}
        # resolution results
        self.vni: dict[str, int] = {}
        self.gateway: dict[tuple[str, int], IPAddress] = {}
        self.address: dict[tuple[str, str, int], IPAddress] = {}  # (endpoint, network, family)
        self.mac: dict[tuple[str, str], str] = {}
        self.mtu: dict[str, int] = {}
        self.unresolved: set[tuple[str, str, int]] = set()  # pinned addresses found invalid (reported)
        self.used: dict[tuple[str, int], set[int]] = {}  # (network, family) -> its endpoint addresses
        self.vip: dict[str, IPAddress] = {}
        self.service_tenant: dict[str, str] = {}
        self.vip_owners: dict[tuple[str, IPAddress], str] = {}  # pinned VIPs: (tenant, vip) -> service
        self.network_endpoints: dict[str, list[Endpoint]] = defaultdict(list)
        for check in (
            self.names,
            self.hosts,
            self.networks,
            self.endpoints,
            self.mtus,
            self.routers,
            self.namespaces,
            self.policies,
            self.services,
            self.stacks,
        ):
            check()

    # --- helpers ---------------------------------------------------------------------------------

    def report(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.reports.append((path, message, at_key))

    def lookup(self, path: Path, kind: str, name: str) -> Any:
        """The item named ``name``; reports an unknown name (with did-you-mean) and returns None."""
        hit = self.named[kind].get(name)
        if hit is not None:
            return hit[1]
        poisoned = self.poisoned.get(kind, set())
        if name not in poisoned:
            hint = did_you_mean(name, [*self.named[kind], *poisoned])
            self.report(path, f"unknown {SINGULAR[kind]} {name!r}{hint}")
        return None

    def valid(self, kind: str) -> list[tuple[int, Any]]:
        return self.items[kind]

    # --- checks ----------------------------------------------------------------------------------

    def names(self) -> None:
        for kind in KINDS:
            named = self.named[kind]
            for index, item in self.valid(kind):
                if item.name in named:
                    first = self.where((kind, named[item.name][0], "name"))
                    self.report((kind, index, "name"), f"duplicate {SINGULAR[kind]} name {item.name!r} (first {first})")
                else:
                    named[item.name] = (index, item)
        for kind in ("endpoints", "services"):
            for index, item in self.valid(kind):
                if item.name in RESERVED_NAMES:
                    self.report((kind, index, "name"), f"{item.name!r} is reserved (it means outside every network)")
        for index, service in self.valid("services"):
            if service.name in self.named["endpoints"]:
                self.report(
                    ("services", index, "name"),
                    f"{service.name!r} names both an endpoint and a service; trace and reach need them distinct",
                )

    def hosts(self) -> None:
        seen: dict[Any, str] = {}
        for index, host in self.valid("hosts"):
            other = seen.setdefault(host.underlay.ip, host.name)
            if other != host.name:
                self.report(
                    ("hosts", index, "underlay"),
                    f"underlay address {host.underlay.ip} is already used by host {other!r}",
                )
        underlays = [(host.name, host.underlay.ip) for _, host in self.valid("hosts")]
        for index, host in self.valid("hosts"):
            listed: set = set()
            for position, prefix in enumerate(host.drop_from):
                where = ("hosts", index, "drop_from", position)
                if prefix in listed:
                    self.report(where, f"{prefix} is listed twice; remove one")
                listed.add(prefix)
                for name, address in underlays:
                    if name != host.name and address.version == prefix.version and address in prefix:
                        self.report(where, f"{prefix} contains the underlay address {address} of host {name!r}: "
                                           f"its tunnelled traffic to {host.name!r} would be dropped; narrow the prefix")

    def networks(self) -> None:
        by_tenant: dict[tuple[str, int], list[tuple[IPNetwork, int, str, str]]] = defaultdict(list)
        pinned_vni: dict[int, str] = {}
        for index, network in self.valid("networks"):
            for family, subnet_key, gateway_key, _ in FAMILY_FIELDS:
                subnet, gateway = getattr(network, subnet_key), getattr(network, gateway_key)
                if subnet is None:
                    if gateway is not None:
                        self.report(("networks", index, gateway_key), f"{gateway_key} needs a {subnet_key}")
                    continue
                if subnet.prefixlen > MIN_PREFIX_ROOM[family]:
                    room = MIN_PREFIX_ROOM[family]
                    self.report(
                        ("networks", index, subnet_key),
                        f"{subnet} is too small: it leaves no room for a gateway and an endpoint; "
                        f"use /{room} or larger",
                    )
                    continue
                by_tenant[(network.tenant, family)].append((subnet, index, network.name, subnet_key))
                if gateway is None:
                    self.gateway[(network.name, family)] = ipaddress.ip_address(first_usable(subnet))
                elif self.usable(("networks", index, gateway_key), gateway, subnet, network.name, "gateway"):
                    self.gateway[(network.name, family)] = gateway
            if network.vni is not None:
                other = pinned_vni.setdefault(network.vni, network.name)
                if other != network.name:
                    self.report(("networks", index, "vni"), f"vni {network.vni} is already used by network {other!r}")
        for (tenant, _), subnets in by_tenant.items():
            for (subnet, index, _, key), (other_subnet, _, other, _) in overlaps(subnets):
                self.report(
                    ("networks", index, key),
                    f"{subnet} overlaps {other_subnet} of network {other!r} in tenant {tenant!r} "
                    "(subnets may overlap only across tenants)",
                )
        wanted = [
            (network.name, allocate.stable_hash("vni", network.name))
            for _, network in self.valid("networks")
            if network.vni is None and network.encap != "none"
        ]
        placed = allocate.place(wanted, set(pinned_vni), allocate.VNI_FIRST, allocate.VNI_LAST)
        self.vni = {**{name: vni for vni, name in pinned_vni.items()}, **(placed or {})}

    def usable(self, path: Path, address: IPAddress, subnet: IPNetwork, network: str, role: str) -> bool:
        """Whether ``address`` may be a host address in ``subnet``; reports why not."""
        if address not in subnet:
            self.report(path, f"{address} is outside network {network!r} subnet {subnet}")
        elif int(address) == int(subnet.network_address):
            self.report(path, f"{address} is the network address of {subnet}, not a usable {role} address")
        elif subnet.version == 4 and address == subnet.broadcast_address:
            self.report(path, f"{address} is the broadcast address of {subnet}, not a usable {role} address")
        else:
            return True
        return False

    def endpoints(self) -> None:
        pinned: dict[tuple[str, int], dict[IPAddress, str]] = defaultdict(dict)
        pinned_mac: dict[str, str] = {}
        unpinned: dict[tuple[str, int], list[str]] = defaultdict(list)
        unpinned_mac: list[tuple[str, str]] = []
        for index, endpoint in self.valid("endpoints"):
            self.lookup(("endpoints", index, "host"), "hosts", endpoint.host)
            seen: dict[str, int] = {}
            for position, attachment in enumerate(endpoint.attachments):
                path = ("endpoints", index, "attachments", position)
                if attachment.network in seen:
                    first = f"attachments[{seen[attachment.network]}]"
                    self.report(
                        (*path, "network"), f"the endpoint already attaches to {attachment.network!r} ({first})"
                    )
                    continue
                seen[attachment.network] = position
                network = self.lookup((*path, "network"), "networks", attachment.network)
                if network is None:
                    continue
                self.network_endpoints[network.name].append(endpoint)
                for family, subnet_key, _, ip_key in FAMILY_FIELDS:
                    address, subnet = getattr(attachment, ip_key), getattr(network, subnet_key)
                    key = (network.name, family)
                    if subnet is None:
                        if address is not None:
                            self.report((*path, ip_key), f"network {network.name!r} has no {subnet_key}")
                        continue
                    if key not in self.gateway:
                        continue  # the subnet itself is unusable (reported)
                    if address is None:
                        unpinned[key].append(endpoint.name)
                    elif not self.usable((*path, ip_key), address, subnet, network.name, "endpoint"):
                        self.unresolved.add((endpoint.name, network.name, family))
                    elif address == self.gateway[key]:
                        self.report((*path, ip_key), f"{address} is the gateway of network {network.name!r}")
                    elif (other := pinned[key].setdefault(address, endpoint.name)) != endpoint.name:
                        self.report(
                            (*path, ip_key),
                            f"{address} is already used by endpoint {other!r} on network {network.name!r}",
                        )
                    else:
                        self.address[(endpoint.name, network.name, family)] = address
                if attachment.mac is None:
                    unpinned_mac.append((endpoint.name, network.name))
                elif (other := pinned_mac.setdefault(attachment.mac, endpoint.name)) != endpoint.name:
                    self.report((*path, "mac"), f"mac {attachment.mac} is already used by endpoint {other!r}")
                else:
                    self.mac[(endpoint.name, network.name)] = attachment.mac
        self.place_addresses(pinned, unpinned)
        taken = {allocate.mac_int(mac) for mac in pinned_mac}
        wanted = [
            (f"{endpoint}\x00{network}", allocate.stable_hash(self.header.name, endpoint, network))
            for endpoint, network in unpinned_mac
        ]
        for key, value in (allocate.place(wanted, taken, allocate.MAC_FIRST, allocate.MAC_LAST) or {}).items():
            endpoint, network = key.split("\x00")
            self.mac[(endpoint, network)] = allocate.mac_text(value)

    def place_addresses(self, pinned: dict, unpinned: dict[tuple[str, int], list[str]]) -> None:
        """Allocates addresses network by network; one hash per (network, endpoint) serves both
        families. Records every network's addresses in ``self.used`` (for the VIP checks)."""
        vips = {service.vip for _, service in self.valid("services") if service.vip is not None}
        preference: dict[tuple[str, str], int] = {}
        for (name, family), addresses in pinned.items():
            self.used[(name, family)] = {int(address) for address in addresses}
        for (name, family), endpoints in unpinned.items():
            index, network = self.named["networks"][name]
            subnet = network.subnet if family == 4 else network.subnet6
            used = self.used.setdefault((name, family), set())
            taken = used | {int(self.gateway[(name, family)])} | {int(vip) for vip in vips if vip in subnet}
            wanted = []
            for endpoint in endpoints:
                key = (name, endpoint)
                if key not in preference:
                    preference[key] = allocate.stable_hash(name, endpoint)
                wanted.append((endpoint, preference[key]))
            placed = allocate.place(wanted, taken, first_usable(subnet), last_usable(subnet))
            if placed is None:
                free = last_usable(subnet) - first_usable(subnet) + 1 - len(taken)
                self.report(
                    ("networks", index, "subnet" if family == 4 else "subnet6"),
                    f"{subnet} has {free} free address{'es' * (free != 1)} for {len(endpoints)} endpoints "
                    "without a pinned ip; use a larger subnet",
                )
                continue
            make = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
            for endpoint, value in placed.items():
                self.address[(endpoint, name, family)] = make(value)
            used.update(placed.values())

    def mtus(self) -> None:
        hosts = [host for _, host in self.valid("hosts")]
        for index, network in self.valid("networks"):
            names = {endpoint.host for endpoint in self.network_endpoints[network.name]}
            spanned = [self.named["hosts"][name][1] for name in sorted(names) if name in self.named["hosts"]]
            spanned = spanned or hosts
            families = {host.underlay.version for host in spanned}
            if len(families) > 1 and network.encap != "none":
                listing = ", ".join(f"{host.name} {host.underlay.ip}" for host in spanned[:4])
                self.report(
                    ("networks", index),
                    f"spans hosts with IPv4 and IPv6 underlays ({listing}); a tunnel needs one address family",
                )
                continue
            limits = [
                (host.mtu - encap.overhead(network.encap, host.underlay.version, network.options_length), host)
                for host in spanned
            ] or [(1500 - encap.overhead(network.encap, 4, network.options_length), None)]
            limit, host = min(limits, key=lambda pair: pair[0])
            overhead = encap.overhead(network.encap, host.underlay.version if host else 4, network.options_length)
            why = (
                f"host {host.name!r} has underlay mtu {host.mtu} and {network.encap} over "
                f"IPv{host.underlay.version} adds {overhead} bytes, leaving {limit}"
                if host
                else f"no hosts: 1500 minus {overhead} bytes of {network.encap} leaves {limit}"
            )
            minimum, what = (
                (encap.IPV6_MIN_MTU, "the IPv6 minimum (RFC 8200)")
                if network.subnet6 is not None
                else (encap.IPV4_MIN_MTU, "the IPv4 minimum (RFC 791)")
            )
            if network.mtu is not None:
                if network.mtu > limit:
                    self.report(("networks", index, "mtu"), f"mtu {network.mtu} is too large: {why}")
                elif network.mtu < minimum:
                    self.report(("networks", index, "mtu"), f"mtu {network.mtu} is below {minimum}, {what}")
                self.mtu[network.name] = network.mtu
            elif limit < minimum:
                self.report(
                    ("networks", index),
                    f"the derived mtu {limit} is below {minimum}, {what}: {why}; raise the host mtu",
                )
            else:
                self.mtu[network.name] = limit

    def routers(self) -> None:
        joined: dict[str, str] = {}
        for index, router in self.valid("routers"):
            networks: list[tuple[int, Network]] = []
            for position, name in enumerate(router.networks):
                path = ("routers", index, "networks", position)
                if name in router.networks[:position]:
                    self.report(path, f"network {name!r} is listed twice")
                    continue
                network = self.lookup(path, "networks", name)
                if network is None:
                    continue
                other = joined.setdefault(name, router.name)
                if other != router.name:
                    self.report(
                        path, f"network {name!r} is already joined by router {other!r} (its router owns the gateway)"
                    )
                networks.append((position, network))
            for _, subnet_key, _, _ in FAMILY_FIELDS:
                subnets = [
                    (getattr(net, subnet_key), position, net.name, "")
                    for position, net in networks
                    if getattr(net, subnet_key) is not None
                ]
                for (subnet, position, name, _), (other_subnet, _, other, _) in overlaps(subnets):
                    self.report(
                        ("routers", index, "networks", position),
                        f"{name!r} ({subnet}) overlaps {other!r} ({other_subnet}); a router cannot route between them",
                    )
            for position, route in enumerate(router.routes):
                self.route(("routers", index, "routes", position), route, [net for _, net in networks])

    def route(self, path: Path, route: Any, networks: list[Network]) -> None:
        if route.to.version != route.via.version:
            self.report((*path, "via"), f"{route.via} is IPv{route.via.version} but the destination {route.to} is not")
            return
        subnet_key = "subnet" if route.via.version == 4 else "subnet6"
        subnets = [(net, getattr(net, subnet_key)) for net in networks if getattr(net, subnet_key) is not None]
        for network, subnet in subnets:
            if route.via in subnet:
                if route.via == self.gateway.get((network.name, route.via.version)):
                    self.report((*path, "via"), f"{route.via} is this router's own address on {network.name!r}")
                return
        if networks:
            listing = ", ".join(str(subnet) for _, subnet in subnets) or "none of that family"
            self.report((*path, "via"), f"next hop {route.via} is on none of the router's networks ({listing})")

    def namespaces(self) -> None:
        """Each host runs one network namespace per name: its own, one per router present there
        (a router is present on every host where one of its networks has an endpoint) and one per
        endpoint that is not ``kind: host``. Names are unique per kind only, so these may clash."""
        hosts = self.named["hosts"]
        endpoints = self.named["endpoints"]
        for index, endpoint in self.valid("endpoints"):
            if endpoint.kind != "host" and endpoint.name == endpoint.host and endpoint.host in hosts:
                self.report(
                    ("endpoints", index, "name"),
                    f"endpoint {endpoint.name!r} is named like its host: both would be network namespace "
                    f"{endpoint.name!r} on host {endpoint.host!r}; rename the endpoint (or make it kind: host "
                    "to use the host's own network stack)",
                )
        for index, router in self.valid("routers"):
            present: dict[str, str] = {}  # host -> an endpoint that brings the router there
            for name in router.networks:
                for endpoint in self.network_endpoints.get(name, ()):
                    if endpoint.host in hosts:
                        present.setdefault(endpoint.host, endpoint.name)
            if router.name in present:
                self.report(
                    ("routers", index, "name"),
                    f"router {router.name!r} is named like host {router.name!r}, where it runs (endpoint "
                    f"{present[router.name]!r} is there): both would be network namespace {router.name!r}; "
                    "rename the router",
                )
            twin = endpoints.get(router.name)
            if twin is not None and twin[1].kind != "host" and twin[1].host in present:
                self.report(
                    ("routers", index, "name"),
                    f"router {router.name!r} and endpoint {router.name!r} ({self.where(('endpoints', twin[0], 'name'))}) "
                    f"would both be network namespace {router.name!r} on host {twin[1].host!r}, where the router "
                    "runs because its networks have endpoints there; rename one",
                )

    def policies(self) -> None:
        tenants = {network.tenant for _, network in self.valid("networks")}
        tenant_endpoints: dict[str, set[str]] = defaultdict(set)
        for _, network in self.valid("networks"):
            tenant_endpoints[network.tenant].update(e.name for e in self.network_endpoints[network.name])
        for index, policy in self.valid("policies"):
            scope: set[str] | None = None
            if policy.network is not None:
                if self.lookup(("policies", index, "network"), "networks", policy.network) is not None:
                    scope = {endpoint.name for endpoint in self.network_endpoints[policy.network]}
                where = f"on network {policy.network!r}"
            else:
                if policy.tenant in tenants:
                    scope = tenant_endpoints[policy.tenant]
                elif policy.tenant not in self.poisoned.get("tenants", ()):
                    hint = did_you_mean(policy.tenant, sorted(tenants))
                    self.report(("policies", index, "tenant"), f"unknown tenant {policy.tenant!r}{hint}")
                where = f"in tenant {policy.tenant!r}"
            local = "to" if policy.direction == "ingress" else "from"
            for number, rule in enumerate(policy.rules):
                for side, peers in (("from", rule.from_), ("to", rule.to)):
                    for position, peer in enumerate(peers):
                        if peer.endpoint is None:
                            continue
                        path = ("policies", index, "rules", number, side, position)
                        if self.lookup(path, "endpoints", peer.endpoint) is None:
                            continue
                        if side == local and scope is not None and peer.endpoint not in scope:
                            self.report(
                                path,
                                f"endpoint {peer.endpoint!r} is not {where}, so this {policy.direction} rule "
                                "never matches",
                            )

    def services(self) -> None:
        subnet = self.header.service_subnet
        for _, network in self.valid("networks"):
            for key in ("subnet", "subnet6"):
                other = getattr(network, key)
                if other is not None and other.version == subnet.version and other.overlaps(subnet):
                    self.report(
                        ("service_subnet",),
                        f"{subnet} overlaps network {network.name!r} {key} {other}; VIPs need a range of their own",
                    )
        for index, service in self.valid("services"):
            tenant = self.service_backends(index, service)
            if tenant is None:
                continue
            self.service_tenant[service.name] = tenant
            if service.vip is not None:
                owner = self.vip_owner(tenant, service.vip)
                if owner is not None:
                    self.report(("services", index, "vip"), f"vip {service.vip} is already {owner} (tenant {tenant!r})")
                self.vip[service.name] = service.vip
                self.vip_owners.setdefault((tenant, service.vip), service.name)
        taken = {int(vip) for vip in self.vip.values()}
        for (name, family), addresses in self.used.items():
            network = self.named["networks"][name][1]
            if family == subnet.version and (network.subnet if family == 4 else network.subnet6).overlaps(subnet):
                taken |= addresses | {int(self.gateway[(name, family)])}
        wanted = [
            (service.name, allocate.stable_hash("vip", service.name))
            for _, service in self.valid("services")
            if service.vip is None and service.name in self.service_tenant
        ]
        placed = allocate.place(wanted, taken, first_usable(subnet), last_usable(subnet))
        if placed is None:
            self.report(("service_subnet",), f"{subnet} has too few free addresses for {len(wanted)} services")
        for name, value in (placed or {}).items():
            self.vip[name] = ipaddress.ip_address(value)
        for index, service in self.valid("services"):
            vip = self.vip.get(service.name)
            if vip is None:
                continue
            for position, backend in enumerate(service.backends):
                keys = [(backend, a.network, vip.version) for a in self.named["endpoints"][backend][1].attachments]
                if not any(key in self.address or key in self.unresolved for key in keys):
                    pinned = service.vip is not None
                    self.report(
                        ("services", index, "vip") if pinned else ("services", index, "backends", position),
                        f"the vip {vip} is IPv{vip.version} but backend {backend!r} has no IPv{vip.version} address",
                    )

    def vip_owner(self, tenant: str, vip: IPAddress) -> str | None:
        """Who else in ``tenant`` has the address ``vip`` (a VIP, a gateway, an endpoint), as
        ``used by service 'web'``; None when nobody."""
        if (tenant, vip) in self.vip_owners:
            return f"used by service {self.vip_owners[(tenant, vip)]!r}"
        for _, network in self.valid("networks"):
            if network.tenant != tenant or network.name not in self.named["networks"]:
                continue
            if self.gateway.get((network.name, vip.version)) == vip:
                return f"the gateway of network {network.name!r}"
            if int(vip) in self.used.get((network.name, vip.version), ()):
                owner = next(e for (e, n, _), a in self.address.items() if n == network.name and a == vip)
                return f"used by endpoint {owner!r}"
        return None

    def service_backends(self, index: int, service: Any) -> str | None:
        """Checks the backends; returns the service's tenant (None when it cannot be known)."""
        target = ProtoPort(service.port.proto, service.target_port or service.port.port)
        common: set[str] | None = None
        spread: list[str] = []
        for position, name in enumerate(service.backends):
            path = ("services", index, "backends", position)
            endpoint = self.lookup(path, "endpoints", name)
            if endpoint is None:
                return None
            if target not in endpoint.listen:
                listens = ", ".join(map(str, endpoint.listen)) or "nothing"
                self.report(path, f"backend {name!r} does not listen on {target} (it listens on {listens})")
            tenants = {
                self.named["networks"][a.network][1].tenant
                for a in endpoint.attachments
                if a.network in self.named["networks"]
            }
            common = tenants if common is None else common & tenants
            spread.append(f"{name} in {', '.join(sorted(tenants)) or 'no tenant'}")
        if not common:
            listing = "; ".join(spread)
            self.report(
                ("services", index, "backends"), f"the backends share no tenant ({listing}); a service serves one"
            )
            return None
        if service.tenant is not None:
            if service.tenant not in common:
                self.report(
                    ("services", index, "tenant"),
                    f"the backends are in tenant {', '.join(sorted(common))}, not {service.tenant!r}",
                )
                return None
            return service.tenant
        if len(common) > 1:
            self.report(
                ("services", index, "backends"),
                f"the backends are in tenants {', '.join(sorted(common))}; say which one with tenant:",
            )
            return None
        return next(iter(common))

    def stacks(self) -> None:
        kinds = {"vm": "vm", "container": "container", "pod": "pod"}
        for index, stack in self.valid("stacks"):
            base = ("stacks", index, "layers")
            for position, key, message in order_problems(stack.layers):
                self.report((*base, position, key), message)
            tied_host = None
            for position, layer in enumerate(stack.layers):
                host = getattr(layer, "host", None)
                if host is not None:
                    tied_host = host if self.lookup((*base, position, "host"), "hosts", host) else None
                name = getattr(layer, "endpoint", None)
                if name is None:
                    continue
                endpoint = self.lookup((*base, position, "endpoint"), "endpoints", name)
                if endpoint is None:
                    continue
                path = (*base, position, "endpoint")
                if layer.layer in kinds and endpoint.kind != kinds[layer.layer]:
                    self.report(
                        path,
                        f"a {layer.layer} layer ties to an endpoint of kind {layer.layer}, "
                        f"{name!r} is a {endpoint.kind}",
                    )
                elif tied_host is not None and endpoint.host != tied_host:
                    self.report(
                        path, f"endpoint {name!r} runs on host {endpoint.host!r}, but this stack is on {tied_host!r}"
                    )
                listen = getattr(layer, "listen", None)
                if listen is not None and listen not in endpoint.listen:
                    listens = ", ".join(map(str, endpoint.listen)) or "nothing"
                    self.report(
                        (*base, position, "listen"),
                        f"endpoint {name!r} does not listen on {listen} (it listens on {listens})",
                    )

    # --- resolution ------------------------------------------------------------------------------

    def resolved(self) -> Spec:
        """The spec with every allocated value filled in (only valid without any problem)."""
        for _, network in self.valid("networks"):
            fill(
                network,
                vni=self.vni.get(network.name),
                gateway=self.gateway.get((network.name, 4)),
                gateway6=self.gateway.get((network.name, 6)),
                mtu=self.mtu[network.name],
            )
        address, mac = self.address, self.mac
        for _, endpoint in self.valid("endpoints"):
            for attachment in endpoint.attachments:
                key = (endpoint.name, attachment.network)
                fill(attachment, ip=address.get((*key, 4)), ip6=address.get((*key, 6)), mac=mac[key])
        for _, service in self.valid("services"):
            fill(
                service,
                vip=self.vip[service.name],
                target_port=service.target_port or service.port.port,
                tenant=self.service_tenant[service.name],
            )
        for _, stack in self.valid("stacks"):
            for layer in stack.layers:
                if isinstance(layer, HypervisorLayer) and layer.network is None:
                    fill(layer, network=HYPERVISOR_NETWORKS[layer.type][0])
        return self.header.model_copy(update={kind: tuple(item for _, item in self.valid(kind)) for kind in KINDS})


def fill(model: Model, **values: Any) -> None:
    """Set allocated fields of a model validated moments ago and not handed out yet.

    This bypasses ``frozen`` on purpose: copying instead (``model_copy``) costs seconds at 50,000
    endpoints. Once ``Analysis`` returns the spec, nothing mutates it.
    """
    model.__dict__.update(values)
    model.__pydantic_fields_set__.update(values)


def overlaps(subnets: list[tuple[IPNetwork, int, str, str]]):
    """Pairs (declared later, declared earlier) of overlapping subnets, by one sweep over the sorted list.

    Items are ``(subnet, index, name, key)``; a subnet nested in a wider one is paired with it.
    """
    ordered = sorted(subnets, key=lambda item: (int(item[0].network_address), item[0].prefixlen, item[1]))
    widest = None  # the item reaching furthest so far
    for item in ordered:
        if widest is not None and int(item[0].network_address) <= int(widest[0].broadcast_address):
            yield (item, widest) if item[1] > widest[1] else (widest, item)
        if widest is None or int(item[0].broadcast_address) > int(widest[0].broadcast_address):
            widest = item
