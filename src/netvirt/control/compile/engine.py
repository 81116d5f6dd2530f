"""The incremental compiler, in the style of OVN northd's incremental processing engine.

Contract: ``Engine(spec)`` compiles every host; ``engine.update(new_spec)`` returns exactly the
host graphs that changed (``{host: HostGraph}``, empty when nothing did), equal to what
``compile_network(new_spec)`` gives for them; ``engine.graphs`` holds every host's current graph and
``engine.stats`` says, per node of the last update, which path ran. A ``CompileError`` leaves the
engine as it was.

The nodes (``NODES``: name -> inputs) run in order. Every input of a node has a change handler
(the node works out which of its keys the change touches and redoes only those) or falls back to
recomputing the node; a node whose inputs did not change does nothing. Handlers over-approximate
(a touched key may come out equal); parts that come out equal stop the change there, so a host
is reported only when its graph really differs. docs/control-plane.md ("Incremental engine")
draws the graph and lists the handlers.
"""

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from netvirt.control.compile.compiler import placement, segments
from netvirt.control.compile.facts import Facts, policy_scopes, routers_by_network, uplink_slots
from netvirt.control.compile.parts import HOST_KEY, Part, PartKey, assemble, build_part, build_parts, part_keys
from netvirt.graph import Chunks, HostGraph, NetworkGraph
from netvirt.graph.values import copier
from netvirt.management.spec import Endpoint, Policy, Spec
from netvirt.management.spec.loader import paused_gc

INPUTS = ("hosts", "networks", "routers", "endpoints", "policies", "services")
HEADER = ("service_subnet",)  # the only top-level spec key the graphs depend on

NODES: dict[str, tuple[str, ...]] = {
    **{kind: () for kind in INPUTS},
    "settings": (),
    "members": ("endpoints", "networks", "hosts"),
    "placement": ("members", "routers", "networks"),
    "uplinks": ("routers",),
    "scopes": ("policies",),
    "selections": ("endpoints", "networks"),
    "services_nat": ("services", "endpoints", "networks"),
    "parts": (
        "hosts", "networks", "routers", "endpoints", "policies", "settings",
        "members", "placement", "uplinks", "scopes", "selections", "services_nat",
    ),
    "graphs": ("parts", "placement"),
}
"""Every node and its inputs, in the order they run (the engine's wiring, as in inc-proc-northd.c)."""

STRUCTURE, SHARES, SAME = "structure", "shares", "same"  # how a rebuilt part differs (Engine._change)

Delta = dict[str, tuple[Any, Any]]  # name -> (old object or None, new object or None)


@dataclass
class NodeStats:
    """What one node did in the last run: ``path`` is unchanged, incremental or recompute;
    ``touched`` counts the keys it redid (recompute: all of them)."""

    path: str = "unchanged"
    touched: int = 0


@dataclass
class Pending:
    """What the nodes of one update found changed, for the nodes after them."""

    inputs: dict[str, Delta]
    members: set[tuple[str, str]] = field(default_factory=set)  # (network, host)
    net_hosts: dict[str, frozenset[str]] = field(default_factory=dict)  # network -> old hosts
    router_hosts: dict[str, frozenset[str]] = field(default_factory=dict)  # router -> old hosts
    router_of: set[str] = field(default_factory=set)  # networks whose router changed
    uplinks: set[str] = field(default_factory=set)  # routers whose uplink slot moved
    selections: set[tuple] = field(default_factory=set)  # (tenant, labels) whose endpoints changed
    tenants: set[str] = field(default_factory=set)  # tenants whose service rules changed
    dirty: defaultdict[PartKey, set[str]] = field(default_factory=lambda: defaultdict(set))  # part -> hosts to rebuild it on
    structural: set[str] = field(default_factory=set)  # hosts with a namespace or device changed
    rekeyed: set[str] = field(default_factory=set)  # hosts that gained or lost a part
    # host -> (key, old part) of each part replaced
    replaced: defaultdict[str, list[tuple[PartKey, Part]]] = field(default_factory=lambda: defaultdict(list))
    contributions: set[str] = field(default_factory=set)  # hosts whose host-namespace share changed


