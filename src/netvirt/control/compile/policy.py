"""Policies -> netfilter rules for one endpoint interface (flat chains, first match wins).

Contract: ``interface_rules`` returns the rules one interface of an endpoint needs in one
direction (ingress -> the input chain, qualified by ``in_iface``; egress -> output, ``out_iface``):
the rules of every policy in scope (the network's policies, then its tenant's, each by name), then
the strictest default among them (drop > reject > allow). No policy in scope -> no rules.

A spec rule names peers. The local side (``to`` for ingress, ``from`` for egress) depends only on
this endpoint: CIDRs holding an interface address, and the interface's own prefixes when an
endpoint name or a label selector picks this endpoint; when nothing is left the rule is about
other endpoints and is left out. The remote side resolves endpoint names and label selectors to
/32 and /128 prefixes (a side that selects nobody leaves the rule out). One spec rule becomes
the cross product of its prefixes and port ranges, split by address family where it must be
(``icmp`` is ICMP for IPv4 and ICMPv6 for IPv6; ICMPv4 echo/unreachable/time-exceeded types and
codes map to their ICMPv6 twins; a type or code without a twin is IPv4 only). ``reject`` answers TCP with a reset and everything else with ICMP
port-unreachable. ``log`` does not end evaluation: every later rule (and the default) gets a
logged twin restricted to what the log rule matches, placed just before it.
"""

import dataclasses
import itertools
from collections.abc import Iterable, Iterator

from netvirt.control.compile.facts import Facts, in_scope
from netvirt.graph import (
    ACCEPT,
    DROP,
    CtState,
    GraphError,
    IPNetwork,
    Match,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Rule,
)
from netvirt.management.spec import Endpoint, Network, Peer
from netvirt.management.spec import Rule as SpecRule

ESTABLISHED = Rule(
    match=Match(ct_states=frozenset({CtState.ESTABLISHED, CtState.RELATED})),
    action=ACCEPT,
    comment="replies of allowed flows",
)
ICMPV6_TYPES = {0: 129, 8: 128, 3: 1, 11: 3}  # echo reply, echo request, unreachable, time exceeded
# (ICMPv4 type, code) -> the ICMPv6 code with the same meaning (RFC 4443; as the kernel answers)
ICMPV6_CODES = {
    (0, 0): 0, (8, 0): 0,  # echo
    (3, 0): 0, (3, 1): 3, (3, 3): 4, (3, 9): 1, (3, 10): 1, (3, 13): 1,  # no route, address, port, prohibited
    (11, 0): 0, (11, 1): 1,  # hop limit exceeded, reassembly time exceeded
}
STRICTNESS = {"allow": 0, "reject": 1, "drop": 2}


# A log marker: the matches of a spec ``log`` rule and its prefix (see the module docstring).
LogMarker = tuple[tuple[Match, ...], str]


def interface_rules(
    facts: Facts, endpoint: Endpoint, network: Network, iface: str, addresses: tuple[IPNetwork, ...], direction: str
) -> tuple[Rule, ...]:
    """The rules for one interface (``addresses``: its /32 and /128 prefixes); see the module doc."""
    names = in_scope(facts, network, direction)
    if not names:
        return ()
    side = {"in_iface": iface} if direction == "ingress" else {"out_iface": iface}
    entries: list[Rule | LogMarker] = []
    for name in names:
        policy = facts.policies[name]
        tenant = facts.policy_tenant(policy)
        for number, rule in enumerate(policy.rules, start=1):
            comment = rule.comment or f"policy {name}: {direction} rule {number}"
            local_peers, remote_peers = (rule.to, rule.from_) if direction == "ingress" else (rule.from_, rule.to)
            local = local_prefixes(facts, tenant, local_peers, endpoint, addresses)
            remote = resolve(facts, tenant, remote_peers) if remote_peers else (None,)
            if not local or not remote:
                continue  # the rule is about other endpoints, or its peers select nobody
            matches = tuple(rule_matches(rule, local, remote, direction, side))
            if rule.action == "log":
                entries.append((matches, f"policy {name} rule {number}: "))
            else:
                entries.extend(decide(matches, rule.action, comment))
    default = max((facts.policies[name].default for name in names), key=STRICTNESS.__getitem__)
    entries.extend(decide((Match(**side),), default, f"policy {', '.join(names)}: default {default}"))
    return expand_logs(entries)


def local_prefixes(
    facts: Facts, tenant: str, peers: tuple[Peer, ...], endpoint: Endpoint, addresses: tuple[IPNetwork, ...]
) -> tuple[IPNetwork | None, ...]:
    """What the local side of a rule keeps for this interface: (None,) = any; () = not this one.

    A CIDR is kept when it holds an interface address; an endpoint name or a label selector (of
    the policy's tenant) that picks this endpoint keeps the interface's own prefixes."""
    if not peers:
        return (None,)
    found: dict[IPNetwork, None] = {}
    for peer in peers:
        if peer.cidr is not None:
            if any(a.version == peer.cidr.version and a.subnet_of(peer.cidr) for a in addresses):  # type: ignore[arg-type]
                found[peer.cidr] = None
        elif peer.endpoint == endpoint.name or (
            peer.labels is not None and facts.selects(peer.labels, tenant, endpoint)
        ):
            found.update(dict.fromkeys(addresses))
    return tuple(found)


