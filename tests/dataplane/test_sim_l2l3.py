"""Simulator L2 and L3 semantics: bridges (learning, static FDB, flooding, hairpin, MTU), ARP and
IPv6 ND, longest-prefix routing, TTL, forwarding, delivery and the answers when nothing listens."""

from ipaddress import ip_address, ip_network

from sim_graphs import Lab, actions, assert_valid

from netvirt.dataplane.events import Action, Disposition
from netvirt.dataplane.sim import Simulator
from netvirt.wire.builders import probe
from netvirt.graph import DeviceKind, FdbEntry, NamespaceKind, Neighbour, Route, RouteType
from netvirt.wire import dissect, icmpv4, icmpv6, tcp
from netvirt.wire.fields import headers

A, B = ip_address("10.0.0.2"), ip_address("10.0.0.3")


def two_pods(**pod_b):
    lab = Lab()
    lab.ns("host", ip_forward=True)
    lab.bridge()
    lab.pod("a", "10.0.0.2/24")
    lab.pod("b", "10.0.0.3/24", listen=("tcp", 80), **pod_b)
    return lab


def test_same_bridge_delivery_resolves_arp_learns_and_keeps_checksums():
    sim = Simulator(two_pods().network())
    walk = sim.send("h1", "a", probe(A, B, "tcp", src_port=40000, dst_port=80))
    assert walk.disposition is Disposition.DELIVERED and walk.delivered_in == ("h1", "b")
    assert actions(walk) == ["send", "route", "arp", "transmit", "receive", "forward", "transmit", "receive",
                             "route", "deliver"]
    arp_hop = walk.events[2]
    assert arp_hop.device == "eth0" and "10.0.0.3 is at" in arp_hop.message
    for event in walk.events:
        assert_valid(event.packet)
    # the ARP exchange taught the bridge both MACs: a second packet is forwarded, not flooded
    learned = sim.state.learned[("h1", "host", "br0")]
    assert set(learned.values()) == {("h1", "host", "v-a"), ("h1", "host", "v-b")}
    again = sim.send("h1", "a", probe(A, B, "tcp", src_port=40001, dst_port=80))
    assert "arp" not in actions(again) and "flood" not in actions(again)


def test_nothing_listening_answers_with_reset_and_port_unreachable():
    sim = Simulator(two_pods().network())
    refused = sim.send("h1", "a", probe(A, B, "tcp", src_port=40000, dst_port=81))
    assert refused.disposition is Disposition.REJECTED and "connection refused" in refused.reason
    reply = [e for e in refused.events if e.reply]
    assert reply[0].action is Action.REPLY and reply[-1].action is Action.DELIVER and reply[-1].namespace == "a"
    rst = dissect(reply[0].packet)[-1]
    assert isinstance(rst, tcp.Repr) and rst.flags == tcp.RST | tcp.ACK and rst.acknowledgment_number == 1_000_001
    unreachable = sim.send("h1", "a", probe(A, B, "udp", src_port=5000, dst_port=53))
    assert unreachable.disposition is Disposition.REJECTED
    error = next(e for e in unreachable.events if e.action is Action.REPLY)
    message = dissect(error.packet)[2]
    assert (message.type, message.code) == (icmpv4.DESTINATION_UNREACHABLE, icmpv4.PORT_UNREACHABLE)
    for event in refused.events + unreachable.events:
        assert_valid(event.packet)


def test_echo_request_is_answered_by_the_kernel():
    walk = Simulator(two_pods().network()).send("h1", "a", probe(A, B, "icmp"))
    assert walk.disposition is Disposition.DELIVERED and walk.events[-1].technique == "ICMP Echo (kernel responder)"


def test_unresolved_neighbour_drops_with_host_unreachable():
    walk = Simulator(two_pods().network()).send("h1", "a", probe(A, ip_address("10.0.0.99"), "tcp", dst_port=80))
    assert walk.disposition is Disposition.DROPPED
    drop = next(e for e in walk.events if e.action is Action.DROP)
    assert drop.cause == "neighbour" and "10.0.0.99" in drop.message


def test_static_fdb_entry_wins_over_learning_and_hairpin_is_dropped():
    lab = Lab()
    lab.ns("host")
    lab.bridge(address=None, learning=False, fdb=(FdbEntry("02:00:00:00:00:05", device="v-b"),))
    lab.pod("a", "10.0.0.2/24", gateway=None)
    lab.pod("b", "10.0.0.3/24", gateway=None, listen=("tcp", 80))  # MACs: br0 :01, v-a :02, a :03, v-b :04, b :05
    sim = Simulator(lab.network())
    sim.state.neighbours[("h1", "a", "eth0")] = {B.packed: bytes.fromhex("020000000005")}
    walk = sim.send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert walk.disposition is Disposition.DELIVERED and "flood" not in actions(walk)
    assert not sim.state.learned  # learning off
    # a frame for a MAC behind its own ingress port: the bridge does not send it back
    lab2 = Lab()
    lab2.ns("host")
    lab2.bridge(address=None, fdb=(FdbEntry("02:00:00:00:00:09", device="v-a"),))
    lab2.pod("a", "10.0.0.2/24", gateway=None, neighbours=(Neighbour(B, "02:00:00:00:00:09", "eth0"),))
    walk = Simulator(lab2.network()).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert walk.events[-1].cause == "hairpin"


