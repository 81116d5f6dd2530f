"""Facts: what the compiler derives from a resolved spec before it builds any device.

Contract: ``Facts(spec)`` indexes the spec by name and derives the placement (which networks and
routers are present on which hosts), the members of every network, the routers' uplink slots and
the policy scopes. Larger derived values shared by many hosts (FDB groups, flood lists, neighbour
lists, label selections, service rules, router namespaces) are memoised under a key with
``cached``. Part builders (``parts.py``) read only this object, so the incremental engine keeps
one ``Facts`` up to date key by key (``forget`` drops a memo; when the rebuilt value is equal, the
old object is kept, so unchanged values stay identical objects and compare in O(1)).

Placement rule: a network is present on a host when one of its endpoints lives there, or when its
router is present there; a router is present on every host where one of its networks has an
endpoint (it routes locally, so it needs all its networks there).
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from itertools import chain
from operator import attrgetter
from typing import Any

from netvirt.control.compile import naming
from netvirt.graph import (
    Affinity,
    Device,
    Dnat,
    FdbEntry,
    IPInterface,
    IPNetwork,
    Match,
    NatTarget,
    Neighbour,
    PortRange,
    Proto,
    Route,
    Rule,
)
from netvirt.management.spec import Endpoint, Host, Network, Policy, Service, Spec
from netvirt.management.spec.allocate import place, stable_hash


class CompileError(ValueError):
    """A resolved spec that the device graph cannot express; says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class Member:
    """One endpoint attachment on a network, with the FDB entry and router neighbour entries
    every other host needs for it (built once, shared by every host's graph)."""

    endpoint: str
    index: int
    host: str
    mac: str
    addresses: tuple[IPv4Address | IPv6Address, ...]
    fdb: FdbEntry
    neighbours: tuple[Neighbour, ...]


MEMBER_ORDER = attrgetter("endpoint", "index")


class Flood:
    """The underlay addresses of a network's hosts (by host name) and, built on first use, each
    host's head-end replication list: the addresses of the others. Equal when the addresses are."""

    def __init__(self, facts: "Facts", hosts: list[str]) -> None:
        self.entries = tuple(facts.hosts[h].underlay.ip for h in hosts)
        self.position = {h: i for i, h in enumerate(hosts)}
        self._others: dict[str, tuple[IPv4Address | IPv6Address, ...]] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Flood) and self.entries == other.entries

    __hash__ = None  # type: ignore[assignment]

    def others(self, host: str) -> tuple[IPv4Address | IPv6Address, ...]:
        """The addresses of every host but ``host``."""
        found = self._others.get(host)
        if found is None:
            index = self.position.get(host)
            found = self.entries if index is None else self.entries[:index] + self.entries[index + 1 :]
            self._others[host] = found
        return found


