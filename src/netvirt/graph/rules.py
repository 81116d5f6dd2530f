"""Packet filtering and NAT rules as data: ``Rule(match, action)`` in ordered ``Chain`` lists.

Contract: the vocabulary is small and closed so that one rule list compiles unchanged to the
simulator's classifiers, nftables, iptables and eBPF maps (docs/graph.md, "Rules"):

- ``Match``: every field is optional (``None`` = any); all given fields must hold (logical AND).
  Prefixes imply the address family; ports need ``proto`` tcp or udp; ``icmp_type`` needs
  icmp or icmpv6, ``icmp_code`` an ``icmp_type``; ``ct_states`` is a set (the packet's state must
  be in it).
- Actions are terminal: ``Accept``, ``Drop``, ``Reject`` (filter chains); ``Dnat`` (one of several
  targets, optionally with client-IP affinity), ``Snat``, ``Masquerade`` and ``Accept`` (= leave the
  packet un-NATed) in NAT chains. There is no jump: the control plane emits flat chains.
- Statements that do not end evaluation are rule attributes: ``log`` (a prefix) and ``set_mark``.
- A chain is evaluated first match wins (iptables semantics); no match -> the chain's policy.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from netvirt.graph.values import (
    GraphError,
    IPAddress,
    IPNetwork,
    check_range,
    freeze_collections,
)
from netvirt.wire import ipv4


class Proto(StrEnum):
    """IP protocols a rule can name; ``number`` is the IP protocol / IPv6 next-header value."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ICMPV6 = "icmpv6"
    GRE = "gre"

    @property
    def number(self) -> int:
        return _PROTO_NUMBERS[self]


_PROTO_NUMBERS = {Proto.TCP: ipv4.TCP, Proto.UDP: ipv4.UDP, Proto.ICMP: ipv4.ICMP, Proto.ICMPV6: ipv4.ICMPV6,
                  Proto.GRE: ipv4.GRE}
PORT_PROTOS = frozenset({Proto.TCP, Proto.UDP})
ICMP_PROTOS = frozenset({Proto.ICMP, Proto.ICMPV6})


class CtState(StrEnum):
    """Connection-tracking state of a packet (netfilter's ctstate)."""

    NEW = "new"
    ESTABLISHED = "established"
    RELATED = "related"
    INVALID = "invalid"
    UNTRACKED = "untracked"


class NetfilterHook(StrEnum):
    """The five netfilter hooks of a namespace, in the kernel's order of traversal."""

    PREROUTING = "prerouting"
    INPUT = "input"
    FORWARD = "forward"
    OUTPUT = "output"
    POSTROUTING = "postrouting"


class Verdict(StrEnum):
    """A chain's policy: what happens to a packet no rule matched."""

    ACCEPT = "accept"
    DROP = "drop"


class RejectWith(StrEnum):
    """The error a ``Reject`` sends back (ICMPv6 equivalents are used for IPv6 packets)."""

    PORT_UNREACHABLE = "port-unreachable"
    HOST_UNREACHABLE = "host-unreachable"
    ADMIN_PROHIBITED = "admin-prohibited"
    TCP_RESET = "tcp-reset"


class Affinity(StrEnum):
    """DNAT backend stickiness: none (per-flow choice) or the same backend per client address."""

    NONE = "none"
    CLIENT_IP = "client-ip"


@dataclass(frozen=True, slots=True)
class PortRange:
    """Ports ``first..last`` inclusive; a single port is ``PortRange(80, 80)``."""

    first: int
    last: int

    def __post_init__(self) -> None:
        check_range(self.first, 0, 65535, "port range first")
        check_range(self.last, self.first, 65535, lambda: f"port range {self.first}..last")

    @classmethod
    def single(cls, port: int) -> "PortRange":
        return cls(port, port)

    def __contains__(self, port: int) -> bool:
        return self.first <= port <= self.last


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """What a rule matches; ``None`` fields match anything. See the module docstring for rules."""

    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    proto: Proto | None = None
    src_ports: PortRange | None = None
    dst_ports: PortRange | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    ct_states: frozenset[CtState] | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    mark: int | None = None

    def __post_init__(self) -> None:
        if self.ct_states is not None:
            object.__setattr__(self, "ct_states", frozenset(self.ct_states))
            if not self.ct_states:
                raise GraphError("match ct_states: an empty set never matches; use None for any")
        if (self.src_ports or self.dst_ports) and self.proto not in PORT_PROTOS:
            raise GraphError(f"match ports need proto tcp or udp, got proto {self.proto}")
        if self.icmp_type is not None:
            if self.proto not in ICMP_PROTOS:
                raise GraphError(f"match icmp_type needs proto icmp or icmpv6, got proto {self.proto}")
            check_range(self.icmp_type, 0, 255, "match icmp_type")
        if self.icmp_code is not None:
            if self.icmp_type is None:
                raise GraphError(f"match icmp_code {self.icmp_code} needs an icmp_type")
            check_range(self.icmp_code, 0, 255, "match icmp_code")
        if self.mark is not None:
            check_range(self.mark, 0, 0xFFFFFFFF, "match mark")
        families = {net.version for net in (self.src, self.dst) if net is not None}
        if self.proto is Proto.ICMP:
            families.add(4)
        elif self.proto is Proto.ICMPV6:
            families.add(6)
        if len(families) > 1:
            raise GraphError(f"match mixes IPv4 and IPv6 ({self.src}, {self.dst}, proto {self.proto})")

    @property
    def family(self) -> int | None:
        """4 or 6 when the match only applies to that IP version, else None (both)."""
        for net in (self.src, self.dst):
            if net is not None:
                return net.version
        return {Proto.ICMP: 4, Proto.ICMPV6: 6}.get(self.proto)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Accept:
    """Let the packet pass this chain (in a NAT chain: leave it un-NATed)."""

    tag: ClassVar[str] = "accept"


