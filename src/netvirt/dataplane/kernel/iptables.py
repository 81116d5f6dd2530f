"""iptables backend: the same ``Ruleset`` as the nftables backend, as ``NV-*`` chains.

Contract: for each IP version (iptables / ip6tables) and table (filter, nat), every chain of the
ruleset becomes the chain ``names.ipt_chain(hook)`` (``NV-<digest>-FORWARD``), entered by one jump
rule at the top of the built-in chain. ``apply`` reads the current state (``iptables-save``) and
feeds one ``iptables-restore --noflush`` document per version that re-declares (= flushes) and
refills netvirt's chains, adds missing jumps and removes chains of this deployment that the
ruleset no longer has; each table's section commits atomically and nothing else in the namespace
is touched. ``drift`` compares the ``nv:<digest>`` comments read back with what ``render`` makes.

Differences from nftables, by construction of iptables: a chain's drop policy is a final
``-j DROP`` rule (built-in policies stay untouched); ``log`` and ``set_mark`` are separate NFLOG
(netvirt's group, ``nflog.LOG_GROUP``) and MARK rules before the verdict rule (prefixes are cut to
NFLOG's 63 characters); DNAT to n
targets is n rules using ``statistic --mode random`` with probabilities 1/n, 1/(n-1), ..., 1.
Rules that name one IP version go only to that version's tool; the others go to both.
The ``iptables`` found on PATH is used; ``flavour()`` says whether it is nf_tables or legacy.
"""

import functools
import shlex
import subprocess
from dataclasses import dataclass, field

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.nflog import LOG_GROUP
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.rulesets import (
    Ruleset,
    low_bits,
    comment,
    digest_of,
    policy_digest,
    rule_digest,
    rule_family,
)
from netvirt.graph.rules import (
    Accept,
    Affinity,
    Chain,
    Dnat,
    Drop,
    Masquerade,
    Match,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Snat,
    Verdict,
)

TABLES = ("filter", "nat")
_SAVE = {4: "iptables-save", 6: "ip6tables-save"}
_RESTORE = {4: "iptables-restore", 6: "ip6tables-restore"}
_PROTO = {Proto.TCP: "tcp", Proto.UDP: "udp", Proto.ICMP: "icmp", Proto.ICMPV6: "ipv6-icmp", Proto.GRE: "47"}
_REJECT = {
    4: {
        RejectWith.PORT_UNREACHABLE: "icmp-port-unreachable",
        RejectWith.HOST_UNREACHABLE: "icmp-host-unreachable",
        RejectWith.ADMIN_PROHIBITED: "icmp-admin-prohibited",
        RejectWith.TCP_RESET: "tcp-reset",
    },
    6: {
        RejectWith.PORT_UNREACHABLE: "icmp6-port-unreachable",
        RejectWith.HOST_UNREACHABLE: "icmp6-addr-unreachable",
        RejectWith.ADMIN_PROHIBITED: "icmp6-adm-prohibited",
        RejectWith.TCP_RESET: "tcp-reset",
    },
}
LOG_PREFIX_MAX = 63  # NFLOG's prefix: 64 bytes with the terminating NUL


@functools.cache
def flavour() -> str:
    """``"nf_tables"`` or ``"legacy"``: which kernel interface the installed iptables uses."""
    done = subprocess.run(["iptables", "--version"], capture_output=True, check=True)
    return "legacy" if "legacy" in done.stdout.decode() else "nf_tables"


@dataclass
class Saved:
    """One IP version's iptables state: table -> chain -> rule specs (``iptables-save`` lines)."""

    tables: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    policies: dict[tuple[str, str], str] = field(default_factory=dict)  # built-in chains only

    def rules(self, table: str, chain: str) -> list[str]:
        return self.tables.get(table, {}).get(chain, [])

    def chains(self, table: str) -> set[str]:
        return set(self.tables.get(table, {}))


