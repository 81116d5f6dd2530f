"""Simulator netfilter semantics: hook order, first match, policies, conntrack states (replies of
allowed flows pass, NEW/ESTABLISHED/RELATED), DNAT/SNAT/masquerade and their reversal, reject."""

from ipaddress import ip_address, ip_network

import pytest
from sim_graphs import Lab, assert_valid

from netvirt.dataplane.events import Action, Disposition
from netvirt.dataplane.sim import Simulator
from netvirt.wire.builders import probe
from netvirt.dataplane.sim.packets import response
from netvirt.graph import (
    Affinity,
    ACCEPT,
    DROP,
    Chain,
    CtState,
    Dnat,
    Masquerade,
    Match,
    NatTarget,
    NetfilterHook,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Rule,
    Snat,
    Verdict,
)
from netvirt.wire import dissect, icmpv4, tcp
from netvirt.wire.fields import headers

A, B, C = ip_address("10.0.0.2"), ip_address("10.0.0.3"), ip_address("10.0.0.4")
VIP = ip_address("10.96.0.10")


def lab_with(b_filter=(), a_filter=(), a_nat=(), host_filter=(), host_nat=()):
    lab = Lab()
    lab.ns("host", ip_forward=True, filter=host_filter, nat=host_nat)
    lab.bridge()
    lab.pod("a", "10.0.0.2/24", filter=a_filter, nat=a_nat)
    lab.pod("b", "10.0.0.3/24", listen=("tcp", 80), filter=b_filter)
    lab.pod("c", "10.0.0.4/24", listen=("tcp", 80))
    return lab.network()


def ingress(*rules, policy=Verdict.DROP):
    return (Chain(hook=NetfilterHook.INPUT, rules=rules, policy=policy),)


ESTABLISHED = Rule(match=Match(ct_states=frozenset({CtState.ESTABLISHED, CtState.RELATED})), action=ACCEPT,
                   comment="replies")
WEB = Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(80), src=ip_network("10.0.0.2/32")), action=ACCEPT,
           comment="a may reach the web")


def test_first_match_wins_and_the_drop_names_its_rule():
    network = lab_with(b_filter=ingress(
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange(80, 90)), action=DROP, comment="block 80-90"),
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(80)), action=ACCEPT, comment="never reached"),
    ))
    walk = Simulator(network).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert walk.disposition is Disposition.DROPPED
    drop = walk.events[-1]
    assert drop.action is Action.FILTER_DROP and drop.rule == "filter/input rule 0 (block 80-90)"
    assert walk.reason == "dropped by filter/input rule 0 (block 80-90) in b"


def test_policy_applies_when_no_rule_matches():
    network = lab_with(b_filter=ingress(WEB))
    sim = Simulator(network)
    assert sim.send("h1", "a", probe(A, B, "tcp", dst_port=80)).disposition is Disposition.DELIVERED
    walk = sim.send("h1", "c", probe(C, B, "tcp", dst_port=80))
    assert walk.disposition is Disposition.DROPPED and walk.events[-1].rule == "filter/input policy"


def test_replies_of_allowed_flows_pass_a_stateful_filter():
    # a may connect to b; b may not connect to a; but b's answers to a are ESTABLISHED and pass
    network = lab_with(b_filter=ingress(WEB), a_filter=ingress(ESTABLISHED))
    sim = Simulator(network)
    request = sim.send("h1", "a", probe(A, B, "tcp", src_port=40000, dst_port=80))
    assert request.disposition is Disposition.DELIVERED
    answer = sim.answer(request)
    assert answer.disposition is Disposition.DELIVERED and answer.delivered_in == ("h1", "a")
    allowed = next(e for e in answer.events if e.action is Action.FILTER_ALLOW and e.namespace == "a")
    assert "replies" in allowed.rule and "(established)" in allowed.message
    # a fresh connection from b to a is NEW: dropped by a's policy
    sim.send("h1", "b", probe(B, A, "tcp", src_port=41000, dst_port=80))
    new = Simulator(network).send("h1", "b", probe(B, A, "tcp", src_port=41000, dst_port=80))
    assert new.disposition is Disposition.DROPPED and "(new)" in new.events[-1].message


def test_icmp_errors_about_a_tracked_flow_are_related():
    # c listens on nothing for udp: its port unreachable goes back to a, whose filter allows RELATED only
    network = lab_with(a_filter=ingress(ESTABLISHED))
    walk = Simulator(network).send("h1", "a", probe(A, C, "udp", src_port=5000, dst_port=53))
    assert walk.disposition is Disposition.REJECTED
    allowed = [e for e in walk.events if e.reply and e.action is Action.FILTER_ALLOW]
    assert allowed and "(related)" in allowed[-1].message
    assert walk.events[-1].action is Action.DELIVER and walk.events[-1].namespace == "a"


