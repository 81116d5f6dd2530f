"""examples/quickstart.yaml in the real kernel through the ``linux`` backend: real TCP, UDP and
ICMP between every pair of endpoints (within and across hosts over VXLAN, IPv4 and IPv6), tenant
isolation with overlapping addresses, the policies dropping exactly the denied flows, the service
VIP reaching every backend, nftables and iptables giving identical reachability, read-back and
drift, and converging again."""

from ipaddress import ip_address

import pytest
from linux_network import Servers, bring_up, flows, probe, run_probes, tear_down
from linux_testbed import TcpServer, tcp_request

from netvirt.dataplane.kernel import netns
from netvirt.graph import diff
from netvirt.management.spec import load

SPEC = load("examples/quickstart.yaml")
VIP = str(SPEC.service("web").vip)
TENANT = {network.name: network.tenant for network in SPEC.networks}
LABELS = {endpoint.name: endpoint.labels for endpoint in SPEC.endpoints}


def tenant(endpoint: str) -> str:
    return TENANT[SPEC.endpoint(endpoint).attachments[0].network]


def network_of(endpoint: str) -> str:
    return SPEC.endpoint(endpoint).attachments[0].network


def owner(source: str, address: str) -> str | None:
    """The endpoint of the source's tenant that has ``address`` (tenants may overlap)."""
    for endpoint in SPEC.endpoints:
        attachment = endpoint.attachments[0]
        if tenant(endpoint.name) == tenant(source) and address in (str(attachment.ip), str(attachment.ip6)):
            return endpoint.name
    return None


def expected(source: str, address: str, proto: str, port: int) -> str:
    """What quickstart's spec says a probe gets (written from its policies and services)."""
    families = {ip_address(a).version for a in (SPEC.endpoint(source).attachments[0].ip,
                                                 SPEC.endpoint(source).attachments[0].ip6) if a is not None}
    if address == VIP:
        return "ok:web" if tenant(source) == "acme" and (proto, port) == ("tcp", 80) else "blocked"
    target = owner(source, address)
    if target is None or ip_address(address).version not in families:
        return "blocked"
    answer = "ok" if proto == "icmp" else f"ok:{target}"
    if network_of(target) == "orange":  # no policy
        return answer
    if network_of(target) == "blue":  # blue-in: tcp/80 to app=web, icmp; default drop
        if proto == "icmp" or (proto, port) == ("tcp", 80) and LABELS[target].get("app") == "web":
            return answer
        return "blocked"
    # green-in: tcp/5432 from app=web to db-1; ssh rejected; default drop
    if (proto, port) == ("tcp", 5432) and LABELS[source].get("app") == "web":
        return answer
    return "refused" if (proto, port) == ("tcp", 22) else "blocked"


def normalised(outcome: str, address: str) -> str:
    """A VIP flow may land on either backend: count both as the service answering."""
    return "ok:web" if address == VIP and outcome in ("ok:web-1", "ok:web-2") else outcome


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    net = bring_up(SPEC, tmp_path_factory.mktemp("state"))
    try:
        yield net
    finally:
        tear_down(net)


@pytest.fixture(scope="module")
def matrices(network):
    """Every flow's outcome under nftables, then under iptables (the same network re-applied)."""
    wanted = flows(network, extra_targets=(VIP,))
    found = {}
    with Servers(network):
        for kind in ("nftables", "iptables"):
            network.apply(kind)
            found[kind] = {flow: normalised(outcome, flow[1]) for flow, outcome in run_probes(network, wanted).items()}
    network.apply("nftables")
    return found


def test_every_flow_gets_what_the_spec_says(matrices):
    wrong = {flow: (outcome, expected(*flow)) for flow, outcome in matrices["nftables"].items()
             if outcome != expected(*flow)}
    assert wrong == {}, "flow: (observed, expected)"


