"""Classifiers: iptables first-match semantics, and linear == compiled == a naive oracle."""

from ipaddress import ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.dataplane.sim.classify import CompiledClassifier, LinearClassifier, PacketKey
from netvirt.graph import (
    ACCEPT,
    DROP,
    CtState,
    Match,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Rule,
    Verdict,
)

CLASSIFIERS = [LinearClassifier, CompiledClassifier]


def key(src, dst, proto=Proto.TCP, **fields):
    return PacketKey.of(ip_address(src), ip_address(dst), proto, **fields)


def rule(action=ACCEPT, **match):
    return Rule(match=Match(**match), action=action)


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_first_match_wins_and_policy_applies(make):
    rules = [
        rule(DROP, src=ip_network("10.0.0.0/8"), proto=Proto.TCP, dst_ports=PortRange.single(22)),
        rule(ACCEPT, dst=ip_network("10.1.2.3/32"), proto=Proto.TCP, dst_ports=PortRange(20, 30)),
        rule(Reject(RejectWith.TCP_RESET), proto=Proto.TCP),
    ]
    classifier = make(rules, Verdict.DROP)
    assert classifier.classify(key("10.9.9.9", "10.1.2.3", src_port=4000, dst_port=22)) == (0, DROP)
    assert classifier.classify(key("11.0.0.1", "10.1.2.3", src_port=4000, dst_port=22)) == (1, ACCEPT)
    assert classifier.classify(key("11.0.0.1", "10.1.2.3", src_port=4000, dst_port=31)) == (2, Reject(RejectWith.TCP_RESET))
    assert classifier.classify(key("11.0.0.1", "10.1.2.3", Proto.UDP, src_port=4000, dst_port=22)) == (None, DROP)
    assert make([], Verdict.ACCEPT).classify(key("::1", "::2", Proto.UDP)) == (None, ACCEPT)


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_families_are_kept_apart(make):
    rules = [
        rule(DROP, src=ip_network("0.0.0.0/0")),  # every IPv4 packet, no IPv6 one
        rule(DROP, dst=ip_network("::a00:1/128")),  # same low 32 bits as 10.0.0.1
        rule(ACCEPT, proto=Proto.ICMPV6, icmp_type=135),
        rule(ACCEPT, dst=ip_network("fd00::/16")),
    ]
    classifier = make(rules, Verdict.DROP)
    assert classifier.classify(key("1.2.3.4", "10.0.0.1", Proto.UDP))[0] == 0
    assert classifier.classify(key("fd00::1", "::a00:1", Proto.UDP))[0] == 1
    assert classifier.classify(key("fe80::1", "ff02::1", Proto.ICMPV6, icmp_type=135))[0] == 2
    assert classifier.classify(key("fe80::1", "ff02::1", Proto.ICMPV6, icmp_type=136))[0] is None
    assert classifier.classify(key("fe80::1", "fd00:1::1", Proto.ICMPV6, icmp_type=136))[0] == 3


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_icmp_code_narrows_an_icmp_type(make):
    rules = [
        rule(DROP, proto=Proto.ICMP, icmp_type=3, icmp_code=3),  # port unreachable only
        rule(ACCEPT, proto=Proto.ICMP, icmp_type=3),
    ]
    classifier = make(rules, Verdict.DROP)
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", Proto.ICMP, icmp_type=3, icmp_code=3))[0] == 0
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", Proto.ICMP, icmp_type=3, icmp_code=1))[0] == 1
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", Proto.ICMP, icmp_type=11, icmp_code=3))[0] is None


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_conntrack_interfaces_and_marks(make):
    rules = [
        rule(ACCEPT, ct_states=frozenset({CtState.ESTABLISHED, CtState.RELATED})),
        rule(DROP, ct_states=frozenset({CtState.INVALID})),
        rule(ACCEPT, in_iface="veth-a", out_iface="eth0"),
        rule(ACCEPT, mark=0x4000),
    ]
    classifier = make(rules, Verdict.DROP)
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", ct_state=CtState.RELATED))[0] == 0
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", ct_state=CtState.INVALID))[0] == 1
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", in_iface="veth-a", out_iface="eth0"))[0] == 2
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", in_iface="veth-a"))[0] is None  # no output iface
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", mark=0x4000))[0] == 3


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_port_rules_never_match_portless_packets(make):
    rules = [rule(ACCEPT, proto=Proto.TCP, src_ports=PortRange(0, 65535)), rule(DROP, proto=Proto.TCP)]
    classifier = make(rules, Verdict.ACCEPT)
    assert classifier.classify(key("10.0.0.1", "10.0.0.2", src_port=1))[0] == 0
    assert classifier.classify(key("10.0.0.1", "10.0.0.2"))[0] == 1  # e.g. a non-first fragment


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_a_later_tuple_cannot_override_an_earlier_lower_match(make):
    web = dict(proto=Proto.TCP, dst_ports=PortRange.single(80))
    rules = [
        rule(DROP, dst=ip_network("10.0.0.1/32"), **web),  # tuple A (lowest index 0)
        rule(DROP, src=ip_network("10.8.0.0/16")),  # tuple B (lowest index 1)
        rule(ACCEPT, dst=ip_network("10.0.0.2/32"), **web),  # tuple A: the first match
        rule(DROP, src=ip_network("10.9.0.0/16")),  # tuple B: matches too, but later
    ]
    classifier = make(rules, Verdict.DROP)
    assert classifier.classify(key("10.9.0.5", "10.0.0.2", src_port=5000, dst_port=80)) == (2, ACCEPT)
    assert classifier.classify(key("10.9.0.5", "10.0.0.3", src_port=5000, dst_port=80)) == (3, DROP)


