"""Simulator semantics of hooks and model-only devices: XDP and tc programs, AF_XDP redirect,
DPDK poll-mode drivers, SR-IOV VFs behind the NIC's eswitch, hypervisor switches and uplinks,
NDIS filters, WSL2 gateways, macvlan — and that kernel-bypass hops are marked as such."""

from ipaddress import ip_address

from sim_graphs import Lab, actions, assert_valid

from netvirt.dataplane.events import Action, Disposition
from netvirt.dataplane.sim import Simulator
from netvirt.wire.builders import probe
from netvirt.graph import (
    ACCEPT,
    DROP,
    DeviceHook,
    DeviceKind,
    HookKind,
    Hypervisor,
    HypervisorSwitch,
    Macvlan,
    Match,
    NamespaceKind,
    PortRange,
    Proto,
    Rule,
    Socket,
    SriovVf,
    SwitchMode,
    Verdict,
)

CLIENT, SERVER = ip_address("192.0.2.100"), ip_address("192.0.2.10")


def lan(server_nic=None, *, hooks=(), extra=None):
    """A client and a server namespace on one segment; ``extra(lab, nic)`` adds devices."""
    lab = Lab()
    lab.ns("outside", NamespaceKind.EXTERNAL)
    client = lab.add(DeviceKind.NIC, "eth0", "outside", addresses=["192.0.2.100/24"])
    lab.ns("server")
    nic = lab.add(DeviceKind.NIC, "eth0", "server", addresses=["192.0.2.10/24"], hooks=hooks, **(server_nic or {}))
    lab.add(DeviceKind.SOCKET, "tcp-80", "server", config=Socket(proto=Proto.TCP, port=80, app="web"))
    if extra:
        extra(lab, nic)
    lab.segment("lan", ("h1", client), ("h1", nic))
    return lab.network()


def send(network, dport=80, proto="tcp"):
    return Simulator(network).send("h1", "outside", probe(CLIENT, SERVER, proto, src_port=40000, dst_port=dport))


def test_physical_receive_goes_through_the_driver_into_the_stack():
    walk = send(lan())
    assert actions(walk)[-4:] == [
        "receive", "driver", "route", "deliver"]
    receive = next(e for e in walk.events if e.action is Action.RECEIVE and e.namespace == "server")
    assert (receive.mode, receive.level, receive.technique) == ("Hardware", "NIC", "Physical Signal Reception")
    driver = next(e for e in walk.events if e.action is Action.DRIVER)
    assert (driver.mode, driver.level) == ("Kernel", "Driver")


def test_xdp_program_drops_by_rule_and_passes_the_rest():
    guard = DeviceHook(kind=HookKind.XDP, program="ddos-guard", rules=(
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(22)), action=DROP, comment="no ssh"),))
    network = lan(hooks=(guard,))
    dropped = send(network, dport=22)
    assert dropped.disposition is Disposition.DROPPED
    assert dropped.reason == "dropped by xdp ddos-guard rule 0 (no ssh) on server/eth0"
    hop = dropped.events[-1]
    assert hop.action is Action.FILTER_DROP and hop.level == "Driver" and "XDP" in hop.technique
    # XDP runs before the kernel allocates a socket buffer: no route, no netfilter
    assert [e.action for e in dropped.events if e.namespace == "server"] == [Action.RECEIVE,
                                                                             Action.FILTER_DROP]
    passed = send(network)
    assert passed.disposition is Disposition.DELIVERED
    assert any(e.action is Action.FILTER_ALLOW and "xdp ddos-guard policy" in e.rule for e in passed.events)


def test_tc_ingress_policy_drop_and_egress_program():
    ingress = DeviceHook(kind=HookKind.TC_INGRESS, program="allow-web", policy=Verdict.DROP, rules=(
        Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(80)), action=ACCEPT),))
    network = lan(hooks=(ingress,))
    assert send(network).disposition is Disposition.DELIVERED
    blocked = send(network, dport=443)
    assert blocked.events[-1].rule == "tc_ingress allow-web policy"
    egress = DeviceHook(kind=HookKind.TC_EGRESS, program="no-out", policy=Verdict.DROP)
    quiet = lan(extra=lambda lab, nic: None, hooks=(egress,))
    # the SYN is delivered; the server's answer would be dropped on the way out: check with answer()
    simulator = Simulator(quiet)
    walk = simulator.send("h1", "outside", probe(CLIENT, SERVER, "tcp", src_port=40000, dst_port=80))
    answer = simulator.answer(walk)
    assert answer.disposition is Disposition.DROPPED and answer.events[-1].rule == "tc_egress no-out policy"


def test_af_xdp_socket_takes_frames_past_the_kernel():
    def xsk(lab, nic):
        lab.add(DeviceKind.AF_XDP_SOCKET, "xsk0", "server", parent="eth0")
        lab.add(DeviceKind.SOCKET, "app", "server", parent="xsk0",
                config=Socket(proto=Proto.TCP, port=9000, app="fast-app"))

    walk = send(lan(extra=xsk), dport=9000)
    assert walk.disposition is Disposition.DELIVERED and "kernel bypass" in walk.reason
    # XDP redirects in the driver's receive path: no socket buffer, no driver hand-over
    assert [e.action for e in walk.events if e.namespace == "server"] == [Action.RECEIVE, Action.REDIRECT,
                                                                          Action.DELIVER]
    assert all(e.bypass for e in walk.events if e.action in (Action.REDIRECT, Action.DELIVER))
    # the kernel never sees it: nothing on port 80 is answered either
    other = send(lan(extra=xsk), dport=80)
    assert other.disposition is Disposition.DROPPED and other.events[-1].cause == "no-listener"