def test_nftables_and_iptables_give_identical_reachability(matrices):
    differ = {flow: (matrices["nftables"][flow], matrices["iptables"][flow]) for flow in matrices["nftables"]
              if matrices["nftables"][flow] != matrices["iptables"][flow]}
    assert differ == {}
    assert len(matrices["iptables"]) == len(matrices["nftables"]) > 200


def test_the_matrix_covers_what_matters(matrices):
    """Guards the test itself: cross-host TCP/UDP over v4 and v6, denials, resets and isolation."""
    outcomes = matrices["nftables"]
    web2 = [str(a) for a in (SPEC.endpoint("web-2").attachments[0].ip, SPEC.endpoint("web-2").attachments[0].ip6)]
    assert outcomes[("client-1", web2[0], "tcp", 80)] == "ok:web-2"  # host-a -> host-b over VXLAN, IPv4
    assert outcomes[("client-1", web2[1], "tcp", 80)] == "ok:web-2"  # ... IPv6
    assert outcomes[("db-1", web2[0], "tcp", 80)] == "ok:web-2"  # routed green -> blue
    assert outcomes[("globex-2", "10.10.0.20", "udp", 53)] == "ok:globex-1"  # the same IP, the other tenant
    assert outcomes[("web-2", "10.10.0.20", "udp", 53)] == "blocked"  # web-1 (blue-in drops udp)
    assert outcomes[("web-2", "10.10.0.20", "tcp", 80)] == "ok:web-1"
    assert outcomes[("client-1", str(SPEC.endpoint("db-1").attachments[0].ip), "tcp", 22)] == "refused"
    assert {o for o in outcomes.values()} >= {"ok", "ok:web", "blocked", "refused"}


@pytest.mark.parametrize("version", [4, 6])
def test_tcp_bulk_across_hosts(network, version):
    """16 KiB each way between hosts over VXLAN (several segments through the tunnel)."""
    server, client = network.namespace("web-2"), network.namespace("web-1")
    address = network.addresses("web-2")[0 if version == 4 else 1]
    payload = bytes(range(256)) * 64
    with TcpServer(server, address, 80, name=b"web-2:"):
        assert tcp_request(client, address, 80, payload) == b"web-2:" + payload


def test_service_vip_reaches_every_backend(network):
    seen = set()
    with Servers(network):
        for _ in range(40):
            seen.add(probe(network.namespace("client-1"), VIP, "tcp", 80))
            if seen >= {"ok:web-1", "ok:web-2"}:
                break
    assert seen == {"ok:web-1", "ok:web-2"}


def test_realized_reads_back_equal_to_desired(network):
    for graph in network.graph.hosts:
        realized = network.backends[graph.host].read(graph)
        changes = [c for c in diff(realized, graph).changes if not c.key.split("/")[-1].startswith(("tcp-", "udp-"))]
        assert changes == []
        assert network.backends[graph.host].drift(graph) == []


def test_drift_is_reported_and_repaired(network):
    graph = network.graph.host("host-a")
    backend = network.backends["host-a"]
    netns.run(network.names.graph_namespace("host-a", "host-a"), ["ip", "link", "del", "ve-web-1-0"])
    netns.run(network.namespace("client-1"), ["nft", "flush", "table", "inet", network.names.nft_table])
    changes = {(c.op.value, c.key) for c in diff(backend.read(graph), graph).changes}
    assert ("add", "host-a/ve-web-1-0") in changes and ("add", "web-1/eth0") in changes
    assert ("change", "client-1") in changes  # its filter chain is empty now
    assert any("flushed" in line for line in backend.drift(graph))
    backend.forget()  # a resync: the full converge (an apply of the same graph alone trusts the last one)
    report = backend.apply(graph)
    assert report.ok and report.created >= 2
    assert [c for c in diff(backend.read(graph), graph).changes if "tcp-" not in c.key] == []
    assert backend.drift(graph) == []
    assert probe(network.namespace("client-1"), network.addresses("web-1")[0], "icmp") == "ok"