class Engine:
    """Per-host graphs of a spec, kept up to date incrementally (see the module docstring)."""

    @paused_gc()
    def __init__(self, spec: Spec) -> None:
        self.stats: dict[str, NodeStats] = {}
        self._rebuild(spec)

    # --- public ----------------------------------------------------------------------------------

    @property
    def network(self) -> NetworkGraph:
        """All current host graphs and the underlay segments."""
        return NetworkGraph(hosts=tuple(self.graphs[h] for h in sorted(self.graphs)), segments=segments(self.facts))

    @paused_gc()
    def update(self, spec: Spec) -> dict[str, HostGraph]:
        """Bring every graph to ``spec``; the hosts whose graph changed (added hosts included).

        A removed host is not in the result; it is gone from ``graphs``."""
        previous = self.spec
        try:
            return self._update(spec)
        except Exception:
            self._rebuild(previous)  # a failed update leaves the engine as it was
            raise

    # --- full recompute --------------------------------------------------------------------------

    def _rebuild(self, spec: Spec) -> None:
        self.spec = spec
        self.facts = Facts(spec)
        placed = placement(self.facts)
        self.keys: dict[str, list[PartKey]] = {h: part_keys(self.facts, h, *placed[h]) for h in self.facts.hosts}
        self.parts: dict[str, dict[PartKey, Part]] = {
            h: {key: build_part(self.facts, h, key) for key in keys} for h, keys in self.keys.items()
        }
        self.graphs: dict[str, HostGraph] = {h: assemble(h, self.parts[h].values()) for h in sorted(self.keys)}
        self.stats = {name: NodeStats("recompute", 0) for name in NODES}
        self.stats["graphs"].touched = len(self.graphs)
        self._last_compared: tuple[Any, Any, str] = (None, None, SAME)  # see _change
        self.chunk_of: dict[str, dict[PartKey, int]] = {}  # host -> part -> its chunk in the host's graph

    # --- incremental -----------------------------------------------------------------------------

    def _update(self, spec: Spec) -> dict[str, HostGraph]:
        self.stats = {name: NodeStats() for name in NODES}
        if any(getattr(spec, key) != getattr(self.spec, key) for key in HEADER):
            old = self.graphs
            self._rebuild(spec)
            self.stats["settings"] = NodeStats("recompute", len(HEADER))
            return {h: g for h, g in self.graphs.items() if old.get(h) != g}
        pending = Pending({kind: self._delta(kind, spec) for kind in INPUTS})
        self.spec = spec
        self._inputs(pending)
        self._members(pending)
        self._placement(pending)
        self._uplinks(pending)
        self._scopes(pending)
        self._selections(pending)
        self._services(pending)
        self._parts(pending)
        changed = self._graphs(pending)
        self.facts.stale.clear()
        self._last_compared = (None, None, SAME)
        return changed

    def _delta(self, kind: str, spec: Spec) -> Delta:
        """Objects of ``kind`` added, removed or changed, by name. Items outside the window where
        the two lists differ are identical or equal (one C-speed tuple comparison each way), so a
        spec that shares its unchanged objects, as ``model_copy`` does, costs O(changes) objects."""
        old_items, new_items = getattr(self.spec, kind), getattr(spec, kind)
        if old_items is new_items:
            return {}
        start = common_prefix(old_items, new_items)
        end = common_suffix(old_items, new_items, min(len(old_items), len(new_items)) - start)
        delta: Delta = {item.name: (item, None) for item in old_items[start : len(old_items) - end]}
        for item in new_items[start : len(new_items) - end]:
            old = delta.get(item.name, (None, None))[0]
            if old is not None and (old is item or old == item):
                del delta[item.name]
            else:
                delta[item.name] = (old, item)
        self.stats[kind] = NodeStats("incremental" if delta else "unchanged", len(delta))
        return delta

    def _inputs(self, pending: Pending) -> None:
        for kind in INPUTS:
            table = getattr(self.facts, kind)
            for name, (_, new) in pending.inputs[kind].items():
                if new is None:
                    del table[name]
                else:
                    table[name] = new

    # --- derived nodes ---------------------------------------------------------------------------

    def _members(self, pending: Pending) -> None:
        """Handlers: endpoints (their attachments), hosts (underlay in every member's FDB entry),
        networks (added networks get an empty member table)."""
        f, hosts, endpoints = self.facts, pending.inputs["hosts"], pending.inputs["endpoints"]
        networks = pending.inputs["networks"]
        for name, (old, new) in networks.items():
            if old is None:
                f.members[name] = {}
        moved = dict(endpoints)
        if hosts:  # members on a changed host carry its old underlay address
            moved.update((e.name, (e, e)) for e in f.endpoints.values() if e.host in hosts and e.name not in moved)
        touched = 0
        for name, (old, new) in moved.items():
            before = self._member_list(old)
            if old is not None:
                f.remove_members(old)
            if new is not None:
                f.add_members(new)
            after = self._member_list(new)
            if before != after:
                touched += 1
                pending.members.update((m_net, m.host) for m_net, m in chain(before, after))
        for name, (old, new) in networks.items():
            if new is None:
                del f.members[name]
        self._stat("members", touched, recompute=bool(hosts))

    def _member_list(self, endpoint: Endpoint | None) -> list:
        if endpoint is None:
            return []
        found = self.facts.members
        return [
            (a.network, found[a.network][endpoint.host][(endpoint.name, i)])
            for i, a in enumerate(endpoint.attachments)
            if endpoint.host in found.get(a.network, {}) and (endpoint.name, i) in found[a.network][endpoint.host]
        ]

    def _placement(self, pending: Pending) -> None:
        """Handlers: members (hosts of touched networks), routers (their networks), networks."""
        f, routers = self.facts, pending.inputs["routers"]
        networks = {n for n, _ in pending.members} | set(pending.inputs["networks"])
        touched_routers = set(routers)
        if routers:
            old_of, f.router_of = f.router_of, routers_by_network(f.routers.values())
            for name in old_of.keys() | f.router_of.keys():
                if old_of.get(name) != f.router_of.get(name):
                    pending.router_of.add(name)
                    touched_routers.update(r for r in (old_of.get(name), f.router_of.get(name)) if r is not None)
            for old, new in routers.values():
                networks.update(old.networks if old is not None else ())
                networks.update(new.networks if new is not None else ())
        touched_routers.update(f.router_of[n] for n in networks if n in f.router_of)
        for router in touched_routers:
            old = f.router_hosts.get(router, frozenset())
            new = f.hosts_of_router(router) if router in f.routers else frozenset()
            if router not in f.routers:
                del f.router_hosts[router]
            else:
                f.router_hosts[router] = new
            if old != new or router in routers:
                pending.router_hosts[router] = old
                if router in f.routers:
                    networks.update(f.routers[router].networks)
        for network in networks:
            old = f.net_hosts.get(network, frozenset())
            if network in f.networks:
                f.net_hosts[network] = new = f.hosts_of_network(network)
            else:
                f.net_hosts.pop(network, None)
                new = frozenset()
            if old != new:
                pending.net_hosts[network] = old
        self._stat("placement", len(pending.net_hosts) + len(pending.router_hosts))

    def _uplinks(self, pending: Pending) -> None:
        """Falls back to recompute on any router change (a handful of routers; placement by name)."""
        if not pending.inputs["routers"]:
            return
        old, self.facts.uplink_slot = self.facts.uplink_slot, uplink_slots(self.facts.routers.values())
        pending.uplinks = {r for r in old.keys() | self.facts.uplink_slot.keys() if old.get(r) != self.facts.uplink_slot.get(r)}
        self._stat("uplinks", len(self.facts.routers), recompute=True)

    def _scopes(self, pending: Pending) -> None:
        """Falls back to recompute on any policy change (one pass over the policies)."""
        if pending.inputs["policies"]:
            self.facts.network_policies, self.facts.tenant_policies = policy_scopes(self.facts.policies.values())
            self._stat("scopes", len(self.facts.policies), recompute=True)

    def _selections(self, pending: Pending) -> None:
        """Handler: endpoints (selectors matching the old or new endpoint); networks: recompute."""
        f = self.facts
        keys = list(f.memo["selection"])
        if pending.inputs["networks"]:
            chosen = keys
        else:
            changed = [e for pair in pending.inputs["endpoints"].values() for e in pair if e is not None]
            chosen = [key for key in keys if any(f.selects(key[2], key[1], e) for e in changed)]
        for key in chosen:
            f.forget(key)
            pending.selections.add(key[1:])
        self._stat("selections", len(chosen), recompute=bool(pending.inputs["networks"]) and bool(keys))

    def _services(self, pending: Pending) -> None:
        """Handlers: services (their tenants), endpoints (services they back); networks: recompute."""
        f, inputs = self.facts, pending.inputs
        cached = [key[1] for key in f.memo["services"]]
        if inputs["networks"]:
            tenants = set(cached)
        else:
            tenants = {s.tenant for pair in inputs["services"].values() for s in pair if s is not None}
            backends = set(inputs["endpoints"])
            tenants.update(s.tenant for s in f.services.values() if not backends.isdisjoint(s.backends))
        for tenant in tenants:
            old = f.memo["services"].get(("services", tenant))
            f.forget(("services", tenant))
            if f.service_rules(tenant) is not old:  # type: ignore[arg-type]
                pending.tenants.add(tenant)  # type: ignore[arg-type]
        self._stat("services_nat", len(tenants), recompute=bool(inputs["networks"]) and bool(cached))

    # --- parts -----------------------------------------------------------------------------------

    def _parts(self, pending: Pending) -> None:
        """Work out which parts each input touches (the handlers below), then rebuild those."""
        f, inputs = self.facts, pending.inputs
        self._placement_keys(pending)
        for host in inputs["hosts"]:
            self._touch_host(pending, host)
        for name, (old, new) in inputs["networks"].items():
            self._touch_network(pending, name, old, new)
        for network, host in pending.members:
            for key in (("fdb-group", network, host), ("fdb-groups", network), ("neighbours", network)):
                f.forget(key)
            self._mark(pending, f.net_hosts.get(network, ()), (1, network, 1))
            router = f.router_of.get(network)
            if router is not None:
                self._forget_router(router)
                self._mark(pending, f.router_hosts[router], (2, router, 0))
        for network in pending.net_hosts:
            f.forget(("flood", network))
            self._mark(pending, f.net_hosts.get(network, ()), (1, network, 1))
        for network in pending.router_of:
            self._mark(pending, f.net_hosts.get(network, ()), (1, network, 0))
            self._mark_endpoints(pending, self._endpoints_on([network]))
        for router in set(inputs["routers"]) | pending.uplinks | set(pending.router_hosts):
            self._touch_router(pending, router, spec_changed=router in inputs["routers"])
        self._touch_endpoints(pending)
        rebuilt, parts_of = 0, self.parts
        for key, hosts in sorted(pending.dirty.items()):
            placed = [host for host in sorted(hosts) if key in parts_of.get(host, ())]
            if not placed:
                continue  # e.g. a removed network's parts: gone with its hosts' keys, nothing to build
            for host, new in build_parts(f, key, placed):
                parts = parts_of[host]
                old = parts[key]
                if old is not new:
                    parts[key] = self._rebuilt(pending, host, key, old, new)
            rebuilt += len(placed)
        self._stat("parts", rebuilt)

    def _rebuilt(self, pending: Pending, host: str, key: PartKey, old: Part | None, new: Part) -> Part:
        """The part to keep (the old object when equal) and what changed on ``host``."""
        change = STRUCTURE if old is None else self._change(old, new)
        if change is STRUCTURE:
            pending.structural.add(host)
            if old is not None:
                pending.replaced[host].append((key, old))
            if new.shares or (old is not None and old.shares):
                pending.contributions.add(host)
            return new
        if change is SHARES:
            pending.contributions.add(host)
            return new
        return old  # type: ignore[return-value]

    def _change(self, old: Part, new: Part) -> str:
        """What differs between two parts: STRUCTURE (their namespaces or devices), SHARES (only
        what they add to the host namespace) or SAME. The last pair compared is remembered: the
        parts of one key are rebuilt host after host, and a pair shared by all of them (a
        router's namespace) is compared once."""
        last = self._last_compared
        if last[0] is old and last[1] is new:
            return last[2]
        if old.namespaces != new.namespaces or old.devices != new.devices:
            change = STRUCTURE
        else:
            change = SHARES if old[2:] != new[2:] else SAME
        self._last_compared = (old, new, change)
        return change

    def _placement_keys(self, pending: Pending) -> None:
        """Add and remove parts where placement changed (hosts, networks, routers, endpoints)."""
        f = self.facts
        for host, (old, new) in pending.inputs["hosts"].items():
            if new is None:
                self.keys.pop(host, None)
                self.parts.pop(host, None)
                self.graphs.pop(host, None)
            elif old is None:
                self.keys[host] = [HOST_KEY]
                self.parts[host] = {HOST_KEY: None}  # type: ignore[dict-item]  # built by _parts
                pending.dirty[HOST_KEY].add(host)
        for network, old_hosts in pending.net_hosts.items():
            new_hosts = f.net_hosts.get(network, frozenset())
            for host in old_hosts - new_hosts:
                self._remove_keys(pending, host, [(1, network, 0), (1, network, 1)])
                f.tunnels.pop((network, host), None)
            self._add_keys(pending, new_hosts - old_hosts, [(1, network, 0), (1, network, 1)])
        for router, old_hosts in pending.router_hosts.items():
            new_hosts = f.router_hosts.get(router, frozenset())
            for host in old_hosts - new_hosts:
                self._remove_keys(pending, host, [(2, router, 0), (2, router, 1)])
            self._add_keys(pending, new_hosts - old_hosts, [(2, router, 0), (2, router, 1)])
            self._mark(pending, old_hosts ^ new_hosts, HOST_KEY)  # the SNAT default route and masquerade
        for name, (old, new) in pending.inputs["endpoints"].items():
            key = (3, name, 0)
            if old is not None and (new is None or new.host != old.host):
                self._remove_keys(pending, old.host, [key])
            if new is not None and (old is None or new.host != old.host):
                self._add_keys(pending, [new.host], [key])

    def _add_keys(self, pending: Pending, hosts: Iterable[str], keys: list[PartKey]) -> None:
        for host in hosts:
            if host not in self.keys:
                continue  # a removed host
            for key in keys:
                if key not in self.parts[host]:
                    bisect.insort(self.keys[host], key)
                    self.parts[host][key] = None  # type: ignore[assignment]  # built by _parts
                    pending.dirty[key].add(host)
                    pending.rekeyed.add(host)

    def _remove_keys(self, pending: Pending, host: str, keys: list[PartKey]) -> None:
        if host not in self.keys:
            return  # a removed host
        for key in keys:
            if key in self.parts[host]:
                part = self.parts[host].pop(key)
                self.keys[host].remove(key)
                pending.structural.add(host)
                pending.rekeyed.add(host)
                if part is not None and part.shares:
                    pending.contributions.add(host)

    def _mark(self, pending: Pending, hosts: Iterable[str], key: PartKey) -> None:
        pending.dirty[key].update(hosts)

    def _touch_host(self, pending: Pending, host: str) -> None:
        """A host changed: all its parts; every host's part (on-link routes); the tunnels of its
        networks everywhere (their flood entries hold its underlay address)."""
        f = self.facts
        for key in list(f.memo["underlay-peers"]):
            f.forget(key)
        for other in self.keys:
            self._mark(pending, [other], HOST_KEY)
        for key in self.keys.get(host, ()):
            self._mark(pending, [host], key)
        for network, hosts in f.net_hosts.items():
            if host in hosts or host in pending.net_hosts.get(network, ()):
                f.forget(("flood", network))
                self._mark(pending, hosts, (1, network, 1))

    def _touch_network(self, pending: Pending, name: str, old: Any, new: Any) -> None:
        """A network changed: its bridges and tunnels, its router's parts, its endpoints."""
        f = self.facts
        hosts = f.net_hosts.get(name, frozenset()) | pending.net_hosts.get(name, frozenset())
        self._mark(pending, hosts, (1, name, 0))
        self._mark(pending, hosts, (1, name, 1))
        router = f.router_of.get(name)
        if router is not None:
            self._touch_router(pending, router, spec_changed=True)
        self._mark_endpoints(pending, self._endpoints_on([name]))

    def _touch_router(self, pending: Pending, router: str, spec_changed: bool) -> None:
        """A router's parts on every host where it is or was. When the router itself (or one of
        its networks) changed, also the host parts (SNAT) and the ``host`` endpoints on its
        networks (their routes list the router's other prefixes and static routes)."""
        f = self.facts
        self._forget_router(router)
        hosts = f.router_hosts.get(router, frozenset()) | pending.router_hosts.get(router, frozenset())
        self._mark(pending, hosts, (2, router, 0))
        self._mark(pending, hosts, (2, router, 1))
        if spec_changed:
            self._mark(pending, hosts, HOST_KEY)
            old, new = pending.inputs["routers"].get(router, (None, None))
            versions = (old, new, f.routers.get(router))
            networks = set(chain.from_iterable(r.networks for r in versions if r is not None))
            self._mark_endpoints(pending, [e for e in self._endpoints_on(networks) if f.endpoints[e].kind == "host"])

    def _forget_router(self, router: str) -> None:
        for version in (4, 6):
            self.facts.forget(("router-ns", router, version))

    def _touch_endpoints(self, pending: Pending) -> None:
        """Endpoints: their own part; the endpoints in scope of policies that changed or that name
        a changed endpoint or selector; every endpoint of a tenant whose services changed."""
        f, inputs = self.facts, pending.inputs
        self._mark_endpoints(pending, [name for name, (_, new) in inputs["endpoints"].items() if new is not None])
        policies = dict(inputs["policies"])
        changed = set(inputs["endpoints"])
        for name, policy in f.policies.items():
            if name not in policies and policy_depends(policy, changed, pending.selections, f):
                policies[name] = (policy, policy)
        networks: set[str] = set()
        for old, new in policies.values():
            for policy in (old, new):
                if policy is not None:
                    networks.update(self._scope_networks(policy))
        networks.update(n for n, spec_net in f.networks.items() if spec_net.tenant in pending.tenants)
        self._mark_endpoints(pending, self._endpoints_on(networks))

    def _scope_networks(self, policy: Policy) -> list[str]:
        if policy.network is not None:
            return [policy.network] if policy.network in self.facts.networks else []
        return [n for n, net in self.facts.networks.items() if net.tenant == policy.tenant]

    def _endpoints_on(self, networks: Iterable[str]) -> set[str]:
        members = self.facts.members
        return {key[0] for n in networks for on_host in members.get(n, {}).values() for key in on_host}

    def _mark_endpoints(self, pending: Pending, names: Iterable[str]) -> None:
        endpoints = self.facts.endpoints
        for name in names:
            if name in endpoints:
                pending.dirty[(3, name, 0)].add(endpoints[name].host)

    # --- graphs ----------------------------------------------------------------------------------

    def _graphs(self, pending: Pending) -> dict[str, HostGraph]:
        """Handler: parts. Reassemble the hosts with a changed part — by swapping the changed
        parts' chunks into the old graph when the host kept its parts and their namespaces, else
        from all parts (the host namespace only when what the parts add to it changed). A
        host whose only change is in that namespace is reported when the namespace really differs."""
        changed = {}
        for host in sorted((pending.structural | pending.contributions) & self.keys.keys()):
            old = self.graphs.get(host)
            graph = None
            if old is not None and host not in pending.contributions and host not in pending.rekeyed:
                graph = self._splice(host, old, pending.replaced.get(host, []))
            if graph is None:
                own = old.namespaces[0] if old is not None and host not in pending.contributions else None
                graph = assemble(host, map(self.parts[host].__getitem__, self.keys[host]), own)
                self.chunk_of.pop(host, None)
            if host in pending.structural or old is None or old.namespaces[0] != graph.namespaces[0]:
                changed[host] = graph
                self.graphs[host] = graph
        self._stat("graphs", len(changed))
        return changed

    def _splice(self, host: str, old: HostGraph, replaced: list[tuple[PartKey, Part]]) -> HostGraph | None:
        """``old`` with each replaced part's chunks swapped for the new part's: O(parts), sharing
        every other chunk. None when a part gained or lost a namespace (``assemble`` checks names)."""
        index = self.chunk_of.get(host)
        if index is None:
            index = self.chunk_of[host] = {key: at for at, key in enumerate(self.keys[host])}
        namespaces, devices = list(old.namespaces.chunks), list(old.devices.chunks)  # type: ignore[attr-defined]
        parts = self.parts[host]
        for key, before in replaced:
            after = parts[key]
            if len(after.namespaces) != len(before.namespaces):
                return None  # a part's namespaces are named by its key (router, endpoint): only their number changes
            at = index[key]
            namespaces[at + 1] = after.namespaces  # chunk 0 is the host namespace
            devices[at] = after.devices
        return with_parts(old, Chunks(namespaces), Chunks(devices))

    def _stat(self, node: str, touched: int, recompute: bool = False) -> None:
        if touched or recompute:
            self.stats[node] = NodeStats("recompute" if recompute else "incremental", touched)