def test_unknown_destination_floods_and_copies_nobody_wants_are_not_shown():
    lab = Lab()
    lab.ns("host")
    lab.bridge(address=None)
    lab.pod("a", "10.0.0.2/24", gateway=None, neighbours=(Neighbour(B, "02:00:00:00:00:07", "eth0"),))
    lab.pod("b", "10.0.0.3/24", gateway=None, listen=("tcp", 80))
    lab.pod("c", "10.0.0.4/24", gateway=None)  # MACs: br0 :01, v-a :02, a :03, v-b :04, b :05, v-c :06, c :07
    lab.pod("d", "10.0.0.5/24", gateway=None)
    walk = Simulator(lab.network()).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    # 02:...:07 is c's eth0: the frame floods, only c takes it, and c drops it (not its address)
    assert "flood" in actions(walk)
    assert {e.namespace for e in walk.events} == {"a", "host", "c"}
    assert walk.events[-1].cause == "forwarding-off"


def test_longest_prefix_wins_and_ttl_expires_with_time_exceeded():
    lab = Lab()
    lab.ns("host", ip_forward=True, routes=(
        Route(dst=ip_network("10.9.0.0/16"), kind=RouteType.BLACKHOLE),
        Route(dst=ip_network("10.9.1.0/24"), via=B),
    ))
    lab.bridge()
    lab.pod("a", "10.0.0.2/24")
    lab.pod("b", "10.0.0.3/24", ip_forward=True)  # default route back via the host: a loop
    sim = Simulator(lab.network())
    # 10.9.1.7 matches the /24 (via b), b routes it back to the host: a loop until TTL runs out
    walk = sim.send("h1", "a", probe(A, ip_address("10.9.1.7"), "tcp", dst_port=80, ttl=4))
    assert walk.disposition is Disposition.REJECTED and "TTL expired" in walk.reason
    error = next(e for e in walk.events if e.action is Action.REPLY)
    assert dissect(error.packet)[2].type == icmpv4.TIME_EXCEEDED
    ttls = [headers(e.packet).ttl for e in walk.events if e.action is Action.ROUTE and not e.reply]
    assert ttls == sorted(ttls, reverse=True)
    # 10.9.2.7 only matches the /16 blackhole
    dropped = sim.send("h1", "a", probe(A, ip_address("10.9.2.7"), "tcp", dst_port=80))
    assert dropped.disposition is Disposition.REJECTED and "blackhole" in dropped.reason


def test_no_route_in_the_sender_fails_the_send():
    lab = two_pods()
    lab.pod("c", "10.0.0.4/24", gateway=None)
    walk = Simulator(lab.network()).send("h1", "c", probe(ip_address("10.0.0.4"), ip_address("192.0.2.1"), "tcp",
                                                          dst_port=80))
    assert walk.disposition is Disposition.DROPPED and walk.events[-1].cause == "no-route"
    assert "network unreachable" in walk.reason


def test_forwarding_disabled_drops():
    lab = Lab()
    lab.ns("host", ip_forward=False)
    lab.bridge()
    lab.pod("a", "10.0.0.2/24")
    walk = Simulator(lab.network()).send("h1", "a", probe(A, ip_address("192.0.2.1"), "tcp", dst_port=80))
    assert walk.disposition is Disposition.DROPPED
    assert walk.events[-1].cause == "forwarding-off" and walk.events[-1].namespace == "host"
    assert "does not forward IPv4 packets" in walk.reason


def test_ipv6_neighbour_discovery_and_delivery():
    lab = Lab()
    lab.ns("host")
    lab.bridge(address="fd00::1/64")
    lab.pod("a", "fd00::2/64", gateway=None)
    lab.pod("b", "fd00::3/64", gateway=None, listen=("udp", 53))
    walk = Simulator(lab.network()).send("h1", "a", probe(ip_address("fd00::2"), ip_address("fd00::3"), "udp",
                                                          src_port=5353, dst_port=53))
    assert walk.disposition is Disposition.DELIVERED
    nd = next(e for e in walk.events if e.action is Action.ARP)
    solicitation = dissect(nd.packet)[-1]
    assert solicitation.type == icmpv6.NEIGHBOR_SOLICITATION and "neighbour discovery" in nd.message
    for event in walk.events:
        assert_valid(event.packet)


def test_device_down_drops():
    lab = Lab()
    lab.ns("host")
    lab.bridge()
    lab.pod("a", "10.0.0.2/24")
    lab.ns("b", NamespaceKind.POD)
    from netvirt.graph import Veth

    lab.add(DeviceKind.VETH, "v-b", "host", config=Veth("eth0", "b"), master="br0")
    lab.add(DeviceKind.VETH, "eth0", "b", config=Veth("v-b", "host"), addresses=["10.0.0.3/24"], up=False)
    walk = Simulator(lab.network()).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert walk.disposition is Disposition.DROPPED


def test_walks_are_deterministic():
    network = two_pods().network()
    first = Simulator(network).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    second = Simulator(network).send("h1", "a", probe(A, B, "tcp", dst_port=80))
    assert first == second
