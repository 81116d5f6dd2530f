"""Anomaly checks: each kind found on a path built to show it, with its step, message and fix."""

import sys
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
from sim_graphs import Lab  # noqa: E402
from test_sim_tunnels import overlay  # noqa: E402

from netvirt.dataplane.events import Disposition  # noqa: E402
from netvirt.graph import (  # noqa: E402
    Accept,
    Chain,
    CtState,
    DeviceKind,
    Dnat,
    Match,
    NamespaceKind,
    NatTarget,
    NetfilterHook,
    PortRange,
    Proto,
    Route,
    Rule,
    Tunnel,
    Verdict,
    Veth,
)
from netvirt.control.compile import compile_network  # noqa: E402
from netvirt.trace.plan import plan_trace  # noqa: E402
from netvirt.management.spec import load, loads  # noqa: E402
from netvirt.trace import Flow, Tracer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
A, B = ip_address("10.0.0.2"), ip_address("10.0.0.3")


def kinds(trace) -> set[str]:
    return {anomaly.kind for anomaly in trace.anomalies}


def only(trace, kind):
    found = [anomaly for anomaly in trace.anomalies if anomaly.kind == kind]
    assert found, f"no {kind} in {trace.anomalies}"
    anomaly = found[0]
    assert anomaly.message and anomaly.fix and 1 <= anomaly.step <= trace.rows[-1].step
    return anomaly


def test_encapsulation_overhead_exceeding_the_overlay_port_mtu():
    trace = Tracer(overlay(pod_mtu=1500)).trace(Flow("h1", "a", A, B, "tcp", 40000, 80, 1480))
    anomaly = only(trace, "encap_mtu")
    assert "tun0" in anomaly.message and "1450 or less" in anomaly.fix


def test_encapsulation_overhead_fragmenting_the_outer_packet():
    network = overlay(underlay_mtu=1400, overlay_mtu=1500, pod_mtu=1500)
    packet_size = 1450
    tracer = Tracer(network)
    from netvirt.wire.builders import probe

    walk, answer = tracer.cache.exchange("h1", "a", probe(A, B, "udp", src_port=5000, dst_port=53, size=packet_size,
                                                             dont_fragment=False))
    from netvirt.trace.anomalies import check
    from netvirt.trace.model import build as build_trace

    trace = build_trace(walk, tracer.topology.stages)
    found = check(trace, walk, answer, tracer.topology)
    assert any(a.kind == "encap_mtu" and "fragmented" in a.message and "minus 50" in a.fix for a in found)


def double_overlay():
    """Pods in VMs whose own overlay (VNI 1) rides on the hosts' overlay (VNI 2)."""
    lab = Lab("h1")
    ends = []
    for host, vm, pod, pod_address, vm_address, peer_vm in (
            ("h1", "vm1", "a", "10.0.0.2/24", "10.9.0.1", "10.9.0.2"),
            ("h2", "vm2", "b", "10.0.0.3/24", "10.9.0.2", "10.9.0.1")):
        lab.host(host)
        lab.ns("host")
        underlay = {"h1": "192.0.2.1", "h2": "192.0.2.2"}
        nic = lab.add(DeviceKind.NIC, "eth0", "host", addresses=[f"{underlay[host]}/24"], mtu=1600)
        ends.append((host, nic))
        lab.bridge(name="br-o", address=None, mtu=1550)
        lab.add(DeviceKind.VXLAN, "tun-o", "host", master="br-o", mtu=1550, config=Tunnel(
            vni=2, local=ip_address(underlay[host]),
            flood=(ip_address(underlay["h2" if host == "h1" else "h1"]),)))
        lab.ns(vm, NamespaceKind.VM)
        lab.add(DeviceKind.VETH, f"v-{vm}", "host", config=Veth("eth0", vm), master="br-o", mtu=1550)
        lab.add(DeviceKind.VETH, "eth0", vm, config=Veth(f"v-{vm}", "host"), addresses=[f"{vm_address}/24"], mtu=1550)
        lab.bridge(namespace=vm, address=None)
        lab.add(DeviceKind.VXLAN, "tun-i", vm, master="br0", mtu=1500, config=Tunnel(
            vni=1, local=ip_address(vm_address), flood=(ip_address(peer_vm),)))
        lab.pod(pod, pod_address, gateway=None, host_ns=vm, listen=("tcp", 80) if pod == "b" else None)
    lab.segment("underlay", *ends, mtu=1600)
    return lab.network()


