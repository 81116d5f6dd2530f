"""Planning traces from a spec: endpoint names, addresses, services and ``external`` into flows.

Contract: ``plan_trace(spec, source, target, ...)`` answers a ``netvirt trace`` question (what
``--from``/``--to``/``--stack`` and friends say) with ``Plan(tracer, flow, skip)``, or raises
``BadInput`` with a message naming what is wrong and what would be right (``port_problem`` is its
check of a destination port, for front ends that refuse bad input before planning); ``reach_probes(spec)``
is the probe set of ``netvirt reach`` (``reach_spec`` answers it), ``verify_probes`` the same with
fresh source ports for ``netvirt verify``. Every
front end (CLI, REST API, demo) plans here and only parses and renders. The compiler lives above
this plane (``control.compile``), so callers pass it in as ``compile``; a stack walk builds its
environment (``environments.build``) and needs no compiler.
"""

from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import NamedTuple

from netvirt.environments import build
from netvirt.graph import NetworkGraph
from netvirt.management.spec import Spec
from netvirt.trace.reachability import Probe, Reachability, reach
from netvirt.trace.run import INTERNET, INTERNET6, INTERNET_HOST, Flow, Tracer, with_internet

Address = IPv4Address | IPv6Address
Compile = Callable[[Spec], NetworkGraph]


class BadInput(ValueError):
    """A ``--from``/``--to``/``--stack`` the spec cannot answer; the message says how to fix it."""


class Plan(NamedTuple):
    """What to trace: the tracer over the network, the flow, and the (host, namespace)s of the
    outside world to leave out of the trace (``Tracer.trace``'s ``skip``)."""

    tracer: Tracer
    flow: Flow
    skip: frozenset[tuple[str, str]]


def port_problem(proto: str | None, dport: int | None) -> str | None:
    """Why ``dport`` cannot go with ``proto`` (ICMP has no ports), or None."""
    if proto == "icmp" and dport is not None:
        return "cannot be used with proto icmp: ICMP has no ports (leave the destination port out, or use tcp or udp)"
    return None


def plan_trace(spec: Spec, source: str | None, target: str | None, proto: str | None, dport: int | None,
               sport: int, stack: str | None, size: int = 0, *, compile: Compile) -> Plan:
    """The plan of a ``netvirt trace`` command line (see the module docstring): a stack walk with
    ``stack`` (or when the spec has one stack and neither ``source`` nor ``target``), else the
    flow from ``source`` to ``target`` in the network ``compile(spec)`` makes."""
    if (problem := port_problem(proto, dport)) is not None:
        raise BadInput(f"dport {dport}: {problem}")
    if stack is not None or (source is None and target is None and len(spec.stacks) == 1):
        return _plan_stack(spec, stack or spec.stacks[0].name, source, target, proto, dport, sport, size)
    if source is None or target is None:
        stacks = ", ".join(s.name for s in spec.stacks) or "none"
        raise BadInput(f"give both --from and --to (endpoint names, IPs, IP:PORT, service names or 'external'), or "
                       f"--stack NAME to walk a stack from the outside (stacks in {spec.name}: {stacks})")
    network = compile(spec)
    if "external" in (source, target):
        wanted = proto or "tcp"
        network = with_internet(network, ((wanted, dport or 443),) if wanted != "icmp" and target == "external" else ())
    dst, dst_proto, dst_port, dst_family = _target(spec, target)
    src_host, src_ns, src = _source(spec, network, source, dst_family)
    if src.version != dst.version:
        raise BadInput(f"--from {source} has no IPv{dst.version} address to reach {dst}")
    chosen = proto or dst_proto or "tcp"
    port = dport or dst_port or (443 if target == "external" else 80)
    flow = _sized(Flow(src_host, src_ns, src, dst, chosen, sport, port, size))
    return Plan(Tracer(network), flow, frozenset({(INTERNET_HOST, "internet")}) & frozenset({(src_host, src_ns)}))