@dataclass(frozen=True, slots=True)
class Drop:
    """Discard the packet silently."""

    tag: ClassVar[str] = "drop"


@dataclass(frozen=True, slots=True)
class Reject:
    """Discard the packet and tell the sender (ICMP error or TCP RST)."""

    reply: RejectWith = RejectWith.PORT_UNREACHABLE
    tag: ClassVar[str] = "reject"


@dataclass(frozen=True, slots=True)
class NatTarget:
    """A DNAT destination: an address and, optionally, a new destination port."""

    address: IPAddress
    port: int | None = None

    def __post_init__(self) -> None:
        if self.port is not None:
            check_range(self.port, 1, 65535, lambda: f"nat target {self.address} port")


@dataclass(frozen=True, slots=True, kw_only=True)
class Dnat:
    """Rewrite the destination to one of ``targets`` (a service's backends).

    The choice is per flow (conntrack keeps it); with ``Affinity.CLIENT_IP`` a client keeps its
    backend: source hashing (IPVS's ``sh``) on the low bits of the client address, the same in the
    simulator and every rule target (``affinity_buckets``, ``affinity_target``), so predictions
    hold. ``affinity_timeout`` is kept for the spec's sake (Kubernetes sessionAffinity: ClientIP);
    a hash never forgets, so it does not expire.
    """

    targets: tuple[NatTarget, ...]
    affinity: Affinity = Affinity.NONE
    affinity_timeout: int = 10800
    tag: ClassVar[str] = "dnat"

    def __post_init__(self) -> None:
        freeze_collections(self)
        if not self.targets:
            raise GraphError("dnat needs at least one target")
        if len({t.address.version for t in self.targets}) > 1:
            raise GraphError("dnat targets mix IPv4 and IPv6")
        check_range(self.affinity_timeout, 1, 86400 * 7, "dnat affinity_timeout")

    @property
    def affinity_buckets(self) -> int:
        """How many values of the client address's low bits client-IP affinity maps: a power of
        two, at least 4 per target (so the buckets spread evenly enough), at most 256."""
        buckets = 1
        while buckets < 4 * len(self.targets) and buckets < 256:
            buckets *= 2
        return buckets

    def affinity_target(self, bucket: int) -> int:
        """The index of the target that clients whose address ends in ``bucket`` get."""
        return bucket % len(self.targets)


@dataclass(frozen=True, slots=True)
class Snat:
    """Rewrite the source address (and optionally pick the source port from ``ports``)."""

    address: IPAddress
    ports: PortRange | None = None
    tag: ClassVar[str] = "snat"


@dataclass(frozen=True, slots=True)
class Masquerade:
    """SNAT to the primary address of the outgoing interface."""

    ports: PortRange | None = None
    tag: ClassVar[str] = "masquerade"


Action = Accept | Drop | Reject | Dnat | Snat | Masquerade
FILTER_ACTIONS = (Accept, Drop, Reject)
HOOK_ACTIONS = (Accept, Drop, Reject, Dnat, Snat)  # an XDP/tc program filters, or NATs statelessly (eBPF LB)
NAT_ACTIONS_BY_HOOK: dict[NetfilterHook, tuple[type, ...]] = {
    NetfilterHook.PREROUTING: (Accept, Dnat),
    NetfilterHook.OUTPUT: (Accept, Dnat),
    NetfilterHook.INPUT: (Accept, Snat),
    NetfilterHook.POSTROUTING: (Accept, Snat, Masquerade),
}
ACCEPT = Accept()
DROP = Drop()


def policy_action(policy: Verdict) -> Accept | Drop:
    """The action a chain's policy stands for."""
    return ACCEPT if policy is Verdict.ACCEPT else DROP


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """``match`` -> ``action``; ``log`` (a prefix) and ``set_mark`` apply when the rule matches.

    ``comment`` names the rule for people (traces say which rule dropped a packet), e.g.
    ``"policy deny-db: ingress rule 2"``.
    """

    match: Match = Match()
    action: Action
    log: str | None = None
    set_mark: int | None = None
    comment: str = ""

    def __post_init__(self) -> None:
        if self.set_mark is not None:
            check_range(self.set_mark, 0, 0xFFFFFFFF, "rule set_mark")


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """The ordered rules a namespace runs at one netfilter hook, and the policy if none matches."""

    hook: NetfilterHook
    rules: tuple[Rule, ...] = ()
    policy: Verdict = Verdict.ACCEPT

    def __post_init__(self) -> None:
        freeze_collections(self)
