"""Connection tracking and NAT bindings, and chain lookups, as the Linux netfilter does them.

Contract: one table per (host, namespace, conntrack zone). A packet's first hook in a namespace
(prerouting, or output for local packets) *tracks* it: an existing entry gives ESTABLISHED (a
reply, or an original packet once a reply was seen) or NEW (no reply yet); an ICMP error quoting
a tracked flow is RELATED; anything else starts a tentative NEW entry. NAT chains are consulted
for NEW packets only: DNAT at prerouting/output rewrites the entry's reply source, SNAT and
masquerade at postrouting/input its reply destination. Every later packet of the flow, in either
direction, is translated from the entry alone. An entry is *confirmed* (stored) when its first
packet leaves the namespace or is delivered in it, as the kernel's ``nf_conntrack_confirm``.
"""

from dataclasses import dataclass

from netvirt.dataplane.sim.classify import PacketKey
from netvirt.graph import CtState
from netvirt.wire.fields import Headers, quoted_headers
from netvirt.wire.ipv4 import ICMP, ICMPV6, TCP, UDP

Flow = tuple[int, int, bytes, int, bytes, int]  # (version, proto, src, src_port, dst, dst_port)


def inverse(flow: Flow) -> Flow:
    version, proto, src, src_port, dst, dst_port = flow
    return (version, proto, dst, dst_port, src, src_port)


@dataclass(slots=True)
class Entry:
    """A connection: its tuple as first seen (``original``) and the tuple replies will carry."""

    original: Flow
    reply: Flow
    seen_reply: bool = False
    confirmed: bool = False


@dataclass(slots=True)
class Tracked:
    """A packet's connection-tracking context inside one namespace."""

    entry: Entry
    is_reply: bool
    state: CtState
    table: dict

    @property
    def new(self) -> bool:
        return self.state is CtState.NEW and not self.entry.confirmed

    def dst_target(self) -> tuple[bytes, int]:
        """Where this packet's destination must point: the inverse of the other direction's tuple."""
        other = self.entry.original if self.is_reply else self.entry.reply
        return other[2], other[3]

    def src_target(self) -> tuple[bytes, int]:
        other = self.entry.original if self.is_reply else self.entry.reply
        return other[4], other[5]

    def translates_src(self) -> bool:
        """Whether the connection rewrites this direction's source (replies: DNAT; originals: SNAT),
        as the kernel's NAT status bits say — what an ICMP error about the flow is translated by."""
        original, reply = self.entry.original, self.entry.reply
        return original[4:6] != reply[2:4] if self.is_reply else original[2:4] != reply[4:6]

    def translates_dst(self) -> bool:
        """Whether the connection rewrites this direction's destination (replies: SNAT; originals: DNAT)."""
        original, reply = self.entry.original, self.entry.reply
        return reply[4:6] != original[2:4] if self.is_reply else original[4:6] != reply[2:4]

    def confirm(self) -> None:
        entry = self.entry
        if self.is_reply:
            entry.seen_reply = True
        if not entry.confirmed:
            entry.confirmed = True
            self.table[entry.original] = (entry, False)
            self.table[entry.reply] = (entry, True)


def track(table: dict, frame, found: Headers) -> Tracked:
    """The conntrack context of the packet in ``frame`` (see the module docstring)."""
    flow = found.flow
    hit = table.get(flow)
    if hit is not None:
        entry, is_reply = hit
        if is_reply:
            return Tracked(entry, True, CtState.ESTABLISHED, table)
        return Tracked(entry, False, CtState.ESTABLISHED if entry.seen_reply else CtState.NEW, table)
    if found.is_icmp_error:
        quoted = quoted_headers(frame, found)
        if quoted is not None:
            hit = table.get(quoted.flow)
            if hit is not None:
                entry, quoted_is_reply = hit
                # the error travels against the quoted packet
                return Tracked(entry, not quoted_is_reply, CtState.RELATED, table)
    return Tracked(Entry(flow, inverse(flow)), False, CtState.NEW, table)


def packet_key(found: Headers, state: CtState, in_iface: str | None, out_iface: str | None) -> PacketKey:
    """The classifier key of a packet at a hook."""
    ports = found.proto in (TCP, UDP) and found.first_fragment
    return PacketKey(
        found.version,
        int.from_bytes(found.src, "big"),
        int.from_bytes(found.dst, "big"),
        found.proto,
        found.src_port if ports else None,
        found.dst_port if ports else None,
        found.icmp_type if found.proto in (ICMP, ICMPV6) else None,
        found.icmp_code if found.proto in (ICMP, ICMPV6) and found.icmp_type is not None else None,
        state,
        in_iface,
        out_iface,
    )


def rule_name(table: str, hook: str, index: int | None, comment: str) -> str:
    """How traces name the rule that decided: ``filter/forward rule 2 (deny db)`` or the policy."""
    if index is None:
        return f"{table}/{hook} policy"
    return f"{table}/{hook} rule {index}" + (f" ({comment})" if comment else "")
