"""nftables backend: a namespace's ``Ruleset`` as one ``inet`` table, replaced atomically.

Contract: ``render`` turns a ``Ruleset`` into nftables JSON commands that (re)create the table in
one transaction ("add table; delete table; add table; chains; rules"), so the kernel holds either
the old table or the new one, never a mix. ``apply`` feeds them to ``nft -j -f -`` inside the
namespace (the CLI, not python3-nftables: those bindings exist only for the system Python, and the
CLI is the same libnftables). ``drift`` reads the table back and lists every difference from what
``render`` would make (missing table or chain, changed hook or policy, missing, extra or moved
rules), identified by the ``nv:<digest>`` comment on every rule; empty means in sync.

Rendering: one base chain per (table, hook) named ``filter_<hook>`` / ``nat_<hook>``; every rule
has a counter; a ``log`` prefix and ``set_mark`` come before the verdict; DNAT to several targets
picks one per flow with ``numgen random`` (client-IP affinity: the client address's low bits,
``Dnat.affinity_target``) and a verdict map to one chain per target (the way
kube-proxy's nftables mode does it).
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.nflog import LOG_GROUP
from netvirt.dataplane.kernel.rulesets import (
    Ruleset,
    low_bits,
    comment,
    digest_of,
    nat_family,
    rule_digest,
)
from netvirt.graph.rules import (
    Accept,
    Affinity,
    Chain,
    Dnat,
    Drop,
    Masquerade,
    Match,
    NetfilterHook,
    PortRange,
    Reject,
    RejectWith,
    Rule,
    Snat,
    Verdict,
)

FAMILY = "inet"
NAT_PRIORITY = {
    NetfilterHook.PREROUTING: -100,
    NetfilterHook.OUTPUT: -100,
    NetfilterHook.INPUT: 100,
    NetfilterHook.POSTROUTING: 100,
}
_PAYLOAD = {4: "ip", 6: "ip6"}
_NFPROTO = {4: "ipv4", 6: "ipv6"}


def base_chain(table: str, hook: str) -> str:
    return f"{table}_{hook}"


def _eq(left: dict, right: object, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _addr(net) -> object:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _ports(ports: PortRange) -> object:
    return ports.first if ports.first == ports.last else {"range": [ports.first, ports.last]}


def match_exprs(match: Match, family: int | None) -> list[dict]:
    """nftables expressions for ``match``; ``family`` adds ``meta nfproto`` when the match does
    not imply it (a NAT rule rewriting to one IP version)."""
    exprs = []
    if family is not None and match.family is None:
        exprs.append(_eq({"meta": {"key": "nfproto"}}, _NFPROTO[family]))
    for field, net in (("saddr", match.src), ("daddr", match.dst)):
        if net is not None:
            exprs.append(_eq({"payload": {"protocol": _PAYLOAD[net.version], "field": field}}, _addr(net)))
    if match.proto is not None:
        exprs.append(_eq({"meta": {"key": "l4proto"}}, match.proto.number))
    for field, ports in (("sport", match.src_ports), ("dport", match.dst_ports)):
        if ports is not None:
            exprs.append(_eq({"payload": {"protocol": match.proto.value, "field": field}}, _ports(ports)))
    if match.icmp_type is not None:
        exprs.append(_eq({"payload": {"protocol": match.proto.value, "field": "type"}}, match.icmp_type))
    if match.icmp_code is not None:
        exprs.append(_eq({"payload": {"protocol": match.proto.value, "field": "code"}}, match.icmp_code))
    if match.ct_states is not None:
        exprs.append(_eq({"ct": {"key": "state"}}, sorted(match.ct_states), "in"))
    if match.in_iface is not None:
        exprs.append(_eq({"meta": {"key": "iifname"}}, match.in_iface))
    if match.out_iface is not None:
        exprs.append(_eq({"meta": {"key": "oifname"}}, match.out_iface))
    if match.mark is not None:
        exprs.append(_eq({"meta": {"key": "mark"}}, match.mark))
    return exprs


def _nat_ports(ports: PortRange | None) -> dict:
    return {} if ports is None else {"port": _ports(ports)}


def _verdict(action) -> dict:
    match action:
        case Accept():
            return {"accept": None}
        case Drop():
            return {"drop": None}
        case Reject(reply=RejectWith.TCP_RESET):
            return {"reject": {"type": "tcp reset"}}
        case Reject(reply=reply):
            return {"reject": {"type": "icmpx", "expr": reply.value}}
        case Snat(address=address, ports=ports):
            return {"snat": {"family": _PAYLOAD[address.version], "addr": str(address), **_nat_ports(ports)}}
        case Masquerade(ports=ports):
            return {"masquerade": _nat_ports(ports) or None}
    raise AssertionError(f"unhandled action {action!r}")


def _dnat(target) -> dict:
    port = {} if target.port is None else {"port": target.port}
    return {"dnat": {"family": _PAYLOAD[target.address.version], "addr": str(target.address), **port}}


def render(table: str, ruleset: Ruleset) -> list[dict]:
    """The nftables JSON commands that replace ``table`` with ``ruleset`` in one transaction."""
    ref = {"family": FAMILY, "table": table}
    commands: list[dict] = [
        {"add": {"table": {"family": FAMILY, "name": table}}},
        {"delete": {"table": {"family": FAMILY, "name": table}}},
        {"add": {"table": {"family": FAMILY, "name": table}}},
    ]
    rules: list[dict] = []
    for kind, chain in ruleset.chains():
        name = base_chain(kind, chain.hook)
        prio = 0 if kind == "filter" else NAT_PRIORITY[chain.hook]
        commands.append({"add": {"chain": {**ref, "name": name, "type": kind, "hook": chain.hook.value,
                                           "prio": prio, "policy": chain.policy.value}}})
        for position, group in _groups(chain.rules):
            digests = [rule_digest(kind, chain.hook, position + i, rule) for i, rule in enumerate(group)]
            digest = digests[0] if len(group) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()[:8]
            more = f" (+{len(group) - 1} rules)" if len(group) > 1 else ""
            note = comment(digest, group[0].comment + more)
            rules.extend(_rule(ref, commands, name, position, group, note))
    return commands + rules


def _groups(rules: tuple[Rule, ...]) -> list[tuple[int, list[Rule]]]:
    """Consecutive rules that differ only in non-overlapping source prefixes of one IP version,
    as (position of the first, rules): each group becomes one rule matching a set, so 10,000
    such rules cost one lookup instead of 10,000 comparisons."""
    groups: list[tuple[int, list[Rule]]] = []
    members: set = set()  # source prefixes of the open group, as _prefix_keys
    covering: set = set()  # every prefix that contains (or is) one of them
    for position, rule in enumerate(rules, start=1):
        keys = _prefix_keys(rule.match.src)
        if groups and _same_but_source(groups[-1][1][-1], rule) and keys[-1] not in covering \
                and members.isdisjoint(keys):
            groups[-1][1].append(rule)
        else:
            groups.append((position, [rule]))
            members, covering = set(), set()
        if keys:
            members.add(keys[-1])
            covering.update(keys)
    return groups


def _prefix_keys(net) -> list[tuple[int, int, int]]:
    """(version, length, bits) of ``net`` and of every prefix containing it, shortest first."""
    if net is None:
        return []
    bits = int(net.network_address)
    return [(net.version, length, bits >> (net.max_prefixlen - length)) for length in range(net.prefixlen + 1)]


def _same_but_source(a: Rule, b: Rule) -> bool:
    if a.match.src is None or b.match.src is None or a.match.src.version != b.match.src.version:
        return False
    if isinstance(a.action, Dnat):
        return False
    return (replace(a.match, src=None), a.action, a.log, a.set_mark) == (
        replace(b.match, src=None), b.action, b.log, b.set_mark)


def _rule(ref: dict, commands: list[dict], chain: str, position: int, group: list[Rule], note: str) -> list[dict]:
    rule = group[0]
    family = nat_family(rule)
    if len(group) == 1:
        exprs = match_exprs(rule.match, family)
    else:
        sources = {"set": [_addr(member.match.src) for member in group]}
        field = {"payload": {"protocol": _PAYLOAD[rule.match.src.version], "field": "saddr"}}
        exprs = [_eq(field, sources)] + match_exprs(replace(rule.match, src=None), family)
    exprs.append({"counter": None})
    if rule.log is not None:
        exprs.append({"log": {"prefix": rule.log, "group": LOG_GROUP}})  # to netvirt's NFLOG group (nflog)
    if rule.set_mark is not None:
        exprs.append({"mangle": {"key": {"meta": {"key": "mark"}}, "value": rule.set_mark}})
    action = rule.action
    if not isinstance(action, Dnat):
        exprs.append(_verdict(action))
        return [{"add": {"rule": {**ref, "chain": chain, "expr": exprs, "comment": note}}}]
    if len(action.targets) == 1:
        exprs.append(_dnat(action.targets[0]))
        return [{"add": {"rule": {**ref, "chain": chain, "expr": exprs, "comment": note}}}]
    affinity = action.affinity is Affinity.CLIENT_IP
    # one chain per target; the base rule picks one per flow (conntrack remembers the choice)
    out = []
    arms = []
    for number, target in enumerate(action.targets):
        target_chain = f"{chain}_{position}_{number}"
        commands.append({"add": {"chain": {**ref, "name": target_chain}}})
        head = [] if rule.match.proto is None else [_eq({"meta": {"key": "l4proto"}}, rule.match.proto.number)]
        out.append({"add": {"rule": {**ref, "chain": target_chain,
                                     "expr": head + [{"counter": None}, _dnat(target)], "comment": note}}})
        arms.append([number, {"jump": {"target": target_chain}}])
    if affinity:  # source hashing on the client address's low bits (Dnat.affinity_target)
        version = action.targets[0].address.version
        buckets = action.affinity_buckets
        pick = {"&": [{"payload": {"protocol": _PAYLOAD[version], "field": "saddr"}}, low_bits(version, buckets - 1)]}
        arms = [[low_bits(version, bucket), arms[action.affinity_target(bucket)][1]] for bucket in range(buckets)]
    else:
        pick = {"numgen": {"mode": "random", "mod": len(action.targets), "offset": 0}}
    exprs.append({"vmap": {"key": pick, "data": {"set": arms}}})
    return [{"add": {"rule": {**ref, "chain": chain, "expr": exprs, "comment": note}}}] + out


def apply(namespace: str, table: str, ruleset: Ruleset) -> None:
    """Replace ``table`` in ``namespace`` with ``ruleset`` atomically (CommandFailed on error)."""
    document = {"nftables": [{"metainfo": {"json_schema_version": 1}}] + render(table, ruleset)}
    netns.run(namespace, ["nft", "-j", "-f", "-"], input=json.dumps(document).encode())


def _listing(namespace: str, argv: Sequence[str]) -> list[dict] | None:
    done = netns.run(namespace, ["nft", "-j", *argv], check=False)
    if done.returncode != 0:
        if b"No such file or directory" in done.stderr:
            return None
        raise netns.CommandFailed(namespace, ["nft", "-j", *argv], done.returncode, done.stderr.decode())
    return json.loads(done.stdout)["nftables"]


def tables(namespace: str) -> list[tuple[str, str]]:
    """(family, name) of every nftables table in ``namespace``."""
    items = _listing(namespace, ["list", "tables"]) or []
    return [(item["table"]["family"], item["table"]["name"]) for item in items if "table" in item]


def delete_table(namespace: str, table: str, family: str = FAMILY) -> bool:
    """Delete ``table`` from ``namespace``; False if it was not there."""
    if (family, table) not in tables(namespace):
        return False
    netns.run(namespace, ["nft", "delete", "table", family, table])
    return True


def _shape(items: list[dict]) -> dict[str, tuple[dict | None, list[str | None]]]:
    """chain name -> (base-chain properties or None, the digests of its rules in order)."""
    chains: dict[str, tuple[dict | None, list[str | None]]] = {}
    for item in items:
        if "chain" in item:
            chain = item["chain"]
            props = {key: chain[key] for key in ("type", "hook", "prio", "policy") if key in chain} or None
            chains[chain["name"]] = (props, [])
    for item in items:
        if "rule" in item:
            rule = item["rule"]
            chains.setdefault(rule["chain"], (None, []))[1].append(digest_of(rule.get("comment")))
    return chains


def drift(namespace: str, table: str, ruleset: Ruleset) -> list[str]:
    """How ``table`` in ``namespace`` differs from ``ruleset`` (empty: exactly in place)."""
    items = _listing(namespace, ["list", "table", FAMILY, table])
    if items is None:
        return [f"nftables table {FAMILY} {table} is missing in {namespace}"]
    want = _shape([command["add"] for command in render(table, ruleset)[3:]])
    have = _shape(items)
    problems = []
    for name in sorted(set(want) | set(have)):
        where = f"{namespace} nft {table} chain {name}"
        if name not in have:
            problems.append(f"{where} is missing")
        elif name not in want:
            problems.append(f"{where} is not netvirt's (unexpected chain)")
        elif want[name][0] != have[name][0]:
            problems.append(f"{where}: hook/policy {have[name][0]} instead of {want[name][0]}")
        elif want[name][1] != have[name][1]:
            problems.append(f"{where}: rules {_brief(have[name][1])} instead of {_brief(want[name][1])}")
    return problems


def _brief(digests: list[str | None]) -> str:
    return "[" + ", ".join(d or "foreign" for d in digests) + "]" if digests else "[] (flushed)"


def read_table(namespace: str, table: str) -> list[dict] | None:
    """The JSON items of ``table`` in ``namespace`` (None: there is no such table)."""
    return _listing(namespace, ["list", "table", FAMILY, table])


def realized(namespace: str, table: str, ruleset: Ruleset) -> Ruleset:
    """The part of ``ruleset`` that is in place in ``namespace``, read back: each chain that
    exists (with the kernel's policy) holding the rules whose ``nv:`` digest is found in it, in
    ruleset order. What cannot be identified (foreign or re-ordered rules) only ``drift`` tells."""
    return realized_in(read_table(namespace, table), ruleset)


def realized_in(items: list[dict] | None, ruleset: Ruleset) -> Ruleset:
    """``realized`` over a table already read (``read_table``)."""
    if items is None:
        return Ruleset()
    have = _shape(items)
    found: dict[str, list[Chain]] = {"filter": [], "nat": []}
    for kind, chain in ruleset.chains():
        name = base_chain(kind, chain.hook)
        if name not in have or have[name][0] is None:
            continue
        present = set(have[name][1])
        rules = []
        for position, group in _groups(chain.rules):
            digests = [rule_digest(kind, chain.hook, position + i, rule) for i, rule in enumerate(group)]
            digest = digests[0] if len(group) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()[:8]
            if digest in present:
                rules.extend(group)
        policy = Verdict(have[name][0].get("policy", "accept"))
        found[kind].append(Chain(hook=chain.hook, rules=tuple(rules), policy=policy))
    return Ruleset(filter=tuple(found["filter"]), nat=tuple(found["nat"]))


# --- drop lists (spec hosts[].drop_from) at the netdev ingress hook ------------------------------

DROP_LIST_FAMILY = "netdev"
DROP_LIST_PRIORITY = -500  # before every other ingress chain


def drop_list_table(table: str, device: str) -> str:
    """The netdev table holding ``device``'s drop list (a netdev base chain binds one device)."""
    return f"{table}_drop_{device.replace('-', '_').replace('.', '_')}"


def render_drop_list(table: str, device: str, prefixes: Sequence) -> str:
    """``nft -f`` text replacing ``table`` with an ingress chain on ``device`` that drops (and
    counts) packets from ``prefixes``; nothing else is touched."""
    lines = [f"table {DROP_LIST_FAMILY} {table}", f"delete table {DROP_LIST_FAMILY} {table}",
             f"table {DROP_LIST_FAMILY} {table} {{", "  chain ingress {",
             f'    type filter hook ingress device "{device}" priority {DROP_LIST_PRIORITY}; policy accept;']
    for version, keyword in ((4, "ip"), (6, "ip6")):
        listed = [str(net) for net in prefixes if net.version == version]
        if listed:
            lines.append(f"    {keyword} saddr {{ {', '.join(listed)} }} counter drop")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def apply_drop_list(namespace: str, table: str, device: str, prefixes: Sequence) -> None:
    netns.run(namespace, ["nft", "-f", "-"], input=render_drop_list(table, device, prefixes).encode())


def drop_list_in_place(namespace: str, table: str) -> bool:
    return (DROP_LIST_FAMILY, table) in tables(namespace)
