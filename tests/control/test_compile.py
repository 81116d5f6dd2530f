"""The compiler: spec -> per-host device graphs (docs/control-plane.md, "Compiler")."""

from ipaddress import ip_address, ip_interface, ip_network

import pytest
from compile_specs import SPEC, Packet, verdict

from netvirt.control.compile import CompileError, compile_host, compile_network, naming
from netvirt.graph import (
    Affinity,
    CtState,
    DeviceKind,
    FdbEntry,
    Masquerade,
    NamespaceKind,
    NatTarget,
    Proto,
    Veth,
    validate,
)
from netvirt.management.spec import SpecError, generate, loads
from netvirt.management.spec.analyze import Analysis



@pytest.fixture(scope="module")
def spec():
    return loads(SPEC)


@pytest.fixture(scope="module")
def net(spec):
    return compile_network(spec)


def endpoint_mac(spec, name, index=0):
    return spec.endpoint(name).attachments[index].mac


def test_every_graph_is_valid(net):
    assert validate(net) == []
    assert [host.host for host in net.hosts] == ["host-a", "host-b", "host-c"]


def test_generated_specs_compile_to_valid_graphs():
    assert validate(compile_network(generate(12, 5))) == []


def test_compile_host_is_the_network_host(spec, net):
    for name in ("host-a", "host-b", "host-c"):
        assert compile_host(spec, name) == net.host(name)


def test_unknown_host_is_a_clear_error(spec):
    with pytest.raises(CompileError, match="no host 'host-z'.*host-a, host-b, host-c"):
        compile_host(spec, "host-z")


def test_declaration_order_does_not_matter(spec, net):
    shuffled = spec.model_copy(
        update={kind: tuple(reversed(getattr(spec, kind))) for kind in ("hosts", "networks", "endpoints", "policies")}
    )
    assert compile_network(shuffled) == net


def test_hosts_sit_on_the_underlay(spec, net):
    underlay = net.segments[0]
    assert underlay.name == "underlay" and underlay.mtu == 9000  # the largest host MTU: each NIC limits its own
    assert [(a.host, a.namespace, a.device) for a in underlay.attachments] == [
        (h, h, "eth0") for h in ("host-a", "host-b", "host-c")
    ]
    host_b = net.host("host-b")
    nic = host_b.device("host-b", "eth0")
    assert nic.kind is DeviceKind.NIC and nic.mtu == 9000
    assert nic.addresses == (ip_interface("192.0.2.11/24"),) and nic.origin == "host/host-b"
    ns = host_b.namespace("host-b")
    assert ns.kind is NamespaceKind.HOST and ns.ip_forward
    routes = {(str(r.dst), r.dev) for r in ns.routes}
    assert ("192.0.2.0/24", "eth0") in routes
    assert ("198.51.100.12/32", "eth0") in routes  # host-c is outside host-b's underlay subnet


def test_placement_follows_endpoints_and_routers(net):
    def networks(host):
        return {d.name for d in net.host(host).devices if d.kind is DeviceKind.BRIDGE}

    # blue/green: endpoints on a and b, and the router edge is on every host with one of them
    assert networks("host-a") == {"br-blue", "br-green", "br-red"}
    assert networks("host-b") == {"br-blue", "br-green"}  # red has no endpoint on host-b
    assert networks("host-c") == {"br-blue", "br-green", "br-red"}  # node-c (green) brings edge


def test_tunnels_replicate_head_end_and_know_every_remote_mac(spec, net):
    hosts = {h.name: h.underlay.ip for h in spec.hosts}
    present = {"blue": ["host-a", "host-b", "host-c"], "red": ["host-a", "host-c"]}
    members = {"blue": {"web-1": "host-a", "client-1": "host-a", "web-2": "host-b"}, "red": {"red-1": "host-a", "red-2": "host-c"}}
    for network, on in present.items():
        vni = spec.network(network).vni
        for host in on:
            tunnel = net.host(host).device(host, f"vxlan-{network}")
            config = tunnel.config
            assert tunnel.kind is DeviceKind.VXLAN and tunnel.master == f"br-{network}" and tunnel.parent == "eth0"
            assert config.vni == vni and config.local == hosts[host] and not config.learning
            assert tunnel.mtu == spec.network(network).mtu
            assert list(config.flood) == [hosts[other] for other in on if other != host]
            macs = {e.mac: e.remote for e in config.fdb}
            assert macs == {
                endpoint_mac(spec, ep): hosts[where] for ep, where in members[network].items() if where != host
            }