def rule_matches(
    rule: SpecRule, local: tuple[IPNetwork | None, ...], remote: tuple[IPNetwork | None, ...], direction: str, side: dict
) -> Iterator[Match]:
    src_ports = [to_range(r) for r in rule.src_port] or [None]
    dst_ports = [to_range(r) for r in rule.dst_port] or [None]
    for local_prefix, remote_prefix in itertools.product(local, remote):
        if local_prefix is not None and remote_prefix is not None and local_prefix.version != remote_prefix.version:
            continue
        src, dst = (remote_prefix, local_prefix) if direction == "ingress" else (local_prefix, remote_prefix)
        family = (src or dst).version if (src or dst) is not None else None
        for proto, icmp_type, icmp_code in protocols(rule, family):
            for sport, dport in itertools.product(src_ports, dst_ports):
                yield Match(
                    src=src, dst=dst, proto=proto, src_ports=sport, dst_ports=dport, icmp_type=icmp_type,
                    icmp_code=icmp_code, **side,
                )


def protocols(rule: SpecRule, family: int | None) -> list[tuple[Proto | None, int | None, int | None]]:
    """(protocol, ICMP type, ICMP code) of each graph match a spec rule becomes, per family."""
    if rule.proto == "any":
        return [(None, None, None)]
    if rule.proto != "icmp":
        return [(Proto(rule.proto), None, None)]
    found: list[tuple[Proto | None, int | None, int | None]] = []
    if family in (None, 4):
        found.append((Proto.ICMP, rule.icmp_type, rule.icmp_code))
    if family in (None, 6):
        if rule.icmp_type is None:
            found.append((Proto.ICMPV6, None, None))
        elif rule.icmp_type in ICMPV6_TYPES and rule.icmp_code is None:
            found.append((Proto.ICMPV6, ICMPV6_TYPES[rule.icmp_type], None))
        elif (rule.icmp_type, rule.icmp_code) in ICMPV6_CODES:
            found.append((Proto.ICMPV6, ICMPV6_TYPES[rule.icmp_type], ICMPV6_CODES[rule.icmp_type, rule.icmp_code]))
    return found


def decide(matches: Iterable[Match], action: str, comment: str) -> list[Rule]:
    """Rules applying ``action`` (allow/drop/reject) to ``matches``."""
    rules = []
    for match in matches:
        if action == "allow":
            rules.append(Rule(match=match, action=ACCEPT, comment=comment))
        elif action == "drop":
            rules.append(Rule(match=match, action=DROP, comment=comment))
        elif match.proto is None:
            tcp = dataclasses.replace(match, proto=Proto.TCP)
            rules.append(Rule(match=tcp, action=Reject(RejectWith.TCP_RESET), comment=comment))
            rules.append(Rule(match=match, action=Reject(RejectWith.PORT_UNREACHABLE), comment=comment))
        else:
            reply = RejectWith.TCP_RESET if match.proto is Proto.TCP else RejectWith.PORT_UNREACHABLE
            rules.append(Rule(match=match, action=Reject(reply), comment=comment))
    return rules


def expand_logs(entries: list[Rule | LogMarker]) -> tuple[Rule, ...]:
    """Replace log markers by logged twins of the rules after them (see the module docstring)."""
    after: list[Rule] = []
    for entry in reversed(entries):
        if isinstance(entry, Rule):
            after.insert(0, entry)
            continue
        matches, prefix = entry
        expanded: list[Rule] = []
        for rule in after:
            for match in matches:
                both = intersect(match, rule.match)
                if both is not None:
                    log = prefix + (rule.log or "")
                    expanded.append(dataclasses.replace(rule, match=both, log=log.strip()))
            expanded.append(rule)
        after = expanded
    return tuple(after)


def intersect(a: Match, b: Match) -> Match | None:
    """The match of packets matching both ``a`` and ``b``; None when no packet can."""
    fields: dict[str, object] = {}
    for name in ("proto", "icmp_type", "icmp_code", "in_iface", "out_iface", "mark"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and x != y:
            return None
        fields[name] = x if x is not None else y
    for name in ("src", "dst"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            fields[name] = x if x is not None else y
        elif x.version != y.version:
            return None
        elif x.subnet_of(y):
            fields[name] = x
        elif y.subnet_of(x):
            fields[name] = y
        else:
            return None
    for name in ("src_ports", "dst_ports"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            fields[name] = x if x is not None else y
        elif max(x.first, y.first) > min(x.last, y.last):
            return None
        else:
            fields[name] = PortRange(max(x.first, y.first), min(x.last, y.last))
    if a.ct_states is None or b.ct_states is None:
        fields["ct_states"] = a.ct_states if a.ct_states is not None else b.ct_states
    elif not a.ct_states & b.ct_states:
        return None
    else:
        fields["ct_states"] = a.ct_states & b.ct_states
    try:
        return Match(**fields)  # type: ignore[arg-type]
    except GraphError:  # e.g. an ICMPv4 match meeting an IPv6 prefix: nothing matches both
        return None


def resolve(facts: Facts, tenant: str, peers: Iterable[Peer]) -> tuple[IPNetwork, ...]:
    """Peers -> prefixes: CIDRs as written, endpoints to all their addresses, label selectors to
    the addresses of the selected endpoints on ``tenant``'s networks. Duplicates removed."""
    found: dict[IPNetwork, None] = {}
    for peer in peers:
        if peer.cidr is not None:
            found[peer.cidr] = None
        elif peer.endpoint is not None:
            found.update(dict.fromkeys(facts.endpoint_prefixes(peer.endpoint)))
        else:
            found.update(dict.fromkeys(facts.selections[(tenant, peer.labels or ())]))
    return tuple(found)


def to_range(spec_range) -> PortRange:
    return PortRange(spec_range.first, spec_range.last)