def parse_save(text: str) -> Saved:
    """Parse ``iptables-save`` output."""
    saved = Saved()
    table: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:]
            table = saved.tables.setdefault(current, {})
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            table.setdefault(chain, [])
            if policy != "-":
                saved.policies[(current, chain)] = policy
        elif line.startswith("-A "):
            chain = line.split()[1]
            table.setdefault(chain, []).append(line)
    return saved


def read(namespace: str, version: int) -> Saved:
    """The current iptables (4) or ip6tables (6) state of ``namespace``."""
    return parse_save(netns.run(namespace, [_SAVE[version]]).stdout.decode())


def comment_of(line: str) -> str | None:
    words = shlex.split(line)
    for here, word in enumerate(words[:-1]):
        if word == "--comment":
            return words[here + 1]
    return None


def _target_of(line: str) -> str | None:
    words = line.split()
    return words[words.index("-j") + 1] if "-j" in words else None


def _ports(ports: PortRange) -> str:
    return str(ports.first) if ports.first == ports.last else f"{ports.first}:{ports.last}"


def match_args(match: Match, version: int) -> list[str]:
    """iptables arguments for ``match`` (for a rule known to apply to IP ``version``)."""
    args = []
    if match.src is not None:
        args += ["-s", str(match.src)]
    if match.dst is not None:
        args += ["-d", str(match.dst)]
    if match.in_iface is not None:
        args += ["-i", match.in_iface]
    if match.out_iface is not None:
        args += ["-o", match.out_iface]
    if match.proto is not None:
        args += ["-p", _PROTO[match.proto]]
    if match.src_ports is not None:
        args += ["--sport", _ports(match.src_ports)]
    if match.dst_ports is not None:
        args += ["--dport", _ports(match.dst_ports)]
    if match.icmp_type is not None:
        icmp = str(match.icmp_type) if match.icmp_code is None else f"{match.icmp_type}/{match.icmp_code}"
        args += ["--icmp-type" if version == 4 else "--icmpv6-type", icmp]
    if match.ct_states is not None:
        args += ["-m", "conntrack", "--ctstate", ",".join(sorted(s.value.upper() for s in match.ct_states))]
    if match.mark is not None:
        args += ["-m", "mark", "--mark", str(match.mark)]
    return args


def _nat_address(address, port: str | None) -> str:
    host = str(address) if address.version == 4 or port is None else f"[{address}]"
    return host if port is None else f"{host}:{port}"


def _targets(action, version: int) -> list[list[str]]:
    """The target arguments of the rule(s) one action becomes."""
    match action:
        case Accept():
            return [["-j", "ACCEPT"]]
        case Drop():
            return [["-j", "DROP"]]
        case Reject(reply=reply):
            return [["-j", "REJECT", "--reject-with", _REJECT[version][reply]]]
        case Snat(address=address, ports=ports):
            port = None if ports is None else f"{ports.first}-{ports.last}"
            return [["-j", "SNAT", "--to-source", _nat_address(address, port)]]
        case Masquerade(ports=ports):
            return [["-j", "MASQUERADE"] + ([] if ports is None else ["--to-ports", f"{ports.first}-{ports.last}"])]
        case Dnat(targets=targets, affinity=Affinity.CLIENT_IP) if len(targets) > 1:
            # source hashing on the client address's low bits (Dnat.affinity_target): one rule per
            # bucket, the source matched under a non-contiguous mask (-s 0.0.0.B/0.0.0.M)
            mask = low_bits(version, action.affinity_buckets - 1)
            out = []
            for bucket in range(action.affinity_buckets):
                target = targets[action.affinity_target(bucket)]
                port = None if target.port is None else str(target.port)
                out.append(["-s", f"{low_bits(version, bucket)}/{mask}", "-j", "DNAT", "--to-destination",
                            _nat_address(target.address, port)])
            return out
        case Dnat(targets=targets):
            out = []
            for number, target in enumerate(targets):
                port = None if target.port is None else str(target.port)
                left = len(targets) - number
                pick = [] if left == 1 else ["-m", "statistic", "--mode", "random", "--probability", f"{1 / left:.10f}"]
                out.append(pick + ["-j", "DNAT", "--to-destination", _nat_address(target.address, port)])
            return out
    raise AssertionError(f"unhandled action {action!r}")


