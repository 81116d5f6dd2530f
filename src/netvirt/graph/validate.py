"""Graph invariants: ``validate(graph) -> list[Problem]`` — all problems at once, none raised.

Contract: an empty list means every reference resolves and every name is unique: namespaces,
devices per namespace, veth peers (existing, a veth, pointing back), masters (a switch in the same
namespace), parents, links (existing ends, each device on at most one wire), routes and neighbours
(existing devices), chains (one per hook and table, NAT actions only at hooks that allow them,
interface matches naming existing devices), FDB ports, and — for a ``NetworkGraph`` — unique hosts
and segments whose attachments exist. Values were already checked by the constructors.
"""

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from netvirt.graph.devices import FLOOD_MAC, SWITCH_KINDS, Bridge, Device, DeviceKind, Tunnel, Veth
from netvirt.graph.host import HostGraph, Namespace, NetworkGraph
from netvirt.graph.rules import FILTER_ACTIONS, HOOK_ACTIONS, NAT_ACTIONS_BY_HOOK, Chain, NetfilterHook, Rule, Verdict

# Where the kernel knows no input (output side) or no output (input side) interface yet.
_NO_IN_IFACE = frozenset({NetfilterHook.OUTPUT, NetfilterHook.POSTROUTING})
_NO_OUT_IFACE = frozenset({NetfilterHook.PREROUTING, NetfilterHook.INPUT})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, ``where`` it is (an object path such as ``host1:pod1/eth0``) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def validate(graph: HostGraph | NetworkGraph) -> list[Problem]:
    """Every broken invariant of ``graph`` (empty when it is consistent)."""
    if isinstance(graph, NetworkGraph):
        return list(_network_problems(graph))
    return list(_host_problems(graph))


def _duplicates(names: Iterable[object]) -> list[object]:
    return [name for name, count in Counter(names).items() if count > 1]


def _network_problems(net: NetworkGraph) -> Iterator[Problem]:
    for host in _duplicates(g.host for g in net.hosts):
        yield Problem(f"host {host}", "duplicate host name")
    for name in _duplicates(s.name for s in net.segments):
        yield Problem(f"segment {name}", "duplicate segment name")
    for graph in net.hosts:
        yield from _host_problems(graph)
    known = {(g.host, d.namespace, d.name) for g in net.hosts for d in g.devices}
    attached: Counter[tuple[str, str, str]] = Counter()
    for segment in net.segments:
        for att in segment.attachments:
            key = (att.host, att.namespace, att.device)
            attached[key] += 1
            if key not in known:
                yield Problem(f"segment {segment.name}", f"attachment {att} names no device")
    for (host, ns, dev), count in attached.items():
        if count > 1:
            yield Problem(f"{host}:{ns}/{dev}", f"attached to {count} segments; a device plugs into one")


def _host_problems(graph: HostGraph) -> Iterator[Problem]:
    host = graph.host
    namespaces = {ns.name: ns for ns in graph.namespaces}
    devices = {dev.key: dev for dev in graph.devices}
    for name in _duplicates(ns.name for ns in graph.namespaces):
        yield Problem(f"{host}:{name}", "duplicate namespace name")
    for ns, name in _duplicates(dev.key for dev in graph.devices):  # type: ignore[misc]
        yield Problem(f"{host}:{ns}/{name}", "duplicate device name in its namespace")
    for dev in graph.devices:
        yield from _device_problems(host, dev, namespaces, devices)
    yield from _link_problems(graph, devices)
    for ns in graph.namespaces:
        yield from _namespace_problems(host, ns, devices)
    yield from _stage_problems(graph, namespaces, devices)


def _stage_problems(
    graph: HostGraph, namespaces: dict[str, Namespace], devices: dict[tuple[str, str], Device]
) -> Iterator[Problem]:
    seen: Counter[str] = Counter(place for stage in graph.stages for place in stage.places)
    for stage in graph.stages:
        for place in stage.places:
            ns, _, rest = place.partition("/")
            dev, _, phase = rest.partition(":")
            if ns not in namespaces or (rest and (ns, dev) not in devices) or phase not in ("", "driver"):
                yield Problem(f"{graph.host}:stage {stage.name}", f"place {place!r} names no namespace or device "
                              "(write NS, NS/DEV or NS/DEV:driver)")
            if seen[place] > 1:
                yield Problem(f"{graph.host}:stage {stage.name}", f"place {place!r} is in more than one stage")