def test_double_encapsulation():
    trace = Tracer(double_overlay()).trace(Flow("h1", "a", A, B, "tcp", 40000, 80))
    assert trace.disposition is Disposition.DELIVERED
    anomaly = only(trace, "double_encapsulation")
    assert "vni 2" in anomaly.message and "100 bytes" in anomaly.message


def test_double_nat_names_both_translations():
    spec = load(ROOT / "examples/seed/anomaly-2-wsl2-k8s.yaml")
    tracer, flow, skip = plan_trace(spec, None, None, None, None, 40000, None, compile=compile_network)
    trace = tracer.trace(flow, skip=skip)
    anomaly = only(trace, "double_nat")
    assert "WSL2 port proxy" in anomaly.message and "kube-proxy" in anomaly.message
    assert only(trace, "wsl2_nat").fix.startswith("set networkingMode=mirrored")


def test_hairpin_service_back_to_the_client():
    lab = Lab()
    service = Chain(hook=NetfilterHook.PREROUTING, rules=(Rule(
        match=Match(dst=ip_network("10.96.0.10/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
        action=Dnat(targets=(NatTarget(A, 80),)), comment="svc to a"),))
    lab.ns("host", ip_forward=True, nat=(service,))
    lab.bridge()
    lab.pod("a", "10.0.0.2/24", listen=("tcp", 80))
    trace = Tracer(lab.network()).trace(Flow("h1", "a", A, ip_address("10.96.0.10"), "tcp", 40000, 80))
    assert "back to itself" in only(trace, "hairpin").message


def asymmetric(return_forwarding=True, firewall=True):
    """a -> r1 -> b, b -> r2 -> a; with ``firewall`` r1 is a conntrack firewall (new tcp/80 and
    established pass, the rest is dropped)."""
    stateful = (Chain(hook=NetfilterHook.FORWARD, policy=Verdict.DROP, rules=(
        Rule(match=Match(ct_states=frozenset({CtState.ESTABLISHED})), action=Accept()),
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(80)), action=Accept()))),)
    lab = Lab()
    lab.ns("host")
    lab.bridge(address=None)
    lab.bridge(name="br1", address=None)
    for router, left, right in (("r1", "10.0.0.11/24", "10.1.0.11/24"), ("r2", "10.0.0.12/24", "10.1.0.12/24")):
        lab.ns(router, NamespaceKind.ROUTER, ip_forward=return_forwarding or router == "r1",
               filter=stateful if firewall and router == "r1" else ())
        for bridge, leg, address in (("br0", "l", left), ("br1", "r", right)):
            lab.add(DeviceKind.VETH, f"{router}-{leg}", "host", config=Veth(leg, router), master=bridge)
            lab.add(DeviceKind.VETH, leg, router, config=Veth(f"{router}-{leg}", "host"), addresses=[address])
    lab.pod("a", "10.0.0.2/24", gateway="10.0.0.11")
    lab.pod("b", "10.1.0.2/24", gateway="10.1.0.12", bridge="br1", listen=("tcp", 80))
    return lab.network()


def test_asymmetric_return_path():
    trace = Tracer(asymmetric()).trace(Flow("h1", "a", A, ip_address("10.1.0.2"), "tcp", 40000, 80))
    assert trace.disposition is Disposition.DELIVERED
    anomaly = only(trace, "asymmetric_return")
    assert "h1:r1" in anomaly.message and "h1:r2" in anomaly.message


def test_asymmetric_stateless_routers_are_fine():
    """Two stateless routers, one per direction (a distributed router's return path): no anomaly."""
    trace = Tracer(asymmetric(firewall=False)).trace(Flow("h1", "a", A, ip_address("10.1.0.2"), "tcp", 40000, 80))
    assert trace.disposition is Disposition.DELIVERED
    assert "asymmetric_return" not in kinds(trace)