class Facts:
    """Derived, name-indexed knowledge of one spec (see the module docstring).

    Plain dictionaries: the engine updates them in place; builders only read them.
    """

    def __init__(self, spec: Spec) -> None:
        self.service_subnet: IPNetwork = spec.service_subnet
        self.hosts = {item.name: item for item in spec.hosts}
        self.networks = {item.name: item for item in spec.networks}
        self.routers = {item.name: item for item in spec.routers}
        self.endpoints = {item.name: item for item in spec.endpoints}
        self.policies = {item.name: item for item in spec.policies}
        self.services = {item.name: item for item in spec.services}
        self.router_of = routers_by_network(self.routers.values())
        # network -> host -> {(endpoint, index): Member}
        self.members: dict[str, dict[str, dict[tuple[str, int], Member]]] = {name: {} for name in self.networks}
        for endpoint in spec.endpoints:
            self.add_members(endpoint)
        self.router_hosts = {name: self.hosts_of_router(name) for name in self.routers}
        self.net_hosts = {name: self.hosts_of_network(name) for name in self.networks}
        self.uplink_slot = uplink_slots(self.routers.values())
        self.network_policies, self.tenant_policies = policy_scopes(self.policies.values())
        self.memo: defaultdict[str, dict[tuple, Any]] = defaultdict(dict)  # kind -> key -> value
        # (network, host) -> (spec network, spec host, flood list, tunnel device): the last tunnel built
        self.tunnels: dict[tuple[str, str], tuple[Network, Host, tuple, Device]] = {}
        self.stale: dict[tuple, Any] = {}

    # --- memo ------------------------------------------------------------------------------------

    def cached(self, key: tuple, build: Callable[[], Any]) -> Any:
        """The memoised value of ``key`` (its first item names the kind of value); an equal
        rebuild of a forgotten value returns the old object."""
        table = self.memo[key[0]]
        found = table.get(key, self)
        if found is self:
            found = build()
            old = self.stale.pop(key, self)
            if old is not self and old == found:
                found = old
            table[key] = found
        return found

    def forget(self, key: tuple) -> None:
        table = self.memo[key[0]]
        if key in table:
            self.stale[key] = table.pop(key)

    def route(self, dst: IPNetwork, dev: str, via: IPv4Address | IPv6Address | None = None) -> Route:
        """A route, shared by every namespace that has the same one (many endpoints do)."""
        return self.cached(("route", dst, dev, via), lambda: Route(dst=dst, dev=dev, via=via))

    def neighbour(self, address: IPv4Address | IPv6Address, mac: str, dev: str) -> Neighbour:
        return self.cached(("neighbour", address, mac, dev), lambda: Neighbour(address, mac, dev))

    def underlay_peers(self, network: IPNetwork) -> tuple[IPNetwork, ...]:
        """/32 (/128) of the hosts of ``network``'s family outside it, by host name: the on-link
        routes a host on ``network`` needs to reach them."""

        def build() -> tuple[IPNetwork, ...]:
            addresses = (self.hosts[name].underlay.ip for name in sorted(self.hosts))
            return tuple(host_prefix(a) for a in addresses if a.version == network.version and a not in network)

        return self.cached(("underlay-peers", network), build)

    # --- members and placement -------------------------------------------------------------------

    def member(self, endpoint: Endpoint, index: int) -> Member:
        attachment = endpoint.attachments[index]
        addresses = tuple(a for a in (attachment.ip, attachment.ip6) if a is not None)
        mac = attachment.mac or ""
        leg = naming.router_leg(attachment.network)
        return Member(
            endpoint.name,
            index,
            endpoint.host,
            mac,
            addresses,
            FdbEntry(mac, remote=self.hosts[endpoint.host].underlay.ip),
            tuple(Neighbour(address, mac, leg) for address in addresses),
        )

    def add_members(self, endpoint: Endpoint) -> None:
        for index, attachment in enumerate(endpoint.attachments):
            on_host = self.members[attachment.network].setdefault(endpoint.host, {})
            on_host[(endpoint.name, index)] = self.member(endpoint, index)

    def remove_members(self, endpoint: Endpoint) -> None:
        for index, attachment in enumerate(endpoint.attachments):
            on_host = self.members[attachment.network][endpoint.host]
            del on_host[(endpoint.name, index)]
            if not on_host:
                del self.members[attachment.network][endpoint.host]

    def hosts_of_router(self, router: str) -> frozenset[str]:
        return frozenset().union(*(self.members[net].keys() for net in self.routers[router].networks))

    def hosts_of_network(self, network: str) -> frozenset[str]:
        hosts = frozenset(self.members[network])
        router = self.router_of.get(network)
        return hosts | self.router_hosts[router] if router is not None else hosts

    def tenant(self, network: str) -> str:
        return self.networks[network].tenant

    def network_members(self, network: str) -> list[Member]:
        """The attachments on ``network``, ordered by endpoint name and attachment index."""
        return sorted(chain.from_iterable(m.values() for m in self.members[network].values()), key=MEMBER_ORDER)

    # --- tunnels ---------------------------------------------------------------------------------

    def flood(self, network: str) -> Flood:
        """The underlay addresses of ``network``'s hosts (``others(host)``: a tunnel's flood list)."""
        return self.cached(("flood", network), lambda: Flood(self, sorted(self.net_hosts[network])))

    def fdb_groups(self, network: str) -> tuple[dict[str, tuple[FdbEntry, ...]], tuple[FdbEntry, ...]]:
        """Each host with members -> its endpoint MAC entries (by endpoint name), in host order;
        and all those entries in that order (the remote entries of every host without members)."""

        def build() -> tuple[dict[str, tuple[FdbEntry, ...]], tuple[FdbEntry, ...]]:
            groups = {host: self.fdb_group(network, host) for host in sorted(self.members[network])}
            return groups, tuple(chain.from_iterable(groups.values()))

        return self.cached(("fdb-groups", network), build)

    def fdb_group(self, network: str, host: str) -> tuple[FdbEntry, ...]:
        def build() -> tuple[FdbEntry, ...]:
            found = self.members[network][host]
            return tuple(found[key].fdb for key in sorted(found))

        return self.cached(("fdb-group", network, host), build)

    def tunnel_fdb(self, network: str) -> Callable[[str], tuple[FdbEntry, ...]]:
        """host -> the MAC of every remote endpoint attachment on ``network`` (by host name, then
        endpoint name): one object shared by every host without members on the network."""
        groups, everything = self.fdb_groups(network)

        def remote(host: str) -> tuple[FdbEntry, ...]:
            if host in groups:
                return tuple(chain.from_iterable(group for where, group in groups.items() if where != host))
            return everything

        return remote

    def neighbours(self, network: str) -> tuple[Neighbour, ...]:
        """Neighbour entries (on the router leg) for every endpoint address on ``network``."""
        return self.cached(
            ("neighbours", network),
            lambda: tuple(chain.from_iterable(m.neighbours for m in self.network_members(network))),
        )

    # --- policies --------------------------------------------------------------------------------

    def policy_tenant(self, policy: Policy) -> str:
        return policy.tenant if policy.tenant is not None else self.tenant(policy.network)  # type: ignore[arg-type]

    def endpoint_prefixes(self, endpoint: str, tenant: str | None = None) -> tuple[IPNetwork, ...]:
        """The /32 and /128 of every address of ``endpoint`` (on ``tenant``'s networks only, if given)."""
        found = self.endpoints.get(endpoint)
        if found is None:
            return ()
        return tuple(
            host_prefix(address)
            for attachment in found.attachments
            if tenant is None or self.tenant(attachment.network) == tenant
            for address in (attachment.ip, attachment.ip6)
            if address is not None
        )

    def selection(self, tenant: str, labels: tuple[tuple[str, str], ...]) -> tuple[IPNetwork, ...]:
        """Addresses (on ``tenant``'s networks) of the endpoints whose labels match the selector."""

        def build() -> tuple[IPNetwork, ...]:
            chosen = sorted(name for name, endpoint in self.endpoints.items() if self.selects(labels, tenant, endpoint))
            return tuple(p for name in chosen for p in self.endpoint_prefixes(name, tenant))

        return self.cached(("selection", tenant, labels), build)

    def selects(self, labels: tuple[tuple[str, str], ...], tenant: str, endpoint: Endpoint) -> bool:
        """Whether a selector of ``tenant`` picks ``endpoint`` (labels match, attached to the tenant)."""
        return all(endpoint.labels.get(key) == value for key, value in labels) and any(
            self.tenant(a.network) == tenant for a in endpoint.attachments
        )

    # --- services --------------------------------------------------------------------------------

    def service_rules(self, tenant: str) -> tuple[Rule, ...]:
        """DNAT rules for every service of ``tenant``, by service name."""

        def build() -> tuple[Rule, ...]:
            services = sorted(name for name, s in self.services.items() if s.tenant == tenant)
            return tuple(self.service_rule(self.services[name]) for name in services)

        return self.cached(("services", tenant), build)

    def service_rule(self, service: Service) -> Rule:
        vip = service.vip
        assert vip is not None and service.target_port is not None, "a resolved spec sets vip and target_port"
        targets = []
        for backend in service.backends:
            address = next(p.network_address for p in self.endpoint_prefixes(backend, service.tenant) if p.version == vip.version)
            targets.append(NatTarget(address, service.target_port))
        return Rule(
            match=Match(dst=host_prefix(vip), proto=Proto(service.port.proto), dst_ports=PortRange.single(service.port.port)),
            action=Dnat(targets=tuple(targets), affinity=Affinity(service.affinity)),
            comment=f"service {service.name}",
        )


