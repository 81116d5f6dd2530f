"""What the kernel filter backends accept: a namespace's filter and NAT chains, checked up front.

Contract: ``Ruleset(filter, nat)`` holds the graph's ``Chain``s (netvirt.graph.rules) of one
namespace; construction raises ``RulesetError`` for anything nftables or iptables could not
express the same way, naming the chain and rule, so nothing is half-applied. Both backends render
the same ``Ruleset``; every rendered rule carries a comment ``nv:<digest> <rule comment>`` whose
digest identifies (table, hook, position, rule): reading the comments back tells exactly which
rules are in place, which is how drift (a flushed ruleset, a deleted rule) is detected.
"""

import hashlib
import ipaddress
from dataclasses import dataclass

from netvirt.graph.codec import to_json
from netvirt.graph.rules import (
    FILTER_ACTIONS,
    NAT_ACTIONS_BY_HOOK,
    PORT_PROTOS,
    Affinity,
    Chain,
    Dnat,
    NetfilterHook,
    Proto,
    Reject,
    RejectWith,
    Rule,
    Snat,
    Verdict,
)

FILTER_HOOKS = (NetfilterHook.INPUT, NetfilterHook.FORWARD, NetfilterHook.OUTPUT)
COMMENT_MARK = "nv:"


class RulesetError(ValueError):
    """A rule the kernel backends cannot realise; says which chain and rule, and what to change."""


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The ``filter`` and ``nat`` chains of one namespace (at most one chain per hook each)."""

    filter: tuple[Chain, ...] = ()
    nat: tuple[Chain, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "filter", tuple(self.filter))
        object.__setattr__(self, "nat", tuple(self.nat))
        for table, chains in (("filter", self.filter), ("nat", self.nat)):
            hooks = [chain.hook for chain in chains]
            for hook in set(hooks):
                if hooks.count(hook) > 1:
                    raise RulesetError(f"{table} {hook}: more than one chain; merge them into one")
            for chain in chains:
                _check_chain(table, chain)

    def netfilter_problem(self) -> str | None:
        """What nftables and iptables cannot realise in this ruleset that eBPF can (None: nothing)."""
        for table, chain in self.chains():
            for index, rule in enumerate(chain.rules):
                if isinstance(rule.action, Dnat) and rule.action.affinity is not Affinity.NONE and rule.match.src:
                    return (f"{table} {chain.hook} rule {index} ({rule.comment}): dnat with client-IP affinity picks "
                            "by the source address (its low bits), so the match may not name a source too; drop the "
                            "match's src or the affinity, or use the ebpf or sim backend")
        return None

    def chains(self) -> list[tuple[str, Chain]]:
        """(table, chain) pairs: filter chains first, then NAT chains."""
        return [("filter", c) for c in self.filter] + [("nat", c) for c in self.nat]


def _check_chain(table: str, chain: Chain) -> None:
    where = f"{table} {chain.hook}"
    if table == "filter":
        if chain.hook not in FILTER_HOOKS:
            raise RulesetError(f"{where}: filter chains run at input, forward or output")
        allowed: tuple[type, ...] = FILTER_ACTIONS
    else:
        if chain.hook not in NAT_ACTIONS_BY_HOOK:
            raise RulesetError(f"{where}: NAT chains run at prerouting, input, output or postrouting")
        if chain.policy is not Verdict.ACCEPT:
            raise RulesetError(f"{where}: a NAT chain's policy must be accept (filter chains drop)")
        allowed = NAT_ACTIONS_BY_HOOK[chain.hook]
    for position, rule in enumerate(chain.rules, start=1):
        rule_where = f"{where} rule {position}" + (f" ({rule.comment})" if rule.comment else "")
        if not isinstance(rule.action, allowed):
            names = ", ".join(cls.__name__ for cls in allowed)
            raise RulesetError(f"{rule_where}: {type(rule.action).__name__} is not allowed here; use {names}")
        _check_rule(rule_where, rule)


def _check_rule(where: str, rule: Rule) -> None:
    action, match = rule.action, rule.match
    ports = getattr(action, "ports", None)
    if isinstance(action, Dnat):
        ports = any(target.port is not None for target in action.targets)
        if match.family is not None and match.family != action.targets[0].address.version:
            raise RulesetError(f"{where}: IPv{match.family} match with IPv{action.targets[0].address.version} targets")
    if isinstance(action, Snat) and match.family not in (None, action.address.version):
        raise RulesetError(f"{where}: IPv{match.family} match with IPv{action.address.version} snat address")
    if ports and match.proto not in PORT_PROTOS:
        raise RulesetError(f"{where}: NAT to a port needs the match to name proto tcp or udp")
    if isinstance(action, Reject) and action.reply is RejectWith.TCP_RESET and match.proto is not Proto.TCP:
        raise RulesetError(f"{where}: reject with tcp-reset needs the match to name proto tcp")


def low_bits(version: int, value: int) -> str:
    """An address whose last byte is ``value`` (0.0.0.V or ::V): the mask and bucket values of
    client-IP affinity's source hashing (``Dnat.affinity_target``) in both filter backends."""
    return str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def nat_family(rule: Rule) -> int | None:
    """The IP version a NAT action rewrites to (None for non-NAT actions and masquerade)."""
    if isinstance(rule.action, Dnat):
        return rule.action.targets[0].address.version
    if isinstance(rule.action, Snat):
        return rule.action.address.version
    return None


def rule_family(rule: Rule) -> int | None:
    """The only IP version ``rule`` can apply to, or None when it applies to both."""
    return rule.match.family or nat_family(rule)


def rule_digest(table: str, hook: str, position: int, rule: Rule) -> str:
    """8 hex digits identifying ``rule`` at ``position`` of ``table``/``hook`` (from the rule's
    canonical JSON: the same in every process, whatever the order of its sets)."""
    text = f"{table}/{hook}/{position}/{to_json(rule)}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def policy_digest(table: str, chain: Chain) -> str:
    """8 hex digits identifying the policy of ``chain`` (for backends that spell it as a rule)."""
    return hashlib.sha256(f"{table}/{chain.hook}/policy/{chain.policy}".encode()).hexdigest()[:8]


def comment(digest: str, text: str) -> str:
    """The comment carried by a rendered rule: the mark, the digest, then the rule's own text
    (printable ASCII without quotes or backslashes, cut to fit both backends)."""
    clean = "".join(c if c.isprintable() and c.isascii() and c not in "\"'\\" else " " for c in text)
    return f"{COMMENT_MARK}{digest} {clean}".strip()[:100]


def digest_of(comment_text: str | None) -> str | None:
    """The digest inside a rendered rule's comment, or None when it is not netvirt's."""
    if not comment_text or not comment_text.startswith(COMMENT_MARK):
        return None
    return comment_text[len(COMMENT_MARK):].split(" ", 1)[0]