def _quote(words: list[str]) -> str:
    """One iptables-restore line: words with spaces in double quotes (its only quoting)."""
    return " ".join(f'"{word}"' if not word or " " in word else word for word in words)


def chain_lines(name: str, table: str, chain: Chain, version: int) -> list[str]:
    """The ``-A`` lines that fill chain ``name`` with ``chain``'s rules for IP ``version``."""
    lines = []
    for position, rule in enumerate(chain.rules, start=1):
        if rule_family(rule) not in (None, version):
            continue
        head = ["-A", name] + match_args(rule.match, version)
        note = ["-m", "comment", "--comment", comment(rule_digest(table, chain.hook, position, rule), rule.comment)]
        if rule.log is not None:
            lines.append(_quote(head + note + ["-j", "NFLOG", "--nflog-group", str(LOG_GROUP), "--nflog-prefix",
                                               rule.log.replace('"', "")[:LOG_PREFIX_MAX]]))
        if rule.set_mark is not None:
            lines.append(_quote(head + note + ["-j", "MARK", "--set-mark", str(rule.set_mark)]))
        lines += [_quote(head + note + target) for target in _targets(rule.action, version)]
    if chain.policy is Verdict.DROP:
        note = ["-m", "comment", "--comment", comment(policy_digest(table, chain), "policy drop")]
        lines.append(_quote(["-A", name] + note + ["-j", "DROP"]))
    return lines


def _wanted(names: Names, ruleset: Ruleset, table: str) -> dict[str, Chain]:
    """Built-in chain (INPUT, ...) -> the ruleset's chain there, for ``table``."""
    return {chain.hook.upper(): chain for kind, chain in ruleset.chains() if kind == table}


def render(names: Names, ruleset: Ruleset, version: int, current: Saved) -> str:
    """The ``iptables-restore --noflush`` document taking ``current`` to ``ruleset``."""
    out = []
    prefix = names.ipt_chain_prefix
    for table in TABLES:
        wanted = _wanted(names, ruleset, table)
        ours = {names.ipt_chain(hook): hook for hook in wanted}
        stale = sorted(c for c in current.chains(table) if c.startswith(prefix) and c not in ours)
        if not wanted and not stale:
            continue
        lines = [f":{name} - [0:0]" for name in list(ours) + stale]
        for name, hook in ours.items():
            lines += chain_lines(name, table, wanted[hook], version)
            if not any(_target_of(line) == name for line in current.rules(table, hook)):
                lines.append(_quote(["-I", hook, "1", "-m", "comment", "--comment", f"netvirt {names.deployment}",
                                     "-j", name]))
        for name in stale:
            lines += _unhook(current, table, name)
            lines.append(f"-X {name}")
        out += [f"*{table}", *lines, "COMMIT"]
    return "\n".join(out) + "\n" if out else ""


def _unhook(current: Saved, table: str, name: str) -> list[str]:
    """``-D`` lines removing every rule of ``table`` that jumps to chain ``name``."""
    return [
        "-D" + line[2:]
        for chain, lines in current.tables.get(table, {}).items()
        for line in lines
        if _target_of(line) == name
    ]


def apply(namespace: str, names: Names, ruleset: Ruleset) -> None:
    """Make ``ruleset`` the content of this deployment's chains in ``namespace`` (both versions)."""
    for version in (4, 6):
        document = render(names, ruleset, version, read(namespace, version))
        if document:
            netns.run(namespace, [_RESTORE[version], "--noflush"], input=document.encode())


def remove_chain(namespace: str, version: int, table: str, name: str) -> bool:
    """Remove chain ``name`` and the jumps to it; False if it was not there."""
    current = read(namespace, version)
    if name not in current.chains(table):
        return False
    lines = [f"*{table}", f":{name} - [0:0]", *_unhook(current, table, name), f"-X {name}", "COMMIT"]
    netns.run(namespace, [_RESTORE[version], "--noflush"], input=("\n".join(lines) + "\n").encode())
    return True