def host_prefix(address: IPv4Address | IPv6Address) -> IPNetwork:
    """The /32 or /128 of one address (built from the integer: ipaddress parses text slowly)."""
    return (IPv4Network if address.version == 4 else IPv6Network)(int(address))


def with_prefix(address: IPv4Address | IPv6Address, prefixlen: int) -> IPInterface:
    """``address/prefixlen`` as an interface address."""
    return (IPv4Interface if address.version == 4 else IPv6Interface)((int(address), prefixlen))


def routers_by_network(routers: Iterable) -> dict[str, str]:
    return {network: router.name for router in routers for network in router.networks}


def uplink_slots(routers: Iterable) -> dict[str, int]:
    """A /30 uplink slot for every SNAT router, placed by name (allocate.place's stable rule)."""
    wanted = [(router.name, stable_hash("uplink", router.name)) for router in routers if router.snat]
    return place(wanted, set(), 0, naming.UPLINK_SLOTS - 1) or {}


def policy_scopes(policies: Iterable[Policy]) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Policy names by network and by tenant, each sorted by name."""
    by_network: dict[str, list[str]] = {}
    by_tenant: dict[str, list[str]] = {}
    for policy in policies:
        if policy.network is not None:
            by_network.setdefault(policy.network, []).append(policy.name)
        else:
            by_tenant.setdefault(policy.tenant, []).append(policy.name)  # type: ignore[arg-type]
    return (
        {key: tuple(sorted(names)) for key, names in by_network.items()},
        {key: tuple(sorted(names)) for key, names in by_tenant.items()},
    )


def in_scope(facts: Facts, network: Network, direction: str) -> list[str]:
    """Policies that apply to an interface on ``network`` in ``direction``: the network's, then its
    tenant's, each by name."""
    names = (*facts.network_policies.get(network.name, ()), *facts.tenant_policies.get(network.tenant, ()))
    return [name for name in names if facts.policies[name].direction == direction]