def test_kubernetes_like_rules_form_few_tuples():
    rules = [
        rule(ACCEPT, src=ip_network("10.244.0.0/16"), dst=ip_network(f"10.244.{i // 250}.{i % 250}/32"),
             proto=Proto.TCP, dst_ports=PortRange.single(8000 + i % 7))
        for i in range(2000)
    ]
    assert CompiledClassifier(rules).tuple_count == 1


# --- property: the compiled classifier, the linear one and a naive oracle always agree ---

V4_BASES = [ip_address(a) for a in ("10.0.0.0", "10.0.1.7", "10.1.0.0", "192.168.1.1", "0.0.0.0")]
V6_BASES = [ip_address(a) for a in ("fd00::1", "fd00::1:0", "2001:db8::5", "::a00:1")]
PORTS = [0, 1, 22, 53, 80, 443, 1024, 8080, 65535]
IFACES = ["eth0", "eth1", "veth-a"]
PROTOS = [Proto.TCP, Proto.UDP, Proto.ICMP, Proto.ICMPV6, Proto.GRE]
ICMP_CODES = [0, 1, 3, 4, 13]


@st.composite
def near(draw, family):
    """An address equal to, or a few low bits / a few high bits away from, a pool address."""
    base = draw(st.sampled_from(V4_BASES if family == 4 else V6_BASES))
    width = base.max_prefixlen
    flip = draw(st.sampled_from([0, 0, 1, 3, 255, 1 << (width - 8), 1 << (width - 20)]))
    return type(base)(int(base) ^ flip)


@st.composite
def prefixes(draw, family):
    address = draw(near(family))
    length = draw(st.sampled_from([0, 1, 8, 16, 24, 31, address.max_prefixlen] + ([48, 64, 120] if family == 6 else [])))
    return ip_network((address, length), strict=False)


port_ranges = st.tuples(st.sampled_from(PORTS), st.sampled_from(PORTS)).map(lambda p: PortRange(min(p), max(p)))


def mostly(strategy):
    """``strategy`` three times in four, else None (wildcard): specific rules shadow each other less."""
    return st.none() | strategy | strategy | strategy