def test_tenants_with_overlapping_subnets_stay_apart(spec, net):
    assert spec.network("red").subnet == spec.network("blue").subnet
    assert spec.network("red").vni != spec.network("blue").vni
    host_a = net.host("host-a")
    assert host_a.device("host-a", "ve-red-1-0").master == "br-red"
    assert host_a.device("host-a", "ve-web-1-0").master == "br-blue"
    # overlapping addresses live in separate namespaces; the red namespace has no gateway or services
    red = host_a.namespace("red-1")
    assert {str(r.dst) for r in red.routes} == {"10.10.0.0/24"} and red.nat == () and red.neighbours == ()


def test_endpoint_namespace_veth_routes_and_sockets(spec, net):
    host_a = net.host("host-a")
    ns = host_a.namespace("web-1")
    assert ns.kind is NamespaceKind.POD and ns.origin == "endpoint/web-1"
    eth0 = host_a.device("web-1", "eth0")
    blue = spec.network("blue")
    attachment = spec.endpoint("web-1").attachments[0]
    assert eth0.kind is DeviceKind.VETH and eth0.mac == attachment.mac and eth0.mtu == blue.mtu
    assert eth0.addresses == (ip_interface("10.10.0.11/24"), ip_interface(f"{attachment.ip6}/64"))
    assert eth0.config == Veth("ve-web-1-0", "host-a")
    port = host_a.device("host-a", "ve-web-1-0")
    assert port.config == Veth("eth0", "web-1") and port.master == "br-blue" and port.addresses == ()
    routes = {(str(r.dst), str(r.via) if r.via else None, r.dev) for r in ns.routes}
    assert routes == {
        ("10.10.0.0/24", None, "eth0"),
        ("fd00:10::/64", None, "eth0"),
        ("0.0.0.0/0", "10.10.0.1", "eth0"),
        ("::/0", "fd00:10::1", "eth0"),
        ("10.96.0.0/16", None, "eth0"),  # the service subnet: routed before output DNAT rewrites it
    }
    gateway_mac = naming.gateway_mac("edge")
    assert {(str(n.address), n.mac, n.dev) for n in ns.neighbours} == {
        ("10.10.0.1", gateway_mac, "eth0"),
        ("fd00:10::1", gateway_mac, "eth0"),
    }
    socket = host_a.device("web-1", "tcp-80")
    assert socket.kind is DeviceKind.SOCKET and socket.config.port == 80 and socket.config.proto is Proto.TCP


def test_host_endpoint_lives_in_the_host_namespace(net):
    host_c = net.host("host-c")
    iface = host_c.device("host-c", "ep-node-c-0")
    assert iface.config == Veth("ve-node-c-0", "host-c") and iface.addresses == (ip_interface("10.20.0.3/24"),)
    assert host_c.device("host-c", "ve-node-c-0").master == "br-green"
    assert "node-c" not in {ns.name for ns in host_c.namespaces}
    routes = {(str(r.dst), str(r.via) if r.via else None, r.dev) for r in host_c.namespace("host-c").routes}
    # the host keeps its own default route; the router's other prefixes go via the gateway
    assert ("10.10.0.0/24", "10.20.0.1", "ep-node-c-0") in routes
    assert ("203.0.113.0/24", "10.20.0.1", "ep-node-c-0") in routes
    assert ("0.0.0.0/0", None, "eth0") in routes


def test_router_is_distributed_with_an_anycast_gateway(spec, net):
    mac = naming.gateway_mac("edge")
    for host in ("host-a", "host-b", "host-c"):
        graph = net.host(host)
        ns = graph.namespace("edge")
        assert ns.kind is NamespaceKind.ROUTER and ns.ip_forward and ns.origin == "router/edge"
        for network, gateways in (("blue", ["10.10.0.1/24", "fd00:10::1/64"]), ("green", ["10.20.0.1/24"])):
            leg = graph.device("edge", f"gw-{network}")
            assert leg.mac == mac and [str(a) for a in leg.addresses] == gateways
            assert graph.device(host, f"gw-{network}").master == f"br-{network}"
            bridge = graph.device(host, f"br-{network}")
            assert bridge.config.fdb == (FdbEntry(mac, device=f"gw-{network}"),)
        # a static neighbour for every endpoint address of the router's networks
        expected = {
            (str(a), att.mac, f"gw-{att.network}")
            for ep in spec.endpoints
            for att in ep.attachments
            if att.network in ("blue", "green")
            for a in (att.ip, att.ip6)
            if a is not None
        }
        assert {(str(n.address), n.mac, n.dev) for n in ns.neighbours} == expected
        static = [r for r in ns.routes if r.via == ip_address("10.20.0.254")]
        assert [(str(r.dst), r.dev) for r in static] == [("203.0.113.0/24", "gw-green")]


