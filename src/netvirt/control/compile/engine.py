"""The incremental compiler, in the style of OVN northd's incremental processing engine.

Contract: ``Engine(spec)`` compiles every host; ``engine.update(new_spec)`` returns exactly the
host graphs that changed (``{host: HostGraph}``, empty when nothing did), equal to what
``compile_network(new_spec)`` gives for them; ``engine.graphs`` holds every host's current graph and
``engine.stats`` says, per node of the last update, which path ran. A ``CompileError`` leaves the
engine as it was.

The wiring is data (``WIRING``, as ``engine_add_input(node, input, handler)`` in OVN's
inc-proc-northd.c): every node lists its inputs, each with the change handler that works out
which of the node's keys a change of that input touches — or None: a change of that input makes
the node recompute. Nodes run in topological order (``ORDER``); a node none of whose inputs
changed does nothing; else its handlers for the changed inputs run, then its ``run`` redoes the
keys they marked. Handlers over-approximate (a touched key may come out equal); values and parts
that come out equal stop the change there, so a host is reported only when its graph really
differs. What a node derives lives in its tables of ``Facts`` (builders read them, only their node
writes them); what changed travels to the nodes after it in ``Pending``. docs/control-plane.md
("Incremental engine") draws the graph and lists the handlers.
"""

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from netvirt.control.compile.compiler import placement, segments
from netvirt.control.compile.facts import Facts, policy_scopes, routers_by_network, uplink_slots
from netvirt.control.compile.parts import (
    HOST_KEY,
    NETWORK_PARTS,
    ROUTER_PARTS,
    Part,
    PartKey,
    PartKind,
    Tunnels,
    assemble,
    build_hosts,
    build_parts,
    part_key,
    part_keys,
)
from netvirt.graph import Chunks, HostGraph, NetworkGraph
from netvirt.graph.values import copier
from netvirt.management.spec import Endpoint, Policy, Spec
from netvirt.management.spec.loader import paused_gc

