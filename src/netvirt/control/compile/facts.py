"""Facts: what the compiler derives from a resolved spec before it builds any device.

Contract: ``Facts.of(spec)`` indexes the spec by name and derives the placement (which networks
and routers are present on which hosts), the members of every network, the routers' uplink slots,
the policy scopes and the service DNAT rules of every tenant. Part builders (``parts.py``) read
only these dictionaries, so the incremental engine can keep one ``Facts`` up to date key by key
and reuse the same builders. Placement rule: a network is present on a host when one of its
endpoints lives there, or when its router is present there; a router is present on every host
where one of its networks has an endpoint (it routes locally, so it needs all its networks there).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_network

from netvirt.control.compile import naming
from netvirt.graph import (
    Affinity,
    Dnat,
    FdbEntry,
    IPNetwork,
    Match,
    NatTarget,
    PortRange,
    Proto,
    Rule,
)
from netvirt.management.spec import Endpoint, Network, Service, Spec
from netvirt.management.spec.allocate import place, stable_hash

FLOOD_MAC = "00:00:00:00:00:00"


class CompileError(ValueError):
    """A resolved spec that the device graph cannot express; says what and how to fix it."""


@dataclass(frozen=True, slots=True)
class Member:
    """One endpoint attachment on a network: where it lives and how it is addressed."""

    endpoint: str
    index: int
    host: str
    mac: str
    ip: IPv4Address | None
    ip6: IPv6Address | None

    @property
    def addresses(self) -> tuple[IPv4Address | IPv6Address, ...]:
        return tuple(address for address in (self.ip, self.ip6) if address is not None)


class Facts:
    """Derived, name-indexed knowledge of one spec (see the module docstring).

    Plain dictionaries: the engine updates them in place; builders only read them.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec_name = spec.name
        self.service_subnet: IPNetwork = spec.service_subnet
        self.hosts = {item.name: item for item in spec.hosts}
        self.networks = {item.name: item for item in spec.networks}
        self.routers = {item.name: item for item in spec.routers}
        self.endpoints = {item.name: item for item in spec.endpoints}
        self.policies = {item.name: item for item in spec.policies}
        self.services = {item.name: item for item in spec.services}
        self.router_of = {network: router.name for router in spec.routers for network in router.networks}
        self.members: dict[str, dict[tuple[str, int], Member]] = {name: {} for name in self.networks}
        for endpoint in spec.endpoints:
            for member in members_of(endpoint):
                self.members[endpoint.attachments[member.index].network][(member.endpoint, member.index)] = member
        self.endpoint_hosts = {name: frozenset(m.host for m in found.values()) for name, found in self.members.items()}
        self.router_hosts = {name: self.hosts_of_router(name) for name in self.routers}
        self.net_hosts = {name: self.hosts_of_network(name) for name in self.networks}
        self.uplink_slot = uplink_slots(self.routers.values())
        self.network_policies, self.tenant_policies = policy_scopes(self.policies.values())
        self.service_rules = {
            tenant: self.tenant_service_rules(tenant) for tenant in {s.tenant for s in spec.services if s.tenant}
        }
        self.selections: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[IPNetwork, ...]] = {}

    # --- placement -------------------------------------------------------------------------------

    def hosts_of_router(self, router: str) -> frozenset[str]:
        return frozenset().union(*(self.endpoint_hosts.get(net, ()) for net in self.routers[router].networks))

    def hosts_of_network(self, network: str) -> frozenset[str]:
        hosts = self.endpoint_hosts.get(network, frozenset())
        router = self.router_of.get(network)
        return hosts | self.router_hosts[router] if router is not None else hosts

    def tenant(self, network: str) -> str:
        return self.networks[network].tenant

    # --- per-network views -----------------------------------------------------------------------

    def network_members(self, network: str) -> list[Member]:
        """The attachments on ``network``, ordered by endpoint name and attachment index."""
        found = self.members.get(network, {})
        return [found[key] for key in sorted(found)]

    def tunnel_fdb(self, network: str, host: str) -> tuple[FdbEntry, ...]:
        """Head-end replication to every other host of the network, then each remote endpoint MAC."""
        underlay = {name: self.hosts[name].underlay.ip for name in self.net_hosts[network]}
        flood = [FdbEntry(FLOOD_MAC, remote=underlay[other]) for other in sorted(underlay) if other != host]
        remote = [FdbEntry(m.mac, remote=underlay[m.host]) for m in self.network_members(network) if m.host != host]
        return (*flood, *remote)

    # --- policies --------------------------------------------------------------------------------

    def policy_tenant(self, policy: str) -> str:
        found = self.policies[policy]
        return found.tenant if found.tenant is not None else self.tenant(found.network)  # type: ignore[arg-type]

    def endpoint_prefixes(self, endpoint: str, tenant: str | None = None) -> tuple[IPNetwork, ...]:
        """The /32 and /128 of every address of ``endpoint`` (on ``tenant``'s networks only, if given)."""
        found = self.endpoints.get(endpoint)
        if found is None:
            return ()
        return tuple(
            host_prefix(address)
            for member in members_of(found)
            if tenant is None or self.tenant(found.attachments[member.index].network) == tenant
            for address in member.addresses
        )

    def selection(self, tenant: str, labels: tuple[tuple[str, str], ...]) -> tuple[IPNetwork, ...]:
        """Addresses (on ``tenant``'s networks) of the endpoints whose labels match the selector."""
        key = (tenant, labels)
        found = self.selections.get(key)
        if found is None:
            chosen = sorted(
                name
                for name, endpoint in self.endpoints.items()
                if selects(labels, endpoint)
                and any(self.tenant(a.network) == tenant for a in endpoint.attachments if a.network in self.networks)
            )
            found = self.selections[key] = tuple(p for name in chosen for p in self.endpoint_prefixes(name, tenant))
        return found

    # --- services --------------------------------------------------------------------------------

    def tenant_service_rules(self, tenant: str) -> tuple[Rule, ...]:
        """DNAT rules for every service of ``tenant``, by service name."""
        services = sorted((s for s in self.services.values() if s.tenant == tenant), key=lambda s: s.name)
        return tuple(self.service_rule(service) for service in services)

    def service_rule(self, service: Service) -> Rule:
        vip = service.vip
        assert vip is not None and service.target_port is not None, "a resolved spec sets vip and target_port"
        targets = []
        for backend in service.backends:
            endpoint = self.endpoints[backend]
            address = next(
                address
                for member in members_of(endpoint)
                if self.tenant(endpoint.attachments[member.index].network) == service.tenant
                for address in member.addresses
                if address.version == vip.version
            )
            targets.append(NatTarget(address, service.target_port))
        return Rule(
            match=Match(dst=host_prefix(vip), proto=Proto(service.port.proto), dst_ports=PortRange.single(service.port.port)),
            action=Dnat(targets=tuple(targets), affinity=Affinity(service.affinity)),
            comment=f"service {service.name}",
        )