def remove_table_if_untouched(namespace: str, version: int, table: str) -> bool:
    """Delete iptables-nft table ``table`` if it holds only empty built-in chains with policy
    ACCEPT (what iptables-nft creates on first use); False if absent or in use."""
    current = read(namespace, version)
    chains = current.tables.get(table)
    if chains is None or flavour() != "nf_tables":
        return False
    untouched = all(
        not rules and current.policies.get((table, chain)) == "ACCEPT" for chain, rules in chains.items()
    )
    if untouched:
        netns.run(namespace, ["nft", "delete", "table", "ip" if version == 4 else "ip6", table])
    return untouched


def _shape(saved: Saved, table: str, chains: dict[str, str]) -> dict[str, object]:
    shape: dict[str, object] = {}
    for name, hook in chains.items():
        if name not in saved.chains(table):
            shape[name] = None
            continue
        hooked = any(_target_of(line) == name for line in saved.rules(table, hook))
        shape[name] = (hooked, [digest_of(comment_of(line)) for line in saved.rules(table, name)])
    return shape


def drift(namespace: str, names: Names, ruleset: Ruleset) -> list[str]:
    """How this deployment's chains in ``namespace`` differ from ``ruleset`` (empty: in sync)."""
    problems = []
    for version in (4, 6):
        have = read(namespace, version)
        for table in TABLES:
            wanted = _wanted(names, ruleset, table)
            chains = {names.ipt_chain(hook): hook for hook in wanted}
            expected = Saved({table: {name: chain_lines(name, table, wanted[hook], version)
                                      for name, hook in chains.items()}})
            for name, hook in chains.items():
                expected.tables[table].setdefault(hook, []).append(f"-A {hook} -j {name}")
            want, got = _shape(expected, table, chains), _shape(have, table, chains)
            tool = "iptables" if version == 4 else "ip6tables"
            for name in chains:
                where = f"{namespace} {tool} {table} chain {name}"
                if got[name] is None:
                    problems.append(f"{where} is missing")
                elif not got[name][0]:
                    problems.append(f"{where} is not jumped to from {chains[name]}")
                elif got[name][1] != want[name][1]:
                    problems.append(f"{where}: rules {got[name][1] or '[] (flushed)'} instead of {want[name][1]}")
            prefix = names.ipt_chain_prefix
            for name in sorted(c for c in have.chains(table) if c.startswith(prefix) and c not in chains):
                problems.append(f"{namespace} {tool} {table} chain {name} is left over (not in the ruleset)")
    return problems


def realized(namespace: str, names: Names, ruleset: Ruleset) -> Ruleset:
    """The part of ``ruleset`` in place in ``namespace``, read back like ``nftables.realized``:
    each chain that exists and is jumped to, holding the rules whose ``nv:`` digest is found in
    every IP version's chain the rule belongs to; the policy is drop when its rule is there."""
    saved = {version: read(namespace, version) for version in (4, 6)}
    found: dict[str, list[Chain]] = {"filter": [], "nat": []}
    for table, chain in ruleset.chains():
        name, hook = names.ipt_chain(chain.hook), chain.hook.upper()
        present = {}
        for version, have in saved.items():
            if name in have.chains(table) and any(_target_of(line) == name for line in have.rules(table, hook)):
                present[version] = {digest_of(comment_of(line)) for line in have.rules(table, name)}
        if len(present) < 2:
            continue
        rules = tuple(
            rule for position, rule in enumerate(chain.rules, start=1)
            if all(rule_digest(table, chain.hook, position, rule) in present[version]
                   for version in (4, 6) if rule_family(rule) in (None, version))
        )
        dropping = all(policy_digest(table, chain) in digests for digests in present.values())
        policy = Verdict.DROP if chain.policy is Verdict.DROP and dropping else Verdict.ACCEPT
        found[table].append(Chain(hook=chain.hook, rules=rules, policy=policy))
    return Ruleset(filter=tuple(found["filter"]), nat=tuple(found["nat"]))