def test_snat_router_egresses_behind_the_underlay_address(net):
    graph = net.host("host-a")
    uplink = graph.device("edge", "uplink")
    port = graph.device("host-a", "up-edge")
    assert uplink.config == Veth("up-edge", "host-a") and port.config == Veth("uplink", "edge")
    (router_side,), (host_side,) = uplink.addresses, port.addresses
    assert router_side.network == host_side.network and router_side.network.subnet_of(ip_network("169.254.0.0/16"))
    router = graph.namespace("edge")
    default = [r for r in router.routes if r.dst == ip_network("0.0.0.0/0")]
    assert [(r.via, r.dev) for r in default] == [(host_side.ip, "uplink")]
    masquerade = router.chain("nat", "postrouting").rules
    assert [(r.match.out_iface, type(r.action)) for r in masquerade] == [("uplink", Masquerade)]
    host_nat = graph.namespace("host-a").chain("nat", "postrouting").rules
    assert [(str(r.match.src), r.match.out_iface, type(r.action)) for r in host_nat] == [
        ("169.254.0.0/16", "eth0", Masquerade)
    ]


def test_ingress_policy_chain(net):
    chain = net.host("host-a").namespace("web-1").chain("filter", "input")
    assert chain.rules[0].match.ct_states == {CtState.ESTABLISHED, CtState.RELATED}

    def to_web(src, proto, **fields):
        return verdict(chain, Packet.of(src, "10.10.0.11", proto, in_iface="eth0", **fields))

    assert to_web("10.10.0.31", Proto.TCP, dst_port=80) == "accept"
    assert to_web("10.10.0.31", Proto.TCP, dst_port=22) == "drop"  # the default
    assert to_web("10.10.0.31", Proto.TCP, dst_port=22, ct_state=CtState.ESTABLISHED) == "accept"
    assert to_web("10.10.0.31", Proto.ICMP, icmp_type=8) == "accept"
    assert to_web("10.10.0.31", Proto.ICMP, icmp_type=13) == "drop"
    assert verdict(chain, Packet.of("fd00:10::9", "fd00:10::1", Proto.ICMPV6, icmp_type=128, in_iface="eth0")) == "accept"
    assert to_web("10.20.0.21", Proto.TCP, dst_port=22) == "reject:tcp-reset"
    assert to_web("10.20.0.21", Proto.UDP, dst_port=53) == "reject:port-unreachable"
    logged = [r for r in chain.rules if r.log]
    assert logged and all(str(r.match.src) in ("10.10.0.12/32", "10.10.0.11/32") or r.match.src.version == 6 for r in logged)


def test_local_side_of_a_rule_selects_the_endpoint(net):
    # "allow tcp/80 to app=web" is about web endpoints: client-1's chain leaves it out
    chain = net.host("host-a").namespace("client-1").chain("filter", "input")
    assert verdict(chain, Packet.of("10.10.0.11", "10.10.0.31", Proto.TCP, dst_port=80, in_iface="eth0")) == "drop"


def test_egress_policy_on_a_host_endpoint(net):
    chain = net.host("host-c").namespace("host-c").chain("filter", "output")

    def from_node(dst, proto, iface="ep-node-c-0"):
        return verdict(chain, Packet.of("10.20.0.3", dst, proto, dst_port=53, out_iface=iface))

    assert from_node("10.10.0.11", Proto.UDP) == "drop"  # to web-1, by name
    assert from_node("10.10.0.12", Proto.UDP) == "accept"  # the default allows
    assert from_node("10.10.0.11", Proto.UDP, iface="eth0") == "accept"  # the underlay is not the endpoint
    assert net.host("host-c").namespace("host-c").chain("filter", "input") is None


def test_services_dnat_in_every_endpoint_of_the_tenant(net):
    targets = (NatTarget(ip_address("10.10.0.11"), 80), NatTarget(ip_address("10.10.0.12"), 80))
    acme = [("host-a", "web-1"), ("host-a", "client-1"), ("host-b", "web-2"), ("host-b", "db-1"), ("host-c", "host-c")]
    for host, namespace in acme:
        (rule,) = net.host(host).namespace(namespace).chain("nat", "output").rules
        assert str(rule.match.dst) == "10.96.0.10/32" and rule.match.proto is Proto.TCP
        assert rule.match.dst_ports.first == 80
        assert rule.action.targets == targets and rule.action.affinity is Affinity.CLIENT_IP
    for host, namespace in (("host-a", "red-1"), ("host-c", "red-2")):
        assert net.host(host).namespace(namespace).chain("nat", "output") is None


