"""Facts: what the compiler derives from a resolved spec before it builds any device.

Contract: ``Facts(spec)`` indexes the spec by name and derives the placement (which networks and
routers are present on which hosts), the members of every network, the routers' uplink slots and
the policy scopes, and the larger values many hosts share: per network its FDB groups, flood list
and neighbour list, per label selector its addresses, per tenant its service rules, per underlay
network its peers. Part builders (``parts.py``) only read this object. The incremental engine
keeps it up to date table by table: each table belongs to one engine node, whose handlers redo
the keys a change touches with the ``derive_*`` methods; a value that comes out equal keeps the
old object (``keep``), so unchanged values stay identical objects and compare in O(1).

Placement rule: a network is present on a host when one of its endpoints lives there, or when its
router is present there; a router is present on every host where one of its networks has an
endpoint (it routes locally, so it needs all its networks there).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from itertools import chain
from operator import attrgetter
from typing import Any

from netvirt.control.compile import naming
from netvirt.graph import (
    Affinity,
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
from netvirt.management.spec import Endpoint, Network, Policy, Service, Spec
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
        self._interned: dict[tuple, Any] = {}  # equal routes and neighbours: one object
        self.underlay_peers: dict[IPNetwork, tuple[IPNetwork, ...]] = {}  # underlay network -> peers
        self.derive_underlay_peers()
        self.fdb_group: dict[tuple[str, str], tuple[FdbEntry, ...]] = {}  # (network, host) -> its members' entries
        self.fdb_groups: dict[str, tuple[dict[str, tuple[FdbEntry, ...]], tuple[FdbEntry, ...]]] = {}
        self.neighbour_lists: dict[str, tuple[Neighbour, ...]] = {}
        for name in self.networks:
            self.derive_member_lists(name, self.members[name])
        self.floods: dict[str, Flood] = {}
        for name in self.networks:
            self.derive_flood(name)
        self.selections: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[IPNetwork, ...]] = {}
        self.derive_selections(self.selectors())
        self.service_rules: dict[str, tuple[Rule, ...]] = {}  # tenant -> DNAT rules (tenants with services)
        self.derive_service_rules({service.tenant for service in self.services.values()})

    def route(self, dst: IPNetwork, dev: str, via: IPv4Address | IPv6Address | None = None) -> Route:
        """A route, shared by every namespace that has the same one (many endpoints do)."""
        key = ("route", dst, dev, via)
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = Route(dst=dst, dev=dev, via=via)
        return found

    def neighbour(self, address: IPv4Address | IPv6Address, mac: str, dev: str) -> Neighbour:
        key = ("neighbour", address, mac, dev)
        found = self._interned.get(key)
        if found is None:
            found = self._interned[key] = Neighbour(address, mac, dev)
        return found

    def derive_underlay_peers(self) -> bool:
        """Per underlay network of a host: /32 (/128) of the hosts of its family outside it, by
        host name (the on-link routes a host there needs to reach them). Whether any changed."""
        networks = {host.underlay.network for host in self.hosts.values()}
        changed = False
        for network in networks:
            addresses = (self.hosts[name].underlay.ip for name in sorted(self.hosts))
            peers = tuple(host_prefix(a) for a in addresses if a.version == network.version and a not in network)
            changed |= keep(self.underlay_peers, network, peers)
        for gone in self.underlay_peers.keys() - networks:
            del self.underlay_peers[gone]
        return changed

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

    def derive_flood(self, network: str) -> bool:
        """The underlay addresses of ``network``'s hosts (``others(host)``: a tunnel's flood list)."""
        return keep(self.floods, network, Flood(self, sorted(self.net_hosts[network])))

    def derive_member_lists(self, network: str, hosts: Iterable[str]) -> None:
        """Redo what ``network``'s members on ``hosts`` give: each such host's endpoint MAC entries
        (``fdb_group``), the network's groups in host order and all their entries in that order
        (``fdb_groups``: the remote entries of every host without members), and its neighbour
        entries on the router leg (``neighbour_lists``)."""
        members = self.members[network]
        for host in hosts:
            found = members.get(host)
            if found:
                keep(self.fdb_group, (network, host), tuple(found[key].fdb for key in sorted(found)))
            else:
                self.fdb_group.pop((network, host), None)
        groups = {host: self.fdb_group[(network, host)] for host in sorted(members)}
        keep(self.fdb_groups, network, (groups, tuple(chain.from_iterable(groups.values()))))
        keep(self.neighbour_lists, network, tuple(chain.from_iterable(m.neighbours for m in self.network_members(network))))

    def drop_member_lists(self, network: str) -> None:
        """Forget what a removed network's members gave (``derive_member_lists``)."""
        for table in (self.fdb_groups, self.neighbour_lists):
            table.pop(network, None)
        for key in [key for key in self.fdb_group if key[0] == network]:
            del self.fdb_group[key]

    def tunnel_fdb(self, network: str) -> Callable[[str], tuple[FdbEntry, ...]]:
        """host -> the MAC of every remote endpoint attachment on ``network`` (by host name, then
        endpoint name): one object shared by every host without members on the network."""
        groups, everything = self.fdb_groups[network]

        def remote(host: str) -> tuple[FdbEntry, ...]:
            if host in groups:
                return tuple(chain.from_iterable(group for where, group in groups.items() if where != host))
            return everything

        return remote

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

    def selectors(self) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
        """(tenant, labels) of every label selector a policy rule names."""
        return {
            (self.policy_tenant(policy), peer.labels or ())
            for policy in self.policies.values()
            if policy.network is None or policy.network in self.networks
            for rule in policy.rules
            for peer in chain(rule.from_, rule.to)
            if peer.cidr is None and peer.endpoint is None
        }

    def derive_selections(self, keys: Iterable[tuple[str, tuple[tuple[str, str], ...]]]) -> list[tuple]:
        """Redo the addresses (on the tenant's networks) of the endpoints each selector picks; the
        selectors whose addresses changed."""
        changed = []
        for key in keys:
            tenant, labels = key
            chosen = sorted(name for name, endpoint in self.endpoints.items() if self.selects(labels, tenant, endpoint))
            if keep(self.selections, key, tuple(p for name in chosen for p in self.endpoint_prefixes(name, tenant))):
                changed.append(key)
        return changed

    def selects(self, labels: tuple[tuple[str, str], ...], tenant: str, endpoint: Endpoint) -> bool:
        """Whether a selector of ``tenant`` picks ``endpoint`` (labels match, attached to the tenant)."""
        return all(endpoint.labels.get(key) == value for key, value in labels) and any(
            self.tenant(a.network) == tenant for a in endpoint.attachments
        )

    # --- services --------------------------------------------------------------------------------

    def services_of(self, tenant: str) -> tuple[Rule, ...]:
        """DNAT rules for every service of ``tenant``, by service name."""
        return self.service_rules.get(tenant, ())

    def derive_service_rules(self, tenants: Iterable[str]) -> list[str]:
        """Redo the service rules of ``tenants``; the tenants whose rules changed."""
        changed = []
        for tenant in tenants:
            services = sorted(name for name, s in self.services.items() if s.tenant == tenant)
            if keep(self.service_rules, tenant, tuple(self.service_rule(self.services[name]) for name in services)):
                changed.append(tenant)
        return changed

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


def keep(table: dict, key: Any, value: Any) -> bool:
    """Store ``value`` under ``key`` unless an equal value is there (which stays: unchanged values
    stay identical objects); whether the table changed."""
    old = table.get(key, table)
    if old is not table and (old is value or old == value):
        return False
    table[key] = value
    return True


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
