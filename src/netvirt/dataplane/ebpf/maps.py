"""Rules, services and drop lists compiled to the entries of the BPF maps (no I/O), and written.

Contract:
- ``compile_chain(rules, policy, ifindex)`` -> ``ChainEntries``: the chain's rules grouped by
  mask tuple (which fields a rule matches exactly, its prefix lengths, how it matches ports) as
  ``bpf/endpoint.c`` searches them: one ``Tuple`` per group (its mask and lowest rule index) in
  order of that index, and per group one ``Bucket`` per distinct masked value (the rules sharing
  it, by index, with their port ranges). A rule with a set of conntrack states has one key per
  state. ``ifindex(name)`` turns interface names into the kernel's indices. Limits (128 tuples
  per chain, 8 rules per bucket) raise ``MapError`` naming the rule - never a silent skip.
- ``compile_services(rules)`` -> ``ServiceEntries``: a NAT chain of service DNAT rules (match a
  VIP host prefix, tcp/udp and one port; ``Dnat`` to backends) in Cilium's lb.h layout; any
  other NAT rule raises ``MapError``.
- ``compile_drop_list(prefixes)`` -> LPM trie entries (prefix -> position in the list).
- ``write_endpoint(obj, input, output, services)`` / ``write_drop_list(obj, entries)`` replace
  what the loaded object's maps hold with exactly these entries.
"""

import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from netvirt.dataplane.ebpf import layouts as L
from netvirt.graph import Accept, Affinity, CtState, Dnat, Drop, IPNetwork, Match, Reject, RejectWith, Rule, Verdict

CT_STATES = {CtState.NEW: 1, CtState.ESTABLISHED: 2, CtState.RELATED: 3, CtState.INVALID: 4, CtState.UNTRACKED: 5}
REJECTS = {RejectWith.PORT_UNREACHABLE: 1, RejectWith.HOST_UNREACHABLE: 2, RejectWith.ADMIN_PROHIBITED: 3,
           RejectWith.TCP_RESET: 4}  # fmt: skip
FULL = 0xFFFFFFFF


class MapError(ValueError):
    """A rule list or service the eBPF maps cannot hold (says which rule and why)."""


@dataclass
class ChainEntries:
    policy: int
    tuples: list[L.Tuple] = field(default_factory=list)
    buckets: dict[bytes, tuple[L.Key, L.Bucket]] = field(default_factory=dict)
    logs: dict[int, str] = field(default_factory=dict)  # rule index -> log prefix
    active: bool = True


@dataclass
class ServiceEntries:
    services: list[tuple[L.LbKey, L.LbService]] = field(default_factory=list)
    backends: list[tuple[int, L.LbBackend]] = field(default_factory=list)
    reverse_nat: list[tuple[int, L.LbReverseNat]] = field(default_factory=list)
    vips: list[L.LbKey] = field(default_factory=list)  # IPv4 service addresses (answered ARP)