def _plan_stack(spec: Spec, name: str, source, target, proto, dport, sport, size) -> Plan:
    if name not in spec.index["stacks"]:
        stacks = ", ".join(s.name for s in spec.stacks) or "none"
        raise BadInput(f"--stack {name!r}: no such stack in {spec.name} (stacks: {stacks})")
    if source is not None or target is not None:
        raise BadInput("--stack walks a packet from the outside to the stack's app: leave out --from and --to "
                       "(use --proto/--dport to change the packet)")
    graph = build(spec, spec.stack(name))
    flow = _sized(Flow(graph.host, graph.client, graph.client_address, graph.target, proto or graph.proto, sport,
                       dport or graph.port, size))
    return Plan(Tracer(graph.network), flow, frozenset({(graph.host, graph.client)}))


def _sized(flow: Flow) -> Flow:
    """The flow, unless its ``size`` is below the smallest packet of its kind (it would be sent at
    the smallest size instead, silently)."""
    smallest = (20 if flow.src.version == 4 else 40) + (20 if flow.proto == "tcp" else 8)
    if 0 < flow.size < smallest:
        raise BadInput(f"--size {flow.size} is smaller than the smallest {flow.proto} packet over IPv{flow.src.version} "
                       f"({smallest} bytes): give 0 (the smallest) or at least {smallest}")
    return flow


def _target(spec: Spec, text: str) -> tuple[Address, str | None, int | None, int | None]:
    """``(address, proto, port, family)`` of a ``--to``; proto/port None when it does not say."""
    if text == "external":
        return INTERNET, None, None, 4
    if text in spec.index["services"]:
        service = spec.service(text)
        return service.vip, str(service.port.proto), service.port.port, service.vip.version
    if text in spec.index["endpoints"]:
        endpoint = spec.endpoint(text)
        address = _endpoint_address(endpoint, None)
        listen = endpoint.listen[0] if endpoint.listen else None
        return address, str(listen.proto) if listen else None, listen.port if listen else None, address.version
    host, _, port = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else ("", "", "")
    address_text = host.strip("[]") if host else text
    try:
        address = ip_address(address_text)
    except ValueError:
        raise BadInput(f"--to {text!r}: not an endpoint, service, address or 'external' of {spec.name} "
                       f"({_names(spec)})") from None
    if port:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise BadInput(f"--to {text!r}: the port must be 1-65535")
        return address, None, int(port), address.version
    return address, None, None, address.version


def _source(spec: Spec, network: NetworkGraph, text: str, family: int | None) -> tuple[str, str, Address]:
    if text == "external":
        return INTERNET_HOST, "internet", INTERNET if family != 6 else INTERNET6
    if text in spec.index["endpoints"]:
        endpoint = spec.endpoint(text)
        return (*_place_of(endpoint), _endpoint_address(endpoint, family))
    try:
        address = ip_address(text)
    except ValueError:
        raise BadInput(f"--from {text!r}: not an endpoint, address or 'external' of {spec.name} "
                       f"({_names(spec)})") from None
    owners = [(graph.host, dev.namespace) for graph in network.hosts for dev in graph.devices
              if any(a.ip == address for a in dev.addresses)]
    owners = list(dict.fromkeys(owners))
    if not owners:
        raise BadInput(f"--from {text}: no namespace of {spec.name} has this address")
    if len(owners) > 1:
        raise BadInput(f"--from {text}: the address is in several namespaces ("
                       + ", ".join(f"{h}:{n}" for h, n in owners) + "); name the endpoint instead")
    return owners[0][0], owners[0][1], address


def _endpoint_address(endpoint, family: int | None) -> Address:
    for attachment in endpoint.attachments:
        for address in (attachment.ip, attachment.ip6):
            if address is not None and (family is None or address.version == family):
                return address
    raise BadInput(f"endpoint {endpoint.name} has no IPv{family} address")


def _names(spec: Spec) -> str:
    endpoints = ", ".join(e.name for e in spec.endpoints) or "none"
    services = ", ".join(s.name for s in spec.services) or "none"
    return f"endpoints: {endpoints}; services: {services}"