def test_provider_network_has_its_own_segment():
    spec = loads(
        SPEC.replace("{name: red, tenant: globex, encap: vxlan,", "{name: red, tenant: globex, encap: none,")
    )
    net = compile_network(spec)
    assert validate(net) == []
    segment = next(s for s in net.segments if s.name == "net-red")
    assert [(a.host, a.device) for a in segment.attachments] == [("host-a", "nic-red"), ("host-c", "nic-red")]
    nic = net.host("host-a").device("host-a", "nic-red")
    assert nic.kind is DeviceKind.NIC and nic.master == "br-red" and nic.addresses == ()
    assert not any(d.kind is DeviceKind.VXLAN and d.name.endswith("red") for d in net.host("host-a").devices)


def test_geneve_and_nvgre_networks_get_their_tunnel_kind():
    text = SPEC.replace("{name: green, tenant: acme, encap: vxlan,", "{name: green, tenant: acme, encap: geneve,")
    text = text.replace("{name: red, tenant: globex, encap: vxlan,", "{name: red, tenant: globex, encap: nvgre,")
    net = compile_network(loads(text))
    assert validate(net) == []
    geneve = net.host("host-a").device("host-a", "geneve-green")
    assert geneve.kind is DeviceKind.GENEVE and geneve.config.dst_port == 6081
    assert net.host("host-a").device("host-a", "nvgre-red").kind is DeviceKind.NVGRE


def test_long_names_are_shortened_stably_and_distinctly():
    long_a, long_b = "a-network-with-a-long-name-1", "a-network-with-a-long-name-2"
    text = SPEC.replace("name: blue,", f"name: {long_a},").replace("[blue, green]", f"[{long_a}, green]")
    text = text.replace("network: blue", f"network: {long_a}").replace("name: red,", f"name: {long_b},")
    text = text.replace("network: red", f"network: {long_b}")
    net = compile_network(loads(text))
    assert validate(net) == []
    bridges = sorted(d.name for d in net.host("host-a").devices if d.kind is DeviceKind.BRIDGE)
    assert len(set(bridges)) == 3 and all(len(name) <= 15 for name in bridges)
    assert naming.bridge(long_a) == naming.bridge(long_a) != naming.bridge(long_b)


def test_icmp_code_compiles_for_both_families():
    # port unreachable (3/3) has an ICMPv6 twin (1/4); fragmentation needed (3/4) does not: IPv4 only
    rules = "{action: allow, proto: icmp, icmp_type: 3, icmp_code: 3}\n      - {action: allow, proto: icmp, icmp_type: 3, icmp_code: 4}"
    net = compile_network(loads(SPEC.replace("{action: allow, proto: icmp, icmp_type: 8}", rules)))
    assert validate(net) == []
    chain = net.host("host-a").namespace("web-1").chain("filter", "input")
    icmp = {(r.match.proto, r.match.icmp_type, r.match.icmp_code) for r in chain.rules if r.match.icmp_type is not None}
    assert icmp == {(Proto.ICMP, 3, 3), (Proto.ICMP, 3, 4), (Proto.ICMPV6, 1, 4)}

    def to_web(src, dst, proto, **fields):
        return verdict(chain, Packet.of(src, dst, proto, in_iface="eth0", **fields))

    assert to_web("10.10.0.31", "10.10.0.11", Proto.ICMP, icmp_type=3, icmp_code=3) == "accept"
    assert to_web("10.10.0.31", "10.10.0.11", Proto.ICMP, icmp_type=3, icmp_code=4) == "accept"
    assert to_web("10.10.0.31", "10.10.0.11", Proto.ICMP, icmp_type=3, icmp_code=1) == "drop"
    assert to_web("fd00:10::9", "fd00:10::1", Proto.ICMPV6, icmp_type=1, icmp_code=4) == "accept"
    assert to_web("fd00:10::9", "fd00:10::1", Proto.ICMPV6, icmp_type=1, icmp_code=3) == "drop"


def test_namespace_clash_is_a_clear_error(monkeypatch):
    # validation refuses the spec (tests/control/test_compile_names.py); without that check the
    # compiler still names both objects instead of building a broken graph
    text = SPEC.replace("name: edge,", "name: web-1,")
    with pytest.raises(SpecError, match="router 'web-1' and endpoint 'web-1'"):
        loads(text)
    monkeypatch.setattr(Analysis, "namespaces", lambda self: None)
    with pytest.raises(CompileError, match="router/web-1 and endpoint/web-1 would both be namespace 'web-1'"):
        compile_network(loads(text))