@st.composite
def random_rules(draw):
    family = draw(st.sampled_from([4, 6, None]))
    proto = draw(st.none() | st.sampled_from(PROTOS))
    if proto is Proto.ICMP:
        family = 4 if family is not None else None
    if proto is Proto.ICMPV6:
        family = 6 if family is not None else None
    icmp_type = draw(st.none() | st.sampled_from([0, 3, 8, 128, 135])) if proto in (Proto.ICMP, Proto.ICMPV6) else None
    match = Match(
        src=draw(mostly(prefixes(family))) if family else None,
        dst=draw(mostly(prefixes(family))) if family else None,
        proto=proto,
        src_ports=draw(mostly(port_ranges)) if proto in (Proto.TCP, Proto.UDP) else None,
        dst_ports=draw(mostly(port_ranges)) if proto in (Proto.TCP, Proto.UDP) else None,
        icmp_type=icmp_type,
        icmp_code=draw(st.none() | st.sampled_from(ICMP_CODES)) if icmp_type is not None else None,
        ct_states=draw(mostly(st.frozensets(st.sampled_from(CtState), min_size=1))),
        in_iface=draw(mostly(st.sampled_from(IFACES))),
        out_iface=draw(mostly(st.sampled_from(IFACES))),
        mark=draw(mostly(st.sampled_from([0, 1, 0x4000]))),
    )
    return Rule(match=match, action=draw(st.sampled_from([ACCEPT, DROP, Reject()])))


@st.composite
def variant(draw, rule):
    """A rule with the same mask tuple as ``rule`` and fresh values (so tuples hold many rules)."""
    m = rule.match

    def same_length(net):
        return None if net is None else ip_network((draw(near(net.version)), net.prefixlen), strict=False)

    def same_role(bounds):
        if bounds is None:
            return None
        if bounds.first == bounds.last:
            return PortRange.single(draw(st.sampled_from(PORTS)))
        first = draw(st.sampled_from(PORTS[:-1]))
        return PortRange(first, draw(st.sampled_from([p for p in PORTS if p > first])))

    def fresh(value, pool):
        return None if value is None else draw(pool)

    match = Match(
        src=same_length(m.src),
        dst=same_length(m.dst),
        proto=m.proto,
        src_ports=same_role(m.src_ports),
        dst_ports=same_role(m.dst_ports),
        icmp_type=fresh(m.icmp_type, st.sampled_from([0, 3, 8, 128, 135])),
        icmp_code=fresh(m.icmp_code, st.sampled_from(ICMP_CODES)),
        ct_states=fresh(m.ct_states, st.frozensets(st.sampled_from(CtState), min_size=1)),
        in_iface=fresh(m.in_iface, st.sampled_from(IFACES)),
        out_iface=fresh(m.out_iface, st.sampled_from(IFACES)),
        mark=fresh(m.mark, st.sampled_from([0, 1, 0x4000])),
    )
    return Rule(match=match, action=draw(st.sampled_from([ACCEPT, DROP, Reject()])))


# Rule lists where mask tuples repeat: a few random rules, variants of them, shuffled.
rule_lists = st.lists(random_rules(), min_size=1, max_size=6).flatmap(
    lambda base: st.lists(st.sampled_from(base).flatmap(variant), max_size=24).flatmap(
        lambda extra: st.permutations(base + extra)
    )
)


@st.composite
def packets(draw):
    family = draw(st.sampled_from([4, 6]))
    proto = draw(st.sampled_from([p.number for p in PROTOS] + [132]))
    with_ports = proto in (6, 17) and draw(st.integers(0, 9)) > 0
    icmp = proto in (1, 58)
    return PacketKey.of(
        draw(near(family)),
        draw(near(family)),
        proto,
        src_port=draw(st.sampled_from(PORTS) | st.integers(0, 65535)) if with_ports else None,
        dst_port=draw(st.sampled_from(PORTS) | st.integers(0, 65535)) if with_ports else None,
        icmp_type=draw(st.sampled_from([0, 3, 8, 128, 135, 136])) if icmp else None,
        icmp_code=draw(st.sampled_from(ICMP_CODES + [255])) if icmp else None,
        ct_state=draw(st.sampled_from(CtState)),
        in_iface=draw(st.none() | st.sampled_from(IFACES)),
        out_iface=draw(st.none() | st.sampled_from(IFACES)),
        mark=draw(st.sampled_from([0, 1, 0x4000])),
    )