def test_return_dropped():
    trace = Tracer(asymmetric(return_forwarding=False)).trace(Flow("h1", "a", A, ip_address("10.1.0.2"), "tcp",
                                                                   40000, 80))
    assert "does not forward" in only(trace, "return_dropped").message


@pytest.mark.parametrize(("source", "target", "options", "kind"), [
    ("client-1", "db-1", {}, "policy_drop"),
    ("globex-1", "db-1", {}, "no_route"),
    ("globex-1", "globex-2", {"dport": 81}, "no_listener"),
    ("web-1", "web-2", {"size": 1500}, "mtu"),
])
def test_quickstart_anomalies(source, target, options, kind):
    spec = load(ROOT / "examples/quickstart.yaml")
    tracer, flow, skip = plan_trace(spec, source, target, None, options.get("dport"), 40000, None,
                                    options.get("size", 0), compile=compile_network)
    anomaly = only(tracer.trace(flow, skip=skip), kind)
    if kind == "policy_drop":
        assert "policy green-in" in anomaly.message


def test_a_flow_to_its_own_namespace_has_no_asymmetric_return():
    """The answer never leaves web-1, whose filter keeps state: both paths end there, no one-sided hop."""
    spec = load(ROOT / "examples/quickstart.yaml")
    tracer, flow, skip = plan_trace(spec, "web-1", "web-1", None, None, 40000, None, compile=compile_network)
    trace = tracer.trace(flow, skip=skip)
    assert trace.disposition is Disposition.DELIVERED and not kinds(trace), trace.anomalies


def test_ttl_expired_forwarding_disabled_and_no_fdb():
    lab = Lab()
    lab.ns("host", ip_forward=True, routes=(Route(dst=ip_network("10.9.0.0/16"), via=B),))
    lab.bridge()
    lab.pod("a", "10.0.0.2/24")
    lab.pod("b", "10.0.0.3/24", ip_forward=True)
    lab.pod("c", "10.0.0.4/24", gateway=None)
    tracer = Tracer(lab.network())
    only(tracer.trace(Flow("h1", "a", A, ip_address("10.9.0.1"), "tcp", 40000, 80)), "ttl_expired")
    only(tracer.trace(Flow("h1", "c", ip_address("10.0.0.4"), B, "tcp", 40000, 81)), "no_listener")
    lab2 = Lab()
    lab2.ns("host", ip_forward=False)
    lab2.bridge()
    lab2.pod("a", "10.0.0.2/24")
    trace = Tracer(lab2.network()).trace(Flow("h1", "a", A, ip_address("192.0.2.9"), "tcp", 40000, 80))
    only(trace, "forwarding_disabled")


def test_isolated_network():
    spec = loads("name: s\nstacks:\n  - name: s\n    layers:\n      - {layer: host, os: windows}\n"
                 "      - {layer: hypervisor, type: virtualbox, network: internal}\n      - {layer: vm}\n"
                 "      - {layer: app, listen: tcp/80}\n")
    tracer, flow, skip = plan_trace(spec, None, None, None, None, 40000, None, compile=compile_network)
    trace = tracer.trace(flow, skip=skip)
    assert trace.hops  # the outside world stays in the trace when nothing else happens
    assert {"isolated_network", "no_route"} <= kinds(trace)


@pytest.mark.parametrize(("source", "target"), [("a", "b"), ("c", "b"), ("b", "a"), ("d", "a")])
def test_distributed_router_answers_route_on_the_replying_host(source, target):
    """The kernel's bridge pins the gateway MAC to the local router leg (sticky static FDB), so an
    answer is routed by the copy on the replying host, never on a third host: no anomaly."""
    spec = load(ROOT / "examples/distributed-router.yaml")
    tracer, flow, skip = plan_trace(spec, source, target, None, None, 40000, None, compile=compile_network)
    trace = tracer.trace(flow, skip=skip)
    walk, answer = tracer.cache.exchange(flow.host, flow.namespace, flow.packet())
    assert trace.disposition is Disposition.DELIVERED and answer.disposition is Disposition.DELIVERED
    replier = spec.endpoint(target).host
    routers = {e.host for e in answer.events if e.namespace == "r"}
    assert routers == {replier}
    assert {e.host for e in answer.events} == {replier, spec.endpoint(source).host}
    assert "asymmetric_return" not in kinds(trace)
