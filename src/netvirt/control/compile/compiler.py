"""``compile_network`` and ``compile_host``: a resolved spec -> device graphs, from scratch.

Contract: pure and deterministic (same spec, equal graphs; independent of declaration order).
Every graph passes ``netvirt.graph.validate``. Hosts are ordered by name; a host's parts are its
NIC, its networks, its routers and its endpoints, each by name (``parts.assemble``).
"""

from netvirt.control.compile import naming
from netvirt.control.compile.facts import CompileError, Facts
from netvirt.control.compile.parts import assemble, build_hosts, part_keys
from netvirt.graph import Attachment, HostGraph, NetworkGraph, Segment
from netvirt.management.spec import Spec
from netvirt.management.spec.loader import paused_gc


@paused_gc()
def compile_network(spec: Spec) -> NetworkGraph:
    """Every host's graph and the underlay segments joining their NICs."""
    facts = Facts(spec)
    placed = placement(facts)
    parts = build_hosts(facts, {host: part_keys(*placed[host]) for host in facts.hosts}, {})
    hosts = tuple(assemble(host, parts[host].values()) for host in sorted(facts.hosts))
    return NetworkGraph(hosts=hosts, segments=segments(facts))


@paused_gc()
def compile_host(spec: Spec, host: str) -> HostGraph:
    """The graph of one host (equal to ``compile_network(spec).host(host)``)."""
    facts = Facts(spec)
    if host not in facts.hosts:
        known = ", ".join(sorted(facts.hosts)) or "none"
        raise CompileError(f"spec {spec.name!r} has no host {host!r} (hosts: {known})")
    networks = [name for name, hosts in facts.net_hosts.items() if host in hosts]
    routers = [name for name, hosts in facts.router_hosts.items() if host in hosts]
    endpoints = [name for name, endpoint in facts.endpoints.items() if endpoint.host == host]
    parts = build_hosts(facts, {host: part_keys(networks, routers, endpoints)}, {})
    return assemble(host, parts[host].values())


def placement(facts: Facts) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """host -> (its networks, its routers, its endpoints)."""
    placed: dict[str, tuple[list[str], list[str], list[str]]] = {host: ([], [], []) for host in facts.hosts}
    for network, hosts in facts.net_hosts.items():
        for host in hosts:
            placed[host][0].append(network)
    for router, hosts in facts.router_hosts.items():
        for host in hosts:
            placed[host][1].append(router)
    for endpoint in facts.endpoints.values():
        placed[endpoint.host][2].append(endpoint.name)
    return placed


def segments(facts: Facts) -> tuple[Segment, ...]:
    """The underlay (every host NIC; MTU = the largest host MTU: the fabric carries jumbo frames
    between jumbo hosts, each NIC's own MTU limits what it sends and takes), then one segment per
    ``encap: none`` network that is present somewhere (its provider NICs; the network's MTU)."""
    found = []
    if facts.hosts:
        found.append(
            Segment(
                name=naming.UNDERLAY,
                attachments=tuple(Attachment(host, host, naming.NIC) for host in sorted(facts.hosts)),
                mtu=max(host.mtu for host in facts.hosts.values()),
            )
        )
    for name in sorted(facts.networks):
        network = facts.networks[name]
        if network.encap == "none" and facts.net_hosts[name]:
            nic = naming.provider_nic(name)
            attachments = tuple(Attachment(host, host, nic) for host in sorted(facts.net_hosts[name]))
            found.append(Segment(name=naming.segment(name), attachments=attachments, mtu=network.mtu))  # type: ignore[arg-type]
    return tuple(found)