def oracle(rules, policy, packet):
    """First match, written directly against the graph's Match with ipaddress containment."""
    src = ip_address(packet.src) if packet.family == 4 else ip_address(packet.src.to_bytes(16, "big"))
    dst = ip_address(packet.dst) if packet.family == 4 else ip_address(packet.dst.to_bytes(16, "big"))

    def holds(m):
        checks = [
            m.src is None or (m.src.version == packet.family and src in m.src),
            m.dst is None or (m.dst.version == packet.family and dst in m.dst),
            m.family is None or m.family == packet.family,
            m.proto is None or m.proto.number == packet.proto,
            m.src_ports is None or (packet.src_port is not None and packet.src_port in m.src_ports),
            m.dst_ports is None or (packet.dst_port is not None and packet.dst_port in m.dst_ports),
            m.icmp_type is None or m.icmp_type == packet.icmp_type,
            m.icmp_code is None or m.icmp_code == packet.icmp_code,
            m.ct_states is None or packet.ct_state in m.ct_states,
            m.in_iface is None or m.in_iface == packet.in_iface,
            m.out_iface is None or m.out_iface == packet.out_iface,
            m.mark is None or m.mark == packet.mark,
        ]
        return all(checks)

    for index, r in enumerate(rules):
        if holds(r.match):
            return index, r.action
    return None, ACCEPT if policy is Verdict.ACCEPT else DROP


@st.composite
def aimed(draw, target):
    """A packet at ``target``: each field hits the match (mostly at its edges) or just misses it."""

    def hit() -> bool:
        return draw(st.integers(0, 7)) > 0

    def address(net, family):
        if net is None:
            return draw(near(family))
        first, last = int(net.network_address), int(net.broadcast_address)
        inside = [first, last, draw(st.integers(first, last))]
        outside = [v for v in (first - 1, last + 1) if 0 <= v < 2**net.max_prefixlen] or inside
        return type(net.network_address)(draw(st.sampled_from(inside if hit() else outside)))

    def port(bounds):
        if bounds is None:
            return draw(st.sampled_from(PORTS))
        inside = [bounds.first, bounds.last, draw(st.integers(bounds.first, bounds.last))]
        outside = [p for p in (bounds.first - 1, bounds.last + 1) if 0 <= p <= 65535] or inside
        return draw(st.sampled_from(inside if hit() else outside))

    def pick(wanted, pool):
        return wanted if wanted is not None and hit() else draw(st.sampled_from(pool))

    family = target.family or draw(st.sampled_from([4, 6]))
    proto = pick(target.proto.number if target.proto else None, [6, 17, 1, 58, 47])
    return PacketKey.of(
        address(target.src, family),
        address(target.dst, family),
        proto,
        src_port=port(target.src_ports) if proto in (6, 17) else None,
        dst_port=port(target.dst_ports) if proto in (6, 17) else None,
        icmp_type=pick(target.icmp_type, [0, 3, 8, 128, 135]) if proto in (1, 58) else None,
        icmp_code=pick(target.icmp_code, ICMP_CODES) if proto in (1, 58) else None,
        ct_state=pick(min(target.ct_states) if target.ct_states else None, list(CtState)),
        in_iface=pick(target.in_iface, IFACES + [None]),
        out_iface=pick(target.out_iface, IFACES + [None]),
        mark=pick(target.mark, [0, 1, 0x4000]),
    )


@settings(max_examples=100, deadline=None)
@given(rule_lists, st.sampled_from(Verdict), st.data())
def test_compiled_equals_linear_equals_oracle(rules, policy, data):
    """Random probes and probes aimed at (or just past) random rules: all three agree."""
    linear, compiled = LinearClassifier(rules, policy), CompiledClassifier(rules, policy)
    probes = data.draw(st.lists(packets() | st.sampled_from(rules).flatmap(lambda r: aimed(r.match)), min_size=1, max_size=20))
    for packet in probes:
        expected = oracle(rules, policy, packet)
        assert linear.classify(packet) == expected
        assert compiled.classify(packet) == expected
