"""Filtering and NAT in the real kernel, through nftables and through iptables: the same ruleset
drops exactly the denied flow, DNAT spreads connections over every backend, and drift (a flushed
ruleset) is detected and repaired."""

from ipaddress import ip_address, ip_interface, ip_network

import pytest
from linux_testbed import TcpServer, deployment, ping, tcp_request  # noqa: F401 (fixture)

from netvirt.dataplane.kernel import iptables, netns, nftables
from netvirt.dataplane.kernel.rulesets import Ruleset, RulesetError
from netvirt.graph.host import Route
from netvirt.graph.rules import (
    ACCEPT,
    DROP,
    Chain,
    CtState,
    Dnat,
    Match,
    NatTarget,
    NetfilterHook,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Rule,
    Verdict,
)

BACKENDS = ["nftables", "iptables"]
ADDRESSES = {
    4: {"client": "10.20.1.2", "router_c": "10.20.1.1", "router_s": "10.20.2.1", "server": "10.20.2.2",
        "vip": "10.20.9.9", "len": 24},
    6: {"client": "fd20:1::2", "router_c": "fd20:1::1", "router_s": "fd20:2::1", "server": "fd20:2::2",
        "vip": "fd20:9::9", "len": 64},
}


def routed(build):
    """client -- router -- server, dual stack, forwarding on in the router."""
    client, router, server = (build.namespace(n) for n in ("client", "router", "server"))
    build.veth(client, "eth0", router, "c")
    build.veth(server, "eth0", router, "s")
    build.forwarding(router, ipv4=True, ipv6=True)
    for ns, link, key in ((client, "eth0", "client"), (router, "c", "router_c"),
                          (router, "s", "router_s"), (server, "eth0", "server")):
        build.addresses(ns, link, [ip_interface(f"{ADDRESSES[v][key]}/{ADDRESSES[v]['len']}") for v in (4, 6)])
    for ns, via in ((client, "router_c"), (server, "router_s")):
        build.routes(ns, [Route(dst=ip_network("0.0.0.0/0"), via=ip_address(ADDRESSES[4][via])),
                          Route(dst=ip_network("::/0"), via=ip_address(ADDRESSES[6][via]))])
    return client, router, server


def apply(build, backend, namespace, ruleset):
    return build.nftables(namespace, ruleset) if backend == "nftables" else build.iptables(namespace, ruleset)


DENY_8081 = Ruleset(filter=[Chain(hook=NetfilterHook.FORWARD, rules=(
    Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(8081)), action=DROP, comment="deny 8081"),
))])


@pytest.mark.parametrize("backend", BACKENDS)
def test_rule_drops_exactly_the_denied_flow(deployment, backend):
    with deployment.builder() as build:
        client, router, server = routed(build)
        assert apply(build, backend, router, DENY_8081) is True
        assert apply(build, backend, router, DENY_8081) is False  # in place: nothing to do
    for version in (4, 6):
        addr = ADDRESSES[version]["server"]
        with TcpServer(server, addr, 8080, b"open:"), TcpServer(server, addr, 8081, b"denied:"):
            assert tcp_request(client, addr, 8080, b"hi") == b"open:hi"
            with pytest.raises(TimeoutError):
                tcp_request(client, addr, 8081, b"hi", timeout=0.5)
        assert ping(client, addr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stateful_policy_with_reject(deployment, backend):
    """Default drop, established traffic back, new connections only to 8080; 9090 is rejected
    (the client learns at once instead of timing out)."""
    policy = Ruleset(filter=[Chain(hook=NetfilterHook.FORWARD, policy=Verdict.DROP, rules=(
        Rule(match=Match(ct_states={CtState.ESTABLISHED, CtState.RELATED}), action=ACCEPT),
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange(8080, 8080), ct_states={CtState.NEW}), action=ACCEPT),
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange(9000, 9999)), action=Reject(RejectWith.TCP_RESET)),
    ))])
    with deployment.builder() as build:
        client, router, server = routed(build)
        apply(build, backend, router, policy)
    for version in (4, 6):
        addr = ADDRESSES[version]["server"]
        with TcpServer(server, addr, 8080, b"ok:"), TcpServer(server, addr, 9090):
            assert tcp_request(client, addr, 8080, b"x") == b"ok:x"
            with pytest.raises(ConnectionRefusedError):
                tcp_request(client, addr, 9090, b"x")
        assert not ping(client, addr, timeout=0.3)  # not allowed by any rule: policy drop


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", [4, 6])
def test_dnat_reaches_every_backend(deployment, backend, version):
    a = ADDRESSES[version]
    service = Ruleset(nat=[Chain(hook=NetfilterHook.PREROUTING, rules=(
        Rule(match=Match(dst=ip_network(a["vip"]), proto=Proto.TCP, dst_ports=PortRange.single(80)),
             action=Dnat(targets=(NatTarget(ip_address(a["server"]), 8080), NatTarget(ip_address(a["server"]), 8082))),
             comment="service web"),
    ))])
    with deployment.builder() as build:
        client, router, server = routed(build)
        apply(build, backend, router, service)
    with TcpServer(server, a["server"], 8080, b"A"), TcpServer(server, a["server"], 8082, b"B"):
        answers = [tcp_request(client, a["vip"], 80, b".") for _ in range(24)]
    assert set(answers) == {b"A.", b"B."}  # each backend is missed with probability 2**-23