def test_dpdk_poll_mode_driver_bypasses_the_kernel():
    def pmd(lab, nic):
        lab.add(DeviceKind.DPDK_PMD, "pmd0", "server", parent="eth0")
        lab.add(DeviceKind.SOCKET, "app", "server", parent="pmd0", config=Socket(proto=Proto.UDP, port=4000, app="l3fwd"))

    walk = send(lan(extra=pmd), dport=4000, proto="udp")
    assert walk.disposition is Disposition.DELIVERED
    server = [e for e in walk.events if e.namespace == "server"]
    assert [e.action for e in server] == [Action.RECEIVE, Action.BYPASS, Action.DELIVER]
    assert server[1].mode == "User" and server[1].bypass and "DPDK" in server[1].level


def test_sriov_vf_behind_the_nic_eswitch_skips_the_host():
    def sriov(lab, nic):
        eswitch = lab.add(DeviceKind.NIC_ESWITCH, "eswitch", "server", parent="eth0")
        lab.ns("guest", NamespaceKind.VM)
        vf = lab.add(DeviceKind.SRIOV_VF, "eth0", "guest", config=SriovVf(0), addresses=["192.0.2.30/24"])
        lab.add(DeviceKind.SOCKET, "tcp-80", "guest", config=Socket(proto=Proto.TCP, port=80, app="vm-web"))
        lab.link(eswitch, vf)

    network = lan(extra=sriov)
    walk = Simulator(network).send("h1", "outside", probe(CLIENT, ip_address("192.0.2.30"), "tcp", dst_port=80))
    assert walk.disposition is Disposition.DELIVERED and walk.delivered_in == ("h1", "guest")
    places = [(e.namespace, e.device, e.action) for e in walk.events if e.namespace != "outside"]
    assert places[:3] == [("server", "eth0", Action.RECEIVE), ("server", "eswitch", Action.FORWARD),
                          ("guest", "eth0", Action.RECEIVE)]
    assert not any(e.namespace == "server" and e.device is None for e in walk.events)  # no host stack
    # the eswitch and the VF work outside the host kernel: marked as bypass; the guest's socket is not
    assert all(e.bypass for e in walk.events if e.device == "eswitch" or (e.namespace, e.device) == ("guest", "eth0"))
    assert not walk.events[-1].bypass
    # the host's own traffic still reaches the host stack through the PF
    assert send(network).delivered_in == ("h1", "server")


def test_hypervisor_switch_bridges_a_guest_behind_an_uplink_nic():
    lab = Lab()
    lab.ns("outside", NamespaceKind.EXTERNAL)
    client = lab.add(DeviceKind.NIC, "eth0", "outside", addresses=["192.0.2.100/24"])
    lab.ns("windows")
    nic = lab.add(DeviceKind.NIC, "eth0", "windows", addresses=["192.0.2.10/24"])
    switch = lab.add(DeviceKind.HYPERVISOR_SWITCH, "vswitch", "windows", mac=None,
                     config=HypervisorSwitch(Hypervisor.VIRTUALBOX, SwitchMode.BRIDGED))
    ndis = lab.add(DeviceKind.NDIS_FILTER, "ndis", "windows", master="vswitch")
    lab.link(nic, ndis)
    lab.ns("vm", NamespaceKind.VM)
    vnic = lab.add(DeviceKind.VIRTIO_NIC, "eth0", "vm", addresses=["192.0.2.20/24"])
    lab.add(DeviceKind.SOCKET, "tcp-80", "vm", config=Socket(proto=Proto.TCP, port=80, app="guest-web"))
    lab.link(switch, vnic)
    lab.add(DeviceKind.SOCKET, "tcp-80", "windows", config=Socket(proto=Proto.TCP, port=80, app="host-web"))
    lab.segment("lan", ("h1", client), ("h1", nic))
    network = lab.network()
    simulator = Simulator(network)
    guest = simulator.send("h1", "outside", probe(CLIENT, ip_address("192.0.2.20"), "tcp", dst_port=80))
    assert guest.delivered_in == ("h1", "vm")
    kinds = [(e.device, e.action) for e in guest.events if e.namespace == "windows"]
    assert kinds == [("eth0", Action.RECEIVE), ("ndis", Action.RECEIVE), ("vswitch", Action.FORWARD)]
    # the guest's answer goes back out through the same uplink
    answer = simulator.answer(guest)
    assert answer.disposition is Disposition.DELIVERED and answer.delivered_in == ("h1", "outside")
    # the host's own address still reaches the host's stack
    host = simulator.send("h1", "outside", probe(CLIENT, SERVER, "tcp", src_port=40001, dst_port=80))
    assert host.delivered_in == ("h1", "windows")
    for event in guest.events + answer.events + host.events:
        assert_valid(event.packet)


def test_macvlan_child_gets_frames_for_its_own_mac():
    def child(lab, nic):
        lab.ns("box", NamespaceKind.CONTAINER)
        mv = lab.add(DeviceKind.MACVLAN, "eth0", "box", config=Macvlan(), addresses=["192.0.2.40/24"])
        lab.add(DeviceKind.SOCKET, "tcp-80", "box", config=Socket(proto=Proto.TCP, port=80, app="c"))
        lab.link(nic, mv)

    walk = Simulator(lan(extra=child)).send("h1", "outside", probe(CLIENT, ip_address("192.0.2.40"), "tcp",
                                                                     dst_port=80))
    assert walk.delivered_in == ("h1", "box")
    assert any(e.technique == "Macvlan Sub-interface" for e in walk.events)