def _prefix_mask(net: IPNetwork | None) -> tuple[int | None, list[int]]:
    """(prefix length or None, the four network-order mask words) of a match prefix."""
    if net is None:
        return None, [0, 0, 0, 0]
    bits = int(net.netmask).to_bytes(net.max_prefixlen // 8, "big").ljust(16, b"\0")
    return net.prefixlen, list((ctypes.c_uint32 * 4).from_buffer_copy(bits))


def _role(ports) -> int:
    if ports is None:
        return L.PORT_WILD
    return L.PORT_EXACT if ports.first == ports.last else L.PORT_RANGE


def _signature(m: Match) -> tuple:
    return (m.family is not None, None if m.src is None else m.src.prefixlen, None if m.dst is None else m.dst.prefixlen,
            m.proto is not None, _role(m.src_ports), _role(m.dst_ports), m.icmp_type is not None,
            m.icmp_code is not None, m.ct_states is not None, m.in_iface is not None, m.out_iface is not None,
            m.mark is not None)  # fmt: skip


def _mask(m: Match) -> L.Key:
    mask = L.Key()
    mask.src[:] = _prefix_mask(m.src)[1]
    mask.dst[:] = _prefix_mask(m.dst)[1]
    mask.family = 0xFF if m.family is not None else 0
    mask.proto = 0xFF if m.proto is not None else 0
    mask.src_port = FULL if _role(m.src_ports) == L.PORT_EXACT else 0
    mask.dst_port = FULL if _role(m.dst_ports) == L.PORT_EXACT else 0
    mask.icmp_type = FULL if m.icmp_type is not None else 0
    mask.icmp_code = FULL if m.icmp_code is not None else 0
    mask.ct_state = 0xFF if m.ct_states is not None else 0
    mask.in_ifindex = FULL if m.in_iface is not None else 0
    mask.out_ifindex = FULL if m.out_iface is not None else 0
    mask.mark = FULL if m.mark is not None else 0
    return mask


def _keys(m: Match, slot: int, ifindex: Callable[[str], int]) -> list[L.Key]:
    """The bucket keys of a match in tuple ``slot``: one per conntrack state it accepts."""
    key = L.Key(tuple=slot)
    for net, words in ((m.src, key.src), (m.dst, key.dst)):
        if net is not None:
            ctypes.memmove(words, net.network_address.packed, len(net.network_address.packed))
    key.family = m.family or 0
    key.proto = m.proto.number if m.proto is not None else 0
    key.src_port = m.src_ports.first if _role(m.src_ports) == L.PORT_EXACT else 0  # type: ignore[union-attr]
    key.dst_port = m.dst_ports.first if _role(m.dst_ports) == L.PORT_EXACT else 0  # type: ignore[union-attr]
    key.icmp_type = m.icmp_type or 0
    key.icmp_code = m.icmp_code or 0
    key.in_ifindex = ifindex(m.in_iface) if m.in_iface is not None else 0
    key.out_ifindex = ifindex(m.out_iface) if m.out_iface is not None else 0
    key.mark = m.mark or 0
    states = sorted(CT_STATES[s] for s in m.ct_states) if m.ct_states is not None else [0]
    keys = []
    for state in states:
        copy = L.Key.from_buffer_copy(key)
        copy.ct_state = state
        keys.append(copy)
    return keys


def _rule_entry(index: int, rule: Rule) -> L.Rule:
    action = rule.action
    if isinstance(action, Accept):
        code, reject = L.ACCEPT, 0
    elif isinstance(action, Drop):
        code, reject = L.DROP, 0
    elif isinstance(action, Reject):
        code, reject = L.REJECT, REJECTS[action.reply]
    else:
        raise MapError(f"rule {index} ({rule.comment or 'no comment'}): {action.tag} is not a filter action")
    m = rule.match
    src = (m.src_ports.first, m.src_ports.last) if m.src_ports else (0, 65535)
    dst = (m.dst_ports.first, m.dst_ports.last) if m.dst_ports else (0, 65535)
    return L.Rule(index=index, mark=rule.set_mark or 0, src_lo=src[0], src_hi=src[1], dst_lo=dst[0], dst_hi=dst[1],
                  action=code, reject=reject, log=1 if rule.log else 0, set_mark=1 if rule.set_mark is not None else 0)


def compile_chain(rules: Sequence[Rule], policy: Verdict, ifindex: Callable[[str], int], chain: int) -> ChainEntries:
    """The map entries of one filter chain (see the module docstring); ``chain`` is CHAIN_INPUT/OUTPUT."""
    entries = ChainEntries(policy=L.ACCEPT if policy is Verdict.ACCEPT else L.DROP)
    positions: dict[tuple, int] = {}
    for index, rule in enumerate(rules):
        signature = _signature(rule.match)
        position = positions.get(signature)
        if position is None:
            position = positions[signature] = len(entries.tuples)
            if position >= L.MAX_TUPLES:
                raise MapError(f"rule {index} ({rule.comment or 'no comment'}): more than {L.MAX_TUPLES} distinct "
                               "match shapes in one chain; the eBPF classifier searches at most that many")
            entries.tuples.append(L.Tuple(mask=_mask(rule.match), min_index=index, src_port=_role(rule.match.src_ports),
                                          dst_port=_role(rule.match.dst_ports)))
        slot = chain * L.MAX_TUPLES + position
        entry = _rule_entry(index, rule)
        if rule.log:
            entries.logs[index] = rule.log
        for key in _keys(rule.match, slot, ifindex):
            raw = bytes(key)
            found = entries.buckets.get(raw)
            if found is None:
                found = entries.buckets[raw] = (key, L.Bucket())
            bucket = found[1]
            if bucket.count >= L.BUCKET_RULES:
                raise MapError(f"rule {index} ({rule.comment or 'no comment'}): more than {L.BUCKET_RULES} rules "
                               "differ only in their port ranges; split the ranges or merge the rules")
            bucket.rules[bucket.count] = entry
            bucket.count += 1
    return entries


def _service_problem(index: int, rule: Rule) -> str | None:
    m, action = rule.match, rule.action
    if not isinstance(action, Dnat):
        return f"{action.tag} (only service DNAT)"
    if m.dst is None or m.dst.prefixlen != m.dst.max_prefixlen:
        return "its destination is not one VIP address"
    if m.proto is None or m.proto.number not in (6, 17) or m.dst_ports is None or m.dst_ports.first != m.dst_ports.last:
        return "it does not match tcp or udp and one port"
    if Match(dst=m.dst, proto=m.proto, dst_ports=m.dst_ports) != m:
        return "it matches more than VIP, protocol and port"
    return None


def compile_services(rules: Sequence[Rule]) -> ServiceEntries:
    """Service DNAT rules as lb.h entries: slot 0 the service, slots 1..n its backends."""
    entries = ServiceEntries()
    backend_id = 0
    for index, rule in enumerate(rules):
        problem = _service_problem(index, rule)
        if problem is not None:
            raise MapError(f"NAT rule {index} ({rule.comment or 'no comment'}): the eBPF load balancer cannot realise it: {problem}")
        action: Dnat = rule.action  # type: ignore[assignment]
        m = rule.match
        vip, port, proto = m.dst.network_address, m.dst_ports.first, m.proto.number  # type: ignore[union-attr]
        rev_nat = index + 1
        affinity = action.affinity is Affinity.CLIENT_IP
        key = L.LbKey(address=L.address_words(vip.packed), dport=port, proto=proto, family=vip.version)
        entries.services.append((key, L.LbService(backend_id=action.affinity_timeout if affinity else 0,
                                                  count=len(action.targets), rev_nat_index=rev_nat,
                                                  flags=L.LB_AFFINITY if affinity else 0)))
        for slot, target in enumerate(action.targets, start=1):
            backend_id += 1
            slot_key = L.LbKey.from_buffer_copy(key)
            slot_key.backend_slot = slot
            entries.services.append((slot_key, L.LbService(backend_id=backend_id, rev_nat_index=rev_nat)))
            entries.backends.append((backend_id, L.LbBackend(address=L.address_words(target.address.packed),
                                                             port=target.port or 0, family=target.address.version)))
        entries.reverse_nat.append((rev_nat, L.LbReverseNat(address=L.address_words(vip.packed), port=port,
                                                            family=vip.version)))
        address_only = L.LbKey(address=L.address_words(vip.packed), family=vip.version)
        if vip.version == 4 and bytes(address_only) not in {bytes(known) for known in entries.vips}:
            entries.vips.append(address_only)
    return entries


def compile_drop_list(prefixes: Sequence[IPNetwork]) -> list[tuple[L.Lpm4 | L.Lpm6, int]]:
    """LPM trie keys of a drop list, each with its position (the counter slot)."""
    if len(prefixes) > L.DROP_MAX:
        raise MapError(f"drop list of {len(prefixes)} prefixes: the XDP program holds at most {L.DROP_MAX}")
    found: list[tuple[L.Lpm4 | L.Lpm6, int]] = []
    for position, net in enumerate(prefixes):
        packed = net.network_address.packed
        key = (L.Lpm4 if net.version == 4 else L.Lpm6)(prefixlen=net.prefixlen)
        ctypes.memmove(key.address, packed, len(packed))
        found.append((key, position))
    return found


# --- writing into a loaded object -------------------------------------------------------------


def _replace(target, entries: Sequence[tuple]) -> None:
    """Make map ``target`` hold exactly ``entries`` (new ones first, then the stale removed)."""
    wanted = {bytes(key) for key, _ in entries}
    for key, value in entries:
        target.update(key, value)
    for key in target.keys():
        if bytes(key) not in wanted:
            target.delete(key)


ENDPOINT_LAYOUTS = {  # map -> (key, value) types of what netvirt writes there
    "nv_chains": (ctypes.c_uint32, L.Chain),
    "nv_tuples": (ctypes.c_uint32, L.Tuple),
    "nv_rules": (L.Key, L.Bucket),
    "nv_lb_services": (L.LbKey, L.LbService),
    "nv_lb_backends": (ctypes.c_uint32, L.LbBackend),
    "nv_lb_reverse_nat": (ctypes.c_uint16, L.LbReverseNat),
    "nv_lb_vips": (L.LbKey, ctypes.c_uint8),
}


def endpoint_entries(input_chain: ChainEntries | None, output_chain: ChainEntries | None, services: ServiceEntries,
                     reroute: bool = False) -> dict[str, list[tuple]]:
    """Every (key, value) of the configuration maps for two chains (None: no filtering there) and
    the services; ``reroute``: route again after DNAT (the output chain's OPT_FIB)."""
    found: dict[str, list[tuple]] = {name: [] for name in ENDPOINT_LAYOUTS}
    for number, entries in ((L.CHAIN_INPUT, input_chain), (L.CHAIN_OUTPUT, output_chain)):
        present = entries or ChainEntries(policy=L.ACCEPT, active=False)
        for position, tuple_ in enumerate(present.tuples):
            found["nv_tuples"].append((ctypes.c_uint32(number * L.MAX_TUPLES + position), tuple_))
        found["nv_rules"].extend(present.buckets.values())
        flags = L.OPT_FIB if reroute and number == L.CHAIN_OUTPUT else 0
        found["nv_chains"].append((ctypes.c_uint32(number), L.Chain(tuples=len(present.tuples), flags=flags,
                                                                    active=present.active, policy=present.policy)))
    found["nv_lb_services"] = list(services.services)
    found["nv_lb_backends"] = [(ctypes.c_uint32(i), b) for i, b in services.backends]
    found["nv_lb_reverse_nat"] = [(ctypes.c_uint16(i), r) for i, r in services.reverse_nat]
    found["nv_lb_vips"] = [(vip, ctypes.c_uint8(1)) for vip in services.vips]
    return found


def write_endpoint(obj, entries: dict[str, list[tuple]]) -> None:
    """Make an endpoint object's configuration maps hold exactly ``entries`` (``endpoint_entries``).
    The tuple array keeps stale slots past the chains' tuple counts: the programs never read them."""
    for name, wanted in entries.items():
        target = obj.map(name, *ENDPOINT_LAYOUTS[name])
        if name in ("nv_chains", "nv_tuples"):  # arrays: entries cannot be deleted
            for key, value in wanted:
                target.update(key, value)
        else:
            _replace(target, wanted)


def read_endpoint(obj, entries: dict[str, list[tuple]]) -> list[str]:
    """How the configuration maps differ from ``entries`` (empty: they hold exactly them)."""
    found = []
    for name, wanted in entries.items():
        target = obj.map(name, *ENDPOINT_LAYOUTS[name])
        if name in ("nv_chains", "nv_tuples"):
            missing = [key for key, value in wanted if bytes(target.lookup(key) or b"") != bytes(value)]
            extra: list = []
        else:
            want = {bytes(key): bytes(value) for key, value in wanted}
            have = {bytes(key): bytes(target.lookup(key) or b"") for key in target.keys()}
            missing = [key for key in want if have.get(key) != want[key]]
            extra = [key for key in have if key not in want]
        if missing or extra:
            found.append(f"map {name}: {len(missing)} entries missing or different, {len(extra)} not netvirt's rules")
    return found


def write_drop_list(obj, entries: Sequence[tuple[L.Lpm4 | L.Lpm6, int]]) -> None:
    from ctypes import c_uint32

    for name, kind in (("nv_drop4", L.Lpm4), ("nv_drop6", L.Lpm6)):
        _replace(obj.map(name, kind, c_uint32), [(key, c_uint32(position)) for key, position in entries
                                                 if isinstance(key, kind)])