@pytest.mark.parametrize(("reply", "answer_dropped"), [(RejectWith.PORT_UNREACHABLE, True),
                                                      (RejectWith.ADMIN_PROHIBITED, False)])
def test_a_filter_matches_the_icmp_code(reply, answer_dropped):
    # b answers with port unreachable (3/3) or admin prohibited (3/13); a drops 3/3, by its code only
    network = lab_with(
        b_filter=ingress(Rule(action=Reject(reply))),
        a_filter=ingress(Rule(match=Match(proto=Proto.ICMP, icmp_type=3, icmp_code=3), action=DROP, comment="no 3/3"),
                         policy=Verdict.ACCEPT),
    )
    walk = Simulator(network).send("h1", "a", probe(A, B, "udp", src_port=5000, dst_port=53))
    assert walk.disposition is Disposition.REJECTED
    last = walk.events[-1]
    assert last.reply and last.namespace == "a"
    if answer_dropped:
        assert last.action is Action.FILTER_DROP and last.rule == "filter/input rule 0 (no 3/3)"
    else:
        assert last.action is Action.DELIVER


@pytest.mark.parametrize(("reply", "expected"), [
    (RejectWith.TCP_RESET, "reset"),
    (RejectWith.PORT_UNREACHABLE, (icmpv4.DESTINATION_UNREACHABLE, icmpv4.PORT_UNREACHABLE)),
    (RejectWith.ADMIN_PROHIBITED, (icmpv4.DESTINATION_UNREACHABLE, 13)),
])
def test_reject_answers_the_sender(reply, expected):
    network = lab_with(b_filter=ingress(Rule(action=Reject(reply), comment="no")))
    walk = Simulator(network).send("h1", "a", probe(A, B, "tcp", src_port=40000, dst_port=80))
    assert walk.disposition is Disposition.REJECTED and walk.reason == "rejected by filter/input rule 0 (no) in b"
    answer = next(e for e in walk.events if e.action is Action.REPLY)
    last = dissect(answer.packet)[-1] if expected == "reset" else dissect(answer.packet)[2]
    if expected == "reset":
        assert isinstance(last, tcp.Repr) and last.flags & tcp.RST
    else:
        assert (last.type, last.code) == expected
    for event in walk.events:
        assert_valid(event.packet)