def _device_problems(
    host: str, dev: Device, namespaces: dict[str, Namespace], devices: dict[tuple[str, str], Device]
) -> Iterator[Problem]:
    where = f"{host}:{dev.namespace}/{dev.name}"
    if dev.namespace not in namespaces:
        yield Problem(where, f"namespace {dev.namespace!r} does not exist; add it or fix the name")
    if dev.master is not None:
        master = devices.get((dev.namespace, dev.master))
        if master is None or master.kind not in SWITCH_KINDS:
            yield Problem(where, f"master {dev.master!r} is not a bridge or switch in {dev.namespace}")
    config = dev.config
    lower = getattr(config, "lower_namespace", None) or dev.namespace
    if dev.parent is not None and (lower, dev.parent) not in devices:
        yield Problem(where, f"parent {dev.parent!r} does not exist in {lower}")
    if isinstance(config, Veth):
        peer = devices.get((config.peer_namespace, config.peer))
        if peer is None:
            yield Problem(where, f"veth peer {config.peer_namespace}/{config.peer} does not exist")
        elif not isinstance(peer.config, Veth) or peer.config != Veth(dev.name, dev.namespace):
            yield Problem(where, f"veth peer {config.peer_namespace}/{config.peer} does not point back")
    if isinstance(config, Bridge):
        for entry in config.fdb:
            port = devices.get((dev.namespace, entry.device or ""))
            if entry.device is None or port is None or port.master != dev.name:
                yield Problem(where, f"fdb entry {entry.mac} names {entry.device!r}, not a port of this bridge")
    if isinstance(config, Tunnel):
        if dev.kind not in (DeviceKind.VXLAN, DeviceKind.GENEVE, DeviceKind.NVGRE):
            yield Problem(where, f"kind {dev.kind} cannot carry a tunnel config")
        for entry in config.fdb:
            if entry.remote is None:
                yield Problem(where, f"tunnel fdb entry {entry.mac} needs a remote underlay address")
            elif entry.mac == FLOOD_MAC:
                yield Problem(where, f"tunnel fdb entry {entry.mac} -> {entry.remote}: list flood destinations in flood")
    for hook in _duplicates(h.kind for h in dev.hooks):
        yield Problem(where, f"two {hook} programs attached; attach one per hook")
    for hook in dev.hooks:
        for index, rule in enumerate(hook.rules):
            if not isinstance(rule.action, HOOK_ACTIONS):
                yield Problem(f"{where} {hook.kind} rule {index}",
                              f"action {rule.action.tag} not allowed; allowed: accept, drop, reject, dnat, snat")


def _link_problems(graph: HostGraph, devices: dict[tuple[str, str], Device]) -> Iterator[Problem]:
    wired: Counter[tuple[str, str]] = Counter()
    for link in graph.links:
        where = f"{graph.host}:link {link.a}<->{link.b}"
        if link.a == link.b:
            yield Problem(where, "a link needs two different ends")
            continue
        for end in (link.a, link.b):
            key = (end.namespace, end.device)
            wired[key] += 1
            dev = devices.get(key)
            if dev is None:
                yield Problem(where, f"end {end} does not exist")
            elif dev.kind is DeviceKind.VETH:
                yield Problem(where, f"end {end} is a veth: wire it by its peer")
    for (ns, name), count in wired.items():
        if count > 1:
            yield Problem(f"{graph.host}:{ns}/{name}", f"on {count} links; a device has at most one wire")


def _namespace_problems(host: str, ns: Namespace, devices: dict[tuple[str, str], Device]) -> Iterator[Problem]:
    where = f"{host}:{ns.name}"

    def missing(dev: str | None) -> bool:
        return dev is not None and (ns.name, dev) not in devices

    for route in ns.routes:
        if missing(route.dev):
            yield Problem(where, f"route {route.dst} uses device {route.dev!r}, which is not in {ns.name}")
    for neighbour in ns.neighbours:
        if missing(neighbour.dev):
            yield Problem(where, f"neighbour {neighbour.address} on device {neighbour.dev!r}, not in {ns.name}")
    for table, chains in (("filter", ns.filter), ("nat", ns.nat)):
        for hook in _duplicates(chain.hook for chain in chains):
            yield Problem(where, f"two {table} chains at hook {hook}; merge them into one")
        for chain in chains:
            yield from _chain_problems(f"{where} {table}/{chain.hook}", table, chain, missing)


def _chain_problems(
    where: str, table: str, chain: Chain, missing: Callable[[str | None], bool]
) -> Iterator[Problem]:
    if table == "nat":
        allowed = NAT_ACTIONS_BY_HOOK.get(chain.hook)
        if allowed is None:
            yield Problem(where, f"no NAT happens at hook {chain.hook}; use prerouting/output (dnat) or postrouting/input (snat)")
            return
        if chain.policy is not Verdict.ACCEPT:
            yield Problem(where, "a NAT chain's policy must be accept; filter in the filter table")
    else:
        allowed = FILTER_ACTIONS
    for index, rule in enumerate(chain.rules):
        if not isinstance(rule.action, allowed):
            names = ", ".join(a.tag for a in allowed)
            yield Problem(f"{where} rule {index}", f"action {rule.action.tag} not allowed here; allowed: {names}")
        yield from _iface_problems(f"{where} rule {index}", chain.hook, rule, missing)


def _iface_problems(
    where: str, hook: NetfilterHook, rule: Rule, missing: Callable[[str | None], bool]
) -> Iterator[Problem]:
    match = rule.match
    if match.in_iface is not None and hook in _NO_IN_IFACE:
        yield Problem(where, f"matches in_iface at {hook}, where packets have no input interface")
    if match.out_iface is not None and hook in _NO_OUT_IFACE:
        yield Problem(where, f"matches out_iface at {hook}, before the output interface is known")
    for iface in (match.in_iface, match.out_iface):
        if missing(iface):
            yield Problem(where, f"matches interface {iface!r}, which is not in this namespace")