@pytest.mark.parametrize("backend", BACKENDS)
def test_flushed_ruleset_is_detected_and_repaired(deployment, backend):
    with deployment.builder() as build:
        client, router, server = routed(build)
        apply(build, backend, router, DENY_8081)
        names = build.names
    check = (lambda: nftables.drift(router, names.nft_table, DENY_8081)) if backend == "nftables" \
        else (lambda: iptables.drift(router, names, DENY_8081))
    assert check() == []
    flush = ["nft", "flush", "ruleset"] if backend == "nftables" else ["iptables", "-F", names.ipt_chain("FORWARD")]
    netns.run(router, flush)
    problems = check()
    assert problems and all(router in problem for problem in problems)
    addr = ADDRESSES[4]["server"]
    with TcpServer(server, addr, 8081, b"leak:"):
        assert tcp_request(client, addr, 8081, b"") == b"leak:"  # the drift is real
        with deployment.builder() as build:
            assert apply(build, backend, router, DENY_8081) is True
        assert check() == []
        with pytest.raises(TimeoutError):
            tcp_request(client, addr, 8081, b"", timeout=0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_icmp_type_and_code_match_in_the_kernel(deployment, backend):
    """Echo requests carry code 0: a drop of type 8 (128) code 1 lets ping through, code 0 does not."""
    def deny_echo(code):
        return Ruleset(filter=[Chain(hook=NetfilterHook.FORWARD, rules=(
            Rule(match=Match(proto=Proto.ICMP, icmp_type=8, icmp_code=code), action=DROP),
            Rule(match=Match(proto=Proto.ICMPV6, icmp_type=128, icmp_code=code), action=DROP),
        ))])

    with deployment.builder() as build:
        client, router, server = routed(build)
        apply(build, backend, router, deny_echo(1))
    for version in (4, 6):
        assert ping(client, ADDRESSES[version]["server"])
    with deployment.builder() as build:
        apply(build, backend, router, deny_echo(0))
    for version in (4, 6):
        assert not ping(client, ADDRESSES[version]["server"], timeout=0.3)


def test_nftables_and_iptables_render_the_same_rule_identities():
    """Both backends tag each rule with the same digest, so drift reports line up."""
    from netvirt.dataplane.kernel.naming import Names
    from netvirt.dataplane.kernel.rulesets import digest_of

    rendered = nftables.render("netvirt_x", DENY_8081)
    nft_digests = {digest_of(c["add"]["rule"]["comment"]) for c in rendered if "rule" in c.get("add", {})}
    text = iptables.render(Names("x", "nvt"), DENY_8081, 4, iptables.Saved())
    ipt_digests = {digest_of(iptables.comment_of(line)) for line in text.splitlines() if "--comment" in line}
    assert nft_digests == ipt_digests - {None} and len(nft_digests) == 1  # None: the jump rule


def test_rules_the_kernel_cannot_express_are_refused_up_front():
    with pytest.raises(RulesetError, match="tcp-reset needs the match to name proto tcp"):
        Ruleset(filter=[Chain(hook=NetfilterHook.INPUT, rules=(Rule(action=Reject(RejectWith.TCP_RESET)),))])
    with pytest.raises(RulesetError, match="NAT to a port needs"):
        Ruleset(nat=[Chain(hook=NetfilterHook.PREROUTING, rules=(
            Rule(action=Dnat(targets=(NatTarget(ip_address("10.0.0.1"), 80),))),))])
    with pytest.raises(RulesetError, match="filter chains run at input, forward or output"):
        Ruleset(filter=[Chain(hook=NetfilterHook.PREROUTING)])
    with pytest.raises(RulesetError, match="more than one chain"):
        Ruleset(filter=[Chain(hook=NetfilterHook.INPUT), Chain(hook=NetfilterHook.INPUT)])


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_source_rules_drop_exactly_the_listed_sources(deployment, backend):
    """300 deny rules differing only in source: nftables makes them one set lookup, iptables a
    linear chain; both drop the client (listed in the middle) and nothing else."""
    sources = [ip_network(f"172.16.{i // 256}.{i % 256}/32") for i in range(300)]
    sources[150] = ip_network(ADDRESSES[4]["client"] + "/32")
    deny = Ruleset(filter=[Chain(hook=NetfilterHook.FORWARD, rules=tuple(
        Rule(match=Match(src=src, proto=Proto.TCP), action=DROP) for src in sources))])
    with deployment.builder() as build:
        client, router, server = routed(build)
        apply(build, backend, router, deny)
    listing = netns.run(router, ["nft", "list", "ruleset"]).stdout.decode()
    rules_listed = [line for line in listing.splitlines() if "drop" in line and "saddr" in line]
    assert len(rules_listed) == (1 if backend == "nftables" else 300)
    with TcpServer(server, ADDRESSES[4]["server"], 8080, b"v4:"), TcpServer(server, ADDRESSES[6]["server"], 8080, b"v6:"):
        with pytest.raises(TimeoutError):
            tcp_request(client, ADDRESSES[4]["server"], 8080, b"", timeout=0.5)
        assert tcp_request(client, ADDRESSES[6]["server"], 8080, b"") == b"v6:"  # IPv6: not listed
    assert ping(client, ADDRESSES[4]["server"])  # ICMP: not matched by the tcp rules