def test_service_dnat_in_output_and_its_reversal_on_the_answer():
    service = Chain(hook=NetfilterHook.OUTPUT, rules=(Rule(
        match=Match(dst=ip_network(f"{VIP}/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
        action=Dnat(targets=(NatTarget(B, 80), NatTarget(C, 80))), comment="svc web"),))
    network = lab_with(a_nat=(service,))
    seen = set()
    for port in range(40000, 40016):
        sim = Simulator(network)
        walk = sim.send("h1", "a", probe(A, VIP, "tcp", src_port=port, dst_port=80))
        assert walk.disposition is Disposition.DELIVERED
        nat = next(e for e in walk.events if e.action is Action.NAT)
        assert nat.cause == "dnat" and nat.rule == "nat/output rule 0 (svc web)"
        seen.add(walk.delivered_in[1])
        answer = sim.answer(walk)
        reverse = next(e for e in answer.events if e.action is Action.NAT)
        assert reverse.cause == "reverse" and headers(reverse.packet).src == VIP.packed
        assert answer.disposition is Disposition.DELIVERED
        for event in walk.events + answer.events:
            assert_valid(event.packet)
    assert seen == {"b", "c"}  # the flow hash spreads connections over both backends
    # the same flow always picks the same backend
    first = Simulator(network).send("h1", "a", probe(A, VIP, "tcp", src_port=40000, dst_port=80)).delivered_in
    assert first == Simulator(network).send("h1", "a", probe(A, VIP, "tcp", src_port=40000, dst_port=80)).delivered_in


def test_client_ip_affinity_is_a_source_hash_on_the_low_bits_of_the_client():
    """Every connection of a client picks one backend: Dnat.affinity_target of the client address
    modulo affinity_buckets (the same hash the nftables and iptables rules realise)."""
    action = Dnat(targets=(NatTarget(B, 80), NatTarget(C, 80)), affinity=Affinity.CLIENT_IP)
    assert action.affinity_buckets == 8 and [action.affinity_target(b) for b in range(8)] == [0, 1] * 4
    assert Dnat(targets=tuple(NatTarget(B, p) for p in range(1, 101))).affinity_buckets == 256
    service = Chain(hook=NetfilterHook.OUTPUT, rules=(Rule(
        match=Match(dst=ip_network(f"{VIP}/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
        action=action, comment="svc web"),))
    network = lab_with(a_nat=(service,))
    picked = {Simulator(network).send("h1", "a", probe(A, VIP, "tcp", src_port=port, dst_port=80)).delivered_in
              for port in range(40000, 40020)}
    assert picked == {("h1", "b" if int(A) % 8 % 2 == 0 else "c")}


def test_masquerade_and_snat_rewrite_the_source_and_answers_come_back():
    for action in (Masquerade(), Snat(ip_address("10.0.0.1"))):
        nat = (Chain(hook=NetfilterHook.POSTROUTING, rules=(Rule(match=Match(out_iface="br0"), action=action),)),)
        lab = Lab()
        lab.ns("host", ip_forward=True, nat=nat)
        lab.bridge()
        lab.bridge(name="br1", address="10.1.0.1/24")
        lab.pod("a", "10.0.0.2/24")
        lab.pod("z", "10.1.0.2/24", gateway="10.1.0.1", bridge="br1", listen=("tcp", 80))
        sim = Simulator(lab.network())
        # z -> a: leaves the host through br0, masqueraded to the host's br0 address
        walk = sim.send("h1", "z", probe(ip_address("10.1.0.2"), A, "tcp", src_port=40000, dst_port=22))
        nat_event = next(e for e in walk.events if e.action is Action.NAT)
        assert nat_event.cause == "snat" and headers(nat_event.packet).src == ip_address("10.0.0.1").packed
        # a answers with RST to 10.0.0.1; conntrack sends it on to z
        assert walk.events[-1].namespace == "z" and walk.events[-1].action is Action.DELIVER


def test_hooks_run_in_kernel_order_on_a_forwarded_packet():
    marks = {hook: (Chain(hook=hook, rules=(Rule(action=ACCEPT, comment=hook.value),)),)
             for hook in (NetfilterHook.PREROUTING, NetfilterHook.FORWARD, NetfilterHook.POSTROUTING)}
    lab = Lab()
    lab.ns("host", ip_forward=True, filter=tuple(chain for chains in marks.values() for chain in chains))
    lab.bridge()
    lab.bridge(name="br1", address="10.1.0.1/24")
    lab.pod("a", "10.0.0.2/24")
    lab.pod("z", "10.1.0.2/24", gateway="10.1.0.1", bridge="br1", listen=("tcp", 80))
    walk = Simulator(lab.network()).send("h1", "a", probe(A, ip_address("10.1.0.2"), "tcp", dst_port=80))
    order = [e.rule for e in walk.events if e.action is Action.FILTER_ALLOW and e.namespace == "host"]
    assert order == ["filter/prerouting rule 0 (prerouting)", "filter/forward rule 0 (forward)",
                     "filter/postrouting rule 0 (postrouting)"]
    routes = [i for i, e in enumerate(walk.events) if e.namespace == "host" and e.action is Action.ROUTE]
    allows = [i for i, e in enumerate(walk.events) if e.namespace == "host" and e.action is Action.FILTER_ALLOW]
    assert allows[0] < routes[0] < allows[1]


def test_linear_and_compiled_classifiers_walk_the_same():
    network = lab_with(b_filter=ingress(WEB, Rule(match=Match(proto=Proto.TCP), action=Reject(RejectWith.TCP_RESET))))
    for source, address in (("a", A), ("c", C)):
        packet = probe(address, B, "tcp", src_port=40000, dst_port=80)
        assert Simulator(network, compiled=True).send("h1", source, packet) == \
            Simulator(network, compiled=False).send("h1", source, packet)


def test_response_builds_the_answer_of_each_protocol():
    ethernet = bytes(12) + b"\x08\x00"
    syn = probe(A, B, "tcp", src_port=40000, dst_port=80)
    answer = dissect(ethernet + response(syn, headers(ethernet + syn)))
    assert answer[1].src == B.packed and answer[-1].flags == tcp.SYN | tcp.ACK
    assert answer[-1].acknowledgment_number == 1_000_001 and answer[-1].dst_port == 40000
    echo = probe(A, B, "icmp")
    assert dissect(ethernet + response(echo, headers(ethernet + echo)))[-1].type == icmpv4.ECHO_REPLY
    udp = probe(A, B, "udp", src_port=5000, dst_port=53)
    assert dissect(ethernet + response(udp, headers(ethernet + udp)))[-1].dst_port == 5000