def test_an_agent_resync_repairs_drift(network, tmp_path):
    from netvirt.control.agent import Agent
    from netvirt.control.state import Blob, TreeWriter, desired_key, write_blobs
    from netvirt.control.store import open_store

    graph = network.graph.host("host-a")
    backend = network.backends["host-a"]
    with open_store(f"sqlite://{tmp_path / 'store.db'}") as store:
        writer = TreeWriter()
        root = writer.graph(graph)
        write_blobs(store, [(Blob.of(value), value) for value in writer.blobs.values()])
        store.put(desired_key("host-a"), root.pointer())
        agent = Agent("host-a", store, backend)
        agent.resync()
        netns.run(network.names.graph_namespace("host-a", "host-a"), ["ip", "link", "del", "ve-web-1-0"])
        assert backend.apply(graph).ok  # an apply alone trusts the last one: the link stays missing
        assert ("add", "host-a/ve-web-1-0") in {(c.op.value, c.key) for c in diff(backend.read(graph), graph).changes}
        agent.resync()  # the periodic resync converges everything
    assert [c for c in diff(backend.read(graph), graph).changes if "tcp-" not in c.key] == []
    assert probe(network.namespace("client-1"), network.addresses("web-1")[0], "icmp") == "ok"


def test_verify_all_agrees_with_the_simulator_and_catches_a_flushed_policy(network):
    from dataclasses import replace

    from netvirt.trace.plan import verify_probes
    from netvirt.dataplane.kernel.observe import KernelObserver
    from netvirt.trace.verify import Verifier

    probes = verify_probes(SPEC, 21000)
    flows = [p.flow for p in probes]
    with Verifier(network.graph, KernelObserver(network.names)) as verifier:
        results = verifier.verify_all(flows)
        assert [(p.source, p.target, r.problems) for p, r in zip(probes, results) if not r.agrees] == []
        assert len(results) == 42  # 36 endpoint and service flows, 6 to the outside world
        kinds = {r.observed.disposition for r in results}
        assert kinds == {"delivered", "dropped", "rejected"}
        cross_host = next(r for p, r in zip(probes, results) if (p.source, p.target) == ("client-1", "web-2"))
        assert "host-b:host-b/eth0" in cross_host.observed.places
        assert cross_host.observed.packets["host-a:host-a/eth0"].tunnel[2:] == (4789, SPEC.network("blue").vni)
        # both directions: the answer came back the predicted way, tunnelled host-b -> host-a
        assert cross_host.observed.answered == "delivered"
        assert cross_host.observed.answer.places == cross_host.predicted.answer.places
        back = cross_host.observed.answer.packets["host-b:host-b/eth0"]
        assert back.tunnel == (str(SPEC.host("host-b").underlay.ip), str(SPEC.host("host-a").underlay.ip), 4789,
                               SPEC.network("blue").vni)
        service = next(r for p, r in zip(probes, results) if (p.source, p.target) == ("client-1", "service/web"))
        # the service is DNATed in the client's own stack: the answer reaches client-1/eth0 from the
        # backend (reverse NAT to the VIP follows inside the stack), as the simulator says
        backend = service.observed.request.packets["host-a:client-1/eth0"].inner[1]
        assert backend != "10.96.0.10" and service.observed.answer.packets["host-a:client-1/eth0"].inner[0] == backend
        assert service.observed.answer.packets == service.predicted.answer.packets
        assert all(r.observed.answered == r.predicted.answered for r in results)
        assert {r.observed.answered for r in results} >= {"delivered", "none"}
        # the kernel stops agreeing once its policy is gone: client-1 reaches the database
        netns.run(network.namespace("db-1"), ["nft", "flush", "chain", "inet", network.names.nft_table, "filter_input"])
        index = next(i for i, p in enumerate(probes) if (p.source, p.target) == ("client-1", "db-1"))
        broken = verifier.verify(replace(flows[index], src_port=29000))
    network.apply("nftables")
    assert broken.problems[0] == "disposition: predicted dropped, observed delivered"
    assert "answer: predicted none, observed delivered" in broken.problems
    assert broken.predicted.places[-1] == "host-b:db-1/eth0"  # the predicted drop point