# --- reachability probes -------------------------------------------------------------------------


EXTERNAL_PROBE = ("tcp", 443)  # what reach and verify --all send to the outside world


def reach_probes(spec: Spec) -> list[Probe]:
    """Every ordered endpoint pair on each (proto, port) the target listens on (an ICMP echo
    when it listens on none), then every service VIP:port from every endpoint, then the outside
    world (``external``, tcp/443) from every endpoint; IPv4 when both sides have it, else IPv6.
    Trace them on ``reach_network(network)``."""
    probes = []
    for source in spec.endpoints:
        namespace = _place_of(source)[1]
        for target in spec.endpoints:
            if target.name == source.name:
                continue
            family = _common_family(source, target)
            if family is None:
                continue
            src, dst = _endpoint_address(source, family), _endpoint_address(target, family)
            for listen in target.listen or (None,):
                proto = str(listen.proto) if listen else "icmp"
                port = listen.port if listen else 0
                probes.append(Probe(source.name, target.name, Flow(source.host, namespace, src, dst, proto, 40000, port),
                                    frozenset({_place_of(target)})))
        for service in spec.services:
            family = service.vip.version
            if not any(_has(a, family) for a in source.attachments):
                continue
            flow = Flow(source.host, namespace, _endpoint_address(source, family), service.vip,
                        str(service.port.proto), 40000, service.port.port)
            backends = frozenset(_place_of(spec.endpoint(name)) for name in service.backends)
            probes.append(Probe(source.name, f"service/{service.name}", flow, backends))
        family = next((f for f in (4, 6) if any(_has(a, f) for a in source.attachments)), None)
        if family is not None:
            flow = Flow(source.host, namespace, _endpoint_address(source, family), INTERNET if family == 4 else
                        INTERNET6, EXTERNAL_PROBE[0], 40000, EXTERNAL_PROBE[1])
            probes.append(Probe(source.name, "external", flow, frozenset({(INTERNET_HOST, "internet")})))
    return probes


def outside_world(network: NetworkGraph, flows: Iterable[Flow] = ()) -> NetworkGraph:
    """``network`` with the outside world (the ``external`` server), listening where ``flows`` go
    to it: the graph a kernel deployment builds (``netvirt up``) and ``verify`` checks against."""
    if not network.segments:  # no hosts: no underlay for the outside world to sit on
        return network
    ports = {(f.proto, f.dst_port) for f in flows if f.dst in (INTERNET, INTERNET6) and f.proto != "icmp"}
    return with_internet(network, ports)


def reach_network(network: NetworkGraph) -> NetworkGraph:
    """``network`` with the outside world listening where ``reach_probes`` sends to it."""
    return with_internet(network, (EXTERNAL_PROBE,))


def verify_probes(spec: Spec, first_port: int) -> list[Probe]:
    """``reach_probes(spec)`` with fresh source ports ``first_port``, ``first_port + 1``, ... (a
    real kernel keeps conntrack state between runs: every probe of ``netvirt verify`` is new)."""
    return [replace(p, flow=replace(p.flow, src_port=first_port + i)) for i, p in enumerate(reach_probes(spec))]


def reach_spec(spec: Spec, *, compile: Compile) -> list[Reachability]:
    """The answers to ``reach_probes(spec)`` in the network ``compile(spec)`` makes."""
    return reach(Tracer(reach_network(compile(spec))), reach_probes(spec))


def _place_of(endpoint) -> tuple[str, str]:
    return (endpoint.host, endpoint.host if endpoint.kind == "host" else endpoint.name)


def _has(attachment, family: int) -> bool:
    return (attachment.ip if family == 4 else attachment.ip6) is not None


def _common_family(a, b) -> int | None:
    for family in (4, 6):
        if any(_has(x, family) for x in a.attachments) and any(_has(x, family) for x in b.attachments):
            return family
    return None