with_parts = copier(HostGraph, "namespaces", "devices")
"""(graph, namespaces, devices) -> the graph with those: every namespace and device in them was
checked when built, and no check of HostGraph's constructor reads them (the splice's hot path)."""


def common_prefix(a: tuple, b: tuple) -> int:
    """The length of the longest common prefix (elements identical or equal) of two tuples."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low]; a[:high] != b[:high]
    while high - low > 1:
        mid = (low + high) // 2
        if a[low:mid] == b[low:mid]:
            low = mid
        else:
            high = mid
    return low


def common_suffix(a: tuple, b: tuple, limit: int) -> int:
    """The length (at most ``limit``) of the longest common suffix of two tuples."""
    if a[len(a) - limit :] == b[len(b) - limit :]:
        return limit
    low, high = 0, limit
    while high - low > 1:
        mid = (low + high) // 2
        if a[len(a) - mid : len(a) - low] == b[len(b) - mid : len(b) - low]:
            low = mid
        else:
            high = mid
    return low


def policy_depends(policy: Policy, endpoints: set[str], selections: set[tuple], facts: Facts) -> bool:
    """Whether a policy's remote peers name one of ``endpoints`` or use one of ``selections``."""
    if not endpoints and not selections:
        return False
    tenant = facts.policy_tenant(policy) if (policy.network is None or policy.network in facts.networks) else None
    for rule in policy.rules:
        for peer in chain(rule.from_, rule.to):
            if peer.endpoint is not None and peer.endpoint in endpoints:
                return True
            if peer.labels is not None and (tenant, peer.labels) in selections:
                return True
    return False

