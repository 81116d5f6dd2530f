"""Policy translation: match intersection and log expansion keep first-match semantics."""

from ipaddress import ip_address, ip_network

from compile_specs import Packet, first_match, matches
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netvirt.control.compile.policy import expand_logs, intersect
from netvirt.graph import ACCEPT, DROP, GraphError, Match, PortRange, Proto, Reject, Rule

PREFIXES = [None, *map(ip_network, ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "fd00::/8", "fd00::1/128"])]
ADDRESSES = list(map(ip_address, ["10.1.2.3", "10.1.2.4", "10.9.9.9", "192.0.2.1", "fd00::1", "fd00::2"]))
PORTS = [None, PortRange(80, 80), PortRange(1, 1024), PortRange(443, 8080)]


@st.composite
def match_values(draw) -> Match:
    proto = draw(st.sampled_from([None, Proto.TCP, Proto.UDP, Proto.ICMP, Proto.ICMPV6]))
    ports = proto in (Proto.TCP, Proto.UDP)
    fields = dict(
        src=draw(st.sampled_from(PREFIXES)),
        dst=draw(st.sampled_from(PREFIXES)),
        proto=proto,
        dst_ports=draw(st.sampled_from(PORTS)) if ports else None,
        src_ports=draw(st.sampled_from(PORTS)) if ports else None,
        icmp_type=draw(st.sampled_from([None, 0, 8])) if proto in (Proto.ICMP, Proto.ICMPV6) else None,
        in_iface=draw(st.sampled_from([None, "eth0", "eth1"])),
    )
    try:
        return Match(**fields)
    except GraphError:
        assume(False)
        raise


@st.composite
def packets(draw) -> Packet:
    family = draw(st.sampled_from([4, 6]))
    pool = [a for a in ADDRESSES if a.version == family]
    proto = draw(st.sampled_from([Proto.TCP, Proto.UDP, Proto.ICMP if family == 4 else Proto.ICMPV6]))
    ports = proto in (Proto.TCP, Proto.UDP)
    return Packet(
        src=draw(st.sampled_from(pool)),
        dst=draw(st.sampled_from(pool)),
        proto=proto,
        dst_port=draw(st.sampled_from([80, 443, 5000, 9000])) if ports else None,
        src_port=draw(st.sampled_from([80, 1000, 40000])) if ports else None,
        icmp_type=None if ports else draw(st.sampled_from([0, 8, 3])),
        in_iface=draw(st.sampled_from(["eth0", "eth1"])),
    )


@settings(max_examples=200, deadline=None)
@given(match_values(), match_values(), packets())
def test_intersection_matches_exactly_what_both_match(a, b, packet):
    both = intersect(a, b)
    expected = matches(a, packet) and matches(b, packet)
    assert (both is not None and matches(both, packet)) == expected


entries = st.lists(
    st.one_of(
        st.builds(lambda m, a: Rule(match=m, action=a), match_values(), st.sampled_from([ACCEPT, DROP, Reject()])),
        st.builds(lambda ms, n: (tuple(ms), f"log{n}: "), st.lists(match_values(), min_size=1, max_size=2), st.integers(0, 9)),
    ),
    max_size=6,
)


def reference(entries, packet):
    """Log markers record and go on; the first matching rule decides (None: no rule matched)."""
    logs = []
    for entry in entries:
        if isinstance(entry, Rule):
            if matches(entry.match, packet):
                return entry.action, "".join(logs).strip() or None
        elif any(matches(m, packet) for m in entry[0]):
            logs.append(entry[1])
    return None, None


@settings(max_examples=200, deadline=None)
@given(entries, packets())
def test_log_expansion_keeps_verdicts_and_logs_what_the_log_rules_match(entries, packet):
    rule = first_match(expand_logs(entries), packet)
    got = (rule.action, rule.log) if rule is not None else (None, None)
    assert got == reference(entries, packet)