def members_of(endpoint: Endpoint) -> list[Member]:
    return [
        Member(endpoint.name, index, endpoint.host, attachment.mac or "", attachment.ip, attachment.ip6)
        for index, attachment in enumerate(endpoint.attachments)
    ]


def host_prefix(address: IPv4Address | IPv6Address) -> IPNetwork:
    """The /32 or /128 of one address."""
    return ip_network(address)


def selects(labels: tuple[tuple[str, str], ...], endpoint: Endpoint) -> bool:
    return all(endpoint.labels.get(key) == value for key, value in labels)


def uplink_slots(routers: Iterable) -> dict[str, int]:
    """A /30 uplink slot for every SNAT router, placed by name (allocate.place's stable rule)."""
    wanted = [(router.name, stable_hash("uplink", router.name)) for router in routers if router.snat]
    return place(wanted, set(), 0, naming.UPLINK_SLOTS - 1) or {}


def policy_scopes(policies: Iterable) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Policy names by network and by tenant, each sorted by name."""
    by_network: dict[str, list[str]] = {}
    by_tenant: dict[str, list[str]] = {}
    for policy in policies:
        if policy.network is not None:
            by_network.setdefault(policy.network, []).append(policy.name)
        else:
            by_tenant.setdefault(policy.tenant, []).append(policy.name)
    return (
        {key: tuple(sorted(names)) for key, names in by_network.items()},
        {key: tuple(sorted(names)) for key, names in by_tenant.items()},
    )


def in_scope(facts: "Facts", network: Network, direction: str) -> list[str]:
    """Policies that apply to an interface on ``network`` in ``direction``: the network's, then its
    tenant's, each by name."""
    names = (*facts.network_policies.get(network.name, ()), *facts.tenant_policies.get(network.tenant, ()))
    return [name for name in names if facts.policies[name].direction == direction]