INPUTS = ("hosts", "networks", "routers", "endpoints", "policies", "services")
HEADER = ("service_subnet",)  # the only top-level spec key the graphs depend on ("settings": recompute all)

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
    """What the handlers of one update marked, and what each node found changed for the nodes
    after it."""

    inputs: dict[str, Delta]
    # members: endpoints to move (name -> (old, new)); what moved
    moved: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    members: set[tuple[str, str]] = field(default_factory=set)  # (network, host)
    # placement: networks and routers to place again, hosts whose flood entries changed; what moved
    replace_networks: set[str] = field(default_factory=set)
    replace_routers: set[str] = field(default_factory=set)
    flood_hosts: set[str] = field(default_factory=set)
    net_hosts: dict[str, frozenset[str]] = field(default_factory=dict)  # network -> old hosts
    router_hosts: dict[str, frozenset[str]] = field(default_factory=dict)  # router -> old hosts
    router_of: set[str] = field(default_factory=set)  # networks whose router changed
    uplinks: set[str] = field(default_factory=set)  # routers whose uplink slot moved
    # selections and services_nat: keys to redo; the ones whose value changed
    reselect: set[tuple] = field(default_factory=set)
    selections: set[tuple] = field(default_factory=set)  # (tenant, labels)
    retenant: set[str] = field(default_factory=set)
    tenants: set[str] = field(default_factory=set)  # tenants whose service rules changed
    # parts: part -> hosts to rebuild it on; routers already touched (with spec_changed)
    dirty: defaultdict[PartKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    routers_touched: set[tuple[str, bool]] = field(default_factory=set)
    removed: int = 0  # parts dropped
    structural: set[str] = field(default_factory=set)  # hosts with a namespace or device changed
    rekeyed: set[str] = field(default_factory=set)  # hosts that gained or lost a part
    # host -> (key, old part) of each part replaced
    replaced: defaultdict[str, list[tuple[PartKey, Part]]] = field(default_factory=lambda: defaultdict(list))
    contributions: set[str] = field(default_factory=set)  # hosts whose host-namespace share changed
    graphs: dict[str, HostGraph] = field(default_factory=dict)  # the hosts whose graph changed


Handler = Callable[["Engine", Pending], None]


@dataclass(frozen=True)
class Node:
    """One node: ``inputs`` in the order their handlers run, each (input node, change handler or
    None: a change of that input makes the node recompute); ``run`` redoes what the handlers
    marked, ``recompute`` redoes everything; both return how many keys they redid."""

    inputs: tuple[tuple[str, Handler | None], ...]
    run: Callable[["Engine", Pending], int] | None = None
    recompute: Callable[["Engine", Pending], int] | None = None


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
        self.keys: dict[str, list[PartKey]] = {h: part_keys(*placed[h]) for h in self.facts.hosts}
        self.tunnels: Tunnels = {}
        self.parts: dict[str, dict[PartKey, Part]] = build_hosts(self.facts, self.keys, self.tunnels)
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
        changed = {kind for kind in INPUTS if pending.inputs[kind]}
        for name in ORDER:
            node = WIRING[name]
            fired = [handler for input, handler in node.inputs if input in changed]
            if not fired:
                continue
            if None in fired:
                self.stats[name] = NodeStats("recompute", node.recompute(self, pending))  # type: ignore[misc]
            else:
                for handler in fired:
                    handler(self, pending)  # type: ignore[misc]
                self._stat(name, node.run(self, pending))  # type: ignore[misc]
            if self.stats[name].path != "unchanged":
                changed.add(name)
        self._last_compared = (None, None, SAME)
        return pending.graphs

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

    def _stat(self, node: str, touched: int) -> None:
        if touched:
            self.stats[node] = NodeStats("incremental", touched)

    # --- underlay, members, placement -----------------------------------------------------------

    def _underlay(self, pending: Pending) -> int:
        """Recompute: every underlay network's peers (a few networks, one pass over the hosts each)."""
        self.facts.derive_underlay_peers()
        return len(self.facts.underlay_peers)

    def _members_of_endpoints(self, pending: Pending) -> None:
        """Endpoints: their old and new attachments."""
        pending.moved.update(pending.inputs["endpoints"])

    def _members_on_hosts(self, pending: Pending) -> None:
        """Hosts: the members on a changed host (they carry its underlay address in their FDB entry)."""
        hosts = pending.inputs["hosts"]
        for endpoint in self.facts.endpoints.values():
            if endpoint.host in hosts:
                pending.moved.setdefault(endpoint.name, (endpoint, endpoint))

    def _member_tables(self, pending: Pending) -> None:
        """Networks: an added network gets an empty member table (a removed one loses it in ``_members``)."""
        for name, (old, _) in pending.inputs["networks"].items():
            if old is None:
                self.facts.members[name] = {}

    def _members(self, pending: Pending) -> int:
        """Move the marked endpoints' members; redo the FDB groups and neighbour lists of the
        (network, host)s whose members changed."""
        f = self.facts
        touched = 0
        for old, new in pending.moved.values():
            before = self._member_list(old)
            if old is not None:
                f.remove_members(old)
            if new is not None:
                f.add_members(new)
            after = self._member_list(new)
            if before != after:
                touched += 1
                pending.members.update((m_net, m.host) for m_net, m in chain(before, after))
        hosts_of: dict[str, set[str]] = defaultdict(set)
        for name, (old, new) in pending.inputs["networks"].items():
            if new is None:
                del f.members[name]
                f.drop_member_lists(name)
            elif old is None:
                hosts_of[name] = set()  # an added network: its (empty) lists
        for network, host in pending.members:
            hosts_of[network].add(host)
        for network, hosts in hosts_of.items():
            if network in f.members:
                f.derive_member_lists(network, hosts)
        return touched

    def _member_list(self, endpoint: Endpoint | None) -> list:
        if endpoint is None:
            return []
        found = self.facts.members
        return [
            (a.network, found[a.network][endpoint.host][(endpoint.name, i)])
            for i, a in enumerate(endpoint.attachments)
            if endpoint.host in found.get(a.network, {}) and (endpoint.name, i) in found[a.network][endpoint.host]
        ]

    def _placement_of_members(self, pending: Pending) -> None:
        """Members: the networks they moved on (and, in ``_placement``, their routers)."""
        pending.replace_networks.update(n for n, _ in pending.members)

    def _placement_of_networks(self, pending: Pending) -> None:
        """Networks: themselves."""
        pending.replace_networks.update(pending.inputs["networks"])

    def _placement_of_routers(self, pending: Pending) -> None:
        """Routers: the router of every network again; the changed routers, their networks, and
        the routers of networks whose router changed."""
        f, routers = self.facts, pending.inputs["routers"]
        pending.replace_routers.update(routers)
        old_of, f.router_of = f.router_of, routers_by_network(f.routers.values())
        for name in old_of.keys() | f.router_of.keys():
            if old_of.get(name) != f.router_of.get(name):
                pending.router_of.add(name)
                pending.replace_routers.update(r for r in (old_of.get(name), f.router_of.get(name)) if r is not None)
        for old, new in routers.values():
            pending.replace_networks.update(old.networks if old is not None else ())
            pending.replace_networks.update(new.networks if new is not None else ())

    def _placement_of_hosts(self, pending: Pending) -> None:
        """Hosts: the flood lists of their networks (they hold the hosts' underlay addresses)."""
        pending.flood_hosts.update(pending.inputs["hosts"])

    def _placement(self, pending: Pending) -> int:
        """Place the marked routers and networks again (a router touched brings its networks);
        redo the flood lists of networks whose hosts changed or that hold a changed host."""
        f, routers, networks = self.facts, pending.inputs["routers"], pending.replace_networks
        touched_routers = pending.replace_routers
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
                f.floods.pop(network, None)
                new = frozenset()
            if old != new:
                pending.net_hosts[network] = old
            if network in f.networks and (old != new or network not in f.floods):
                f.derive_flood(network)
        if pending.flood_hosts:
            for network, hosts in f.net_hosts.items():
                if not pending.flood_hosts.isdisjoint(hosts):
                    f.derive_flood(network)
        return len(pending.net_hosts) + len(pending.router_hosts)

    def _uplinks(self, pending: Pending) -> int:
        """Recompute: the SNAT uplink slots (a handful of routers, placed by name)."""
        old, self.facts.uplink_slot = self.facts.uplink_slot, uplink_slots(self.facts.routers.values())
        pending.uplinks = {r for r in old.keys() | self.facts.uplink_slot.keys() if old.get(r) != self.facts.uplink_slot.get(r)}
        return len(self.facts.routers)

    def _scopes(self, pending: Pending) -> int:
        """Recompute: the policies by network and by tenant (one pass over the policies)."""
        self.facts.network_policies, self.facts.tenant_policies = policy_scopes(self.facts.policies.values())
        return len(self.facts.policies)

    # --- selections, services_nat ----------------------------------------------------------------

    def _selections_of_endpoints(self, pending: Pending) -> None:
        """Endpoints: the selectors that pick the old or the new endpoint."""
        f = self.facts
        changed = [e for pair in pending.inputs["endpoints"].values() for e in pair if e is not None]
        pending.reselect.update(key for key in f.selections if any(f.selects(key[1], key[0], e) for e in changed))

    def _selections_of_policies(self, pending: Pending) -> None:
        """Policies: selectors no policy names any more are dropped, new ones are built."""
        f = self.facts
        wanted = f.selectors()
        for key in f.selections.keys() - wanted:
            del f.selections[key]
        pending.reselect.update(wanted - f.selections.keys())

    def _selections(self, pending: Pending) -> int:
        pending.selections.update(self.facts.derive_selections(pending.reselect))
        return len(pending.reselect)

    def _all_selections(self, pending: Pending) -> int:
        """Recompute (a network changed: its tenant, so whom a selector picks, may have)."""
        f = self.facts
        wanted = f.selectors()
        f.selections = {key: value for key, value in f.selections.items() if key in wanted}
        pending.selections.update(f.derive_selections(sorted(wanted)))
        return len(wanted)

    def _services_of_services(self, pending: Pending) -> None:
        """Services: the tenants of the old and new services."""
        pending.retenant.update(s.tenant for pair in pending.inputs["services"].values() for s in pair if s is not None)

    def _services_of_endpoints(self, pending: Pending) -> None:
        """Endpoints: the tenants of the services they back."""
        backends = set(pending.inputs["endpoints"])
        pending.retenant.update(s.tenant for s in self.facts.services.values() if not backends.isdisjoint(s.backends))

    def _services(self, pending: Pending) -> int:
        pending.tenants.update(self.facts.derive_service_rules(sorted(pending.retenant)))
        return len(pending.retenant)

    def _all_services(self, pending: Pending) -> int:
        """Recompute (a network changed: the addresses the rules translate to may have)."""
        f = self.facts
        tenants = set(f.service_rules) | {s.tenant for s in f.services.values()}
        pending.tenants.update(f.derive_service_rules(sorted(tenants)))
        return len(tenants)

    # --- parts: handlers mark the parts a change touches ----------------------------------------

    def _parts_of_hosts(self, pending: Pending) -> None:
        """Hosts: an added host gets its own part, a removed one loses everything; a changed host
        all its parts, every host's part (on-link routes) and the tunnels of its networks
        everywhere (their flood lists hold its underlay address)."""
        f, hosts = self.facts, pending.inputs["hosts"]
        for host, (old, new) in hosts.items():
            if new is None:
                self.keys.pop(host, None)
                self.parts.pop(host, None)
                self.graphs.pop(host, None)
            elif old is None:
                self.keys[host] = [HOST_KEY]
                self.parts[host] = {HOST_KEY: None}  # type: ignore[dict-item]  # built by _parts
                pending.dirty[HOST_KEY].add(host)
        for host in hosts:
            for other in self.keys:
                self._mark(pending, [other], HOST_KEY)
            for key in self.keys.get(host, ()):
                self._mark(pending, [host], key)
            for network, on in f.net_hosts.items():
                if host in on or host in pending.net_hosts.get(network, ()):
                    self._mark(pending, on, part_key(PartKind.TUNNEL, network))

    def _parts_of_networks(self, pending: Pending) -> None:
        """Networks: their bridges and tunnels, their routers' parts, their endpoints."""
        f = self.facts
        for name in pending.inputs["networks"]:
            hosts = f.net_hosts.get(name, frozenset()) | pending.net_hosts.get(name, frozenset())
            for kind in NETWORK_PARTS:
                self._mark(pending, hosts, part_key(kind, name))
            router = f.router_of.get(name)
            if router is not None:
                self._touch_router(pending, router, spec_changed=True)
            self._mark_endpoints(pending, self._endpoints_on([name]))

    def _parts_of_routers(self, pending: Pending) -> None:
        """Routers: see ``_touch_router``."""
        for router in pending.inputs["routers"]:
            self._touch_router(pending, router, spec_changed=True)

    def _parts_of_endpoints(self, pending: Pending) -> None:
        """Endpoints: their own part (moved with the endpoint's host); the endpoints in scope of
        policies that name a changed endpoint."""
        f = self.facts
        for name, (old, new) in pending.inputs["endpoints"].items():
            key = part_key(PartKind.ENDPOINT, name)
            if old is not None and (new is None or new.host != old.host):
                self._remove_keys(pending, old.host, [key])
            if new is not None and (old is None or new.host != old.host):
                self._add_keys(pending, [new.host], [key])
        self._mark_endpoints(pending, [name for name, (_, new) in pending.inputs["endpoints"].items() if new is not None])
        changed = set(pending.inputs["endpoints"])
        policies = pending.inputs["policies"]
        self._mark_in_scope(pending, [p for name, p in f.policies.items()
                                      if name not in policies and policy_depends(p, changed, set(), f)])

    def _parts_of_policies(self, pending: Pending) -> None:
        """Policies: the endpoints in scope of the old and the new policy."""
        self._mark_in_scope(pending, [p for pair in pending.inputs["policies"].values() for p in pair if p is not None])

    def _parts_of_members(self, pending: Pending) -> None:
        """Members: the tunnels (FDB) of the network and its router's namespaces (neighbours)."""
        f = self.facts
        for network, _ in pending.members:
            self._mark(pending, f.net_hosts.get(network, ()), part_key(PartKind.TUNNEL, network))
            router = f.router_of.get(network)
            if router is not None:
                self._mark(pending, f.router_hosts[router], part_key(PartKind.ROUTER_NAMESPACE, router))

    def _parts_of_placement(self, pending: Pending) -> None:
        """Placement: parts added and removed where networks and routers came or went (and the
        host parts there: SNAT), flood lists, the endpoints of networks whose router changed, the
        parts of routers that moved."""
        f, routers = self.facts, pending.inputs["routers"]
        for network, old_hosts in pending.net_hosts.items():
            new_hosts = f.net_hosts.get(network, frozenset())
            keys = [part_key(kind, network) for kind in NETWORK_PARTS]
            for host in old_hosts - new_hosts:
                self._remove_keys(pending, host, keys)
                self.tunnels.pop((network, host), None)
            self._add_keys(pending, new_hosts - old_hosts, keys)
            self._mark(pending, new_hosts, keys[1])
        for router, old_hosts in pending.router_hosts.items():
            new_hosts = f.router_hosts.get(router, frozenset())
            keys = [part_key(kind, router) for kind in ROUTER_PARTS]
            for host in old_hosts - new_hosts:
                self._remove_keys(pending, host, keys)
            self._add_keys(pending, new_hosts - old_hosts, keys)
            self._mark(pending, old_hosts ^ new_hosts, HOST_KEY)  # the SNAT default route and masquerade
            self._touch_router(pending, router, spec_changed=router in routers)
        for network in pending.router_of:
            self._mark(pending, f.net_hosts.get(network, ()), part_key(PartKind.BRIDGE, network))
            self._mark_endpoints(pending, self._endpoints_on([network]))

    def _parts_of_uplinks(self, pending: Pending) -> None:
        """Uplinks: the parts of routers whose slot moved."""
        for router in pending.uplinks:
            self._touch_router(pending, router, spec_changed=router in pending.inputs["routers"])

    def _parts_of_selections(self, pending: Pending) -> None:
        """Selections: the endpoints in scope of policies that use a selector whose addresses changed."""
        f, policies = self.facts, pending.inputs["policies"]
        self._mark_in_scope(pending, [p for name, p in f.policies.items()
                                      if name not in policies and policy_depends(p, set(), pending.selections, f)])

    def _parts_of_services(self, pending: Pending) -> None:
        """Services: every endpoint of a tenant whose service rules changed."""
        f = self.facts
        self._mark_endpoints(pending, self._endpoints_on(n for n, net in f.networks.items() if net.tenant in pending.tenants))

    def _covered(self, pending: Pending) -> None:
        """No handler work: what changed in this input is marked by the handler of the spec input
        it derives from (scopes: policies; underlay: hosts)."""

    def _touch_router(self, pending: Pending, router: str, spec_changed: bool) -> None:
        """A router's parts on every host where it is or was. When the router itself (or one of
        its networks) changed, also the host parts (SNAT) and the ``host`` endpoints on its
        networks (their routes list the router's other prefixes and static routes)."""
        if (router, spec_changed) in pending.routers_touched:
            return
        pending.routers_touched.add((router, spec_changed))
        f = self.facts
        hosts = f.router_hosts.get(router, frozenset()) | pending.router_hosts.get(router, frozenset())
        for kind in ROUTER_PARTS:
            self._mark(pending, hosts, part_key(kind, router))
        if spec_changed:
            self._mark(pending, hosts, HOST_KEY)
            old, new = pending.inputs["routers"].get(router, (None, None))
            versions = (old, new, f.routers.get(router))
            networks = set(chain.from_iterable(r.networks for r in versions if r is not None))
            self._mark_endpoints(pending, [e for e in self._endpoints_on(networks) if f.endpoints[e].kind == "host"])

    def _mark_in_scope(self, pending: Pending, policies: Iterable[Policy]) -> None:
        networks: set[str] = set()
        for policy in policies:
            networks.update(self._scope_networks(policy))
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
                pending.dirty[part_key(PartKind.ENDPOINT, name)].add(endpoints[name].host)

    def _mark(self, pending: Pending, hosts: Iterable[str], key: PartKey) -> None:
        pending.dirty[key].update(hosts)

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
                pending.removed += 1
                pending.structural.add(host)
                pending.rekeyed.add(host)
                if part is not None and part.shares:
                    pending.contributions.add(host)

    # --- parts: rebuild what the handlers marked -------------------------------------------------

    def _parts(self, pending: Pending) -> int:
        """Rebuild the marked parts, key by key (``build_parts``); the keys redone (rebuilt on a
        host or dropped)."""
        rebuilt, parts_of = 0, self.parts
        for key, hosts in sorted(pending.dirty.items()):
            placed = [host for host in sorted(hosts) if key in parts_of.get(host, ())]
            if not placed:
                continue  # e.g. a removed network's parts: gone with its hosts' keys, nothing to build
            for host, new in build_parts(self.facts, key, placed, self.tunnels):
                parts = parts_of[host]
                old = parts[key]
                if old is not new:
                    parts[key] = self._rebuilt(pending, host, key, old, new)
            rebuilt += len(placed)
        return rebuilt + pending.removed

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

    # --- graphs ----------------------------------------------------------------------------------

    def _graphs(self, pending: Pending) -> int:
        """Handler: parts. Reassemble the hosts with a changed part — by swapping the changed
        parts' chunks into the old graph when the host kept its parts and their namespaces, else
        from all parts (the host namespace only when what the parts add to it changed). A
        host whose only change is in that namespace is reported when the namespace really differs."""
        changed = pending.graphs
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
        return len(changed)

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


E = Engine
WIRING: dict[str, Node] = {
    "underlay": Node((("hosts", None),), recompute=E._underlay),
    "members": Node(
        (("endpoints", E._members_of_endpoints), ("hosts", E._members_on_hosts), ("networks", E._member_tables)),
        run=E._members,
    ),
    "placement": Node(
        (("members", E._placement_of_members), ("routers", E._placement_of_routers),
         ("networks", E._placement_of_networks), ("hosts", E._placement_of_hosts)),
        run=E._placement,
    ),
    "uplinks": Node((("routers", None),), recompute=E._uplinks),
    "scopes": Node((("policies", None),), recompute=E._scopes),
    "selections": Node(
        (("endpoints", E._selections_of_endpoints), ("policies", E._selections_of_policies), ("networks", None)),
        run=E._selections, recompute=E._all_selections,
    ),
    "services_nat": Node(
        (("services", E._services_of_services), ("endpoints", E._services_of_endpoints), ("networks", None)),
        run=E._services, recompute=E._all_services,
    ),
    "parts": Node(
        (("hosts", E._parts_of_hosts), ("networks", E._parts_of_networks), ("routers", E._parts_of_routers),
         ("endpoints", E._parts_of_endpoints), ("policies", E._parts_of_policies), ("members", E._parts_of_members),
         ("placement", E._parts_of_placement), ("uplinks", E._parts_of_uplinks), ("scopes", E._covered),
         ("selections", E._parts_of_selections), ("services_nat", E._parts_of_services), ("underlay", E._covered)),
        run=E._parts,
    ),
    "graphs": Node((("parts", E._covered),), run=E._graphs),
}
"""Every derived node: its inputs, each with its change handler (None: recompute), as OVN wires
its engine with ``engine_add_input(node, input, handler)``. The spec inputs (``INPUTS``) are the
leaves; a change of ``settings`` (``HEADER``) recomputes the whole engine."""
del E


def topological(wiring: dict[str, Node], leaves: Iterable[str]) -> tuple[str, ...]:
    """The nodes in an order where every node comes after its inputs: the wiring's own order
    when that is one (the first node whose inputs are done runs next); a cycle is an error."""
    done, order, waiting = set(leaves), [], list(wiring)
    while waiting:
        ready = next((name for name in waiting if all(i in done for i, _ in wiring[name].inputs)), None)
        if ready is None:
            raise ValueError(f"the engine's wiring has a cycle among {waiting}")
        waiting.remove(ready)
        done.add(ready)
        order.append(ready)
    return tuple(order)


ORDER = topological(WIRING, INPUTS)
NODES: dict[str, tuple[str, ...]] = {
    **{kind: () for kind in (*INPUTS, "settings")},
    **{name: tuple(i for i, _ in node.inputs) for name, node in WIRING.items()},
}
"""Every node and its inputs, leaves first, then in the order they run."""


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

