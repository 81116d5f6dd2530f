"""Namespaces, netlink primitives and names: every ``ensure`` converges from partial or wrong
state to exactly what was asked, and leaves what is not netvirt's alone."""

import socket
from ipaddress import ip_address, ip_interface, ip_network

import pytest
from linux_testbed import deployment  # noqa: F401 (fixture)

from netvirt.dataplane.kernel import links, netns
from netvirt.dataplane.kernel.build import NotOwned
from netvirt.dataplane.kernel.links import RTPROT_NETVIRT, VxlanSpec
from netvirt.dataplane.kernel.naming import IFNAMSIZ, Names, NameError_
from netvirt.graph import FLOOD_MAC
from netvirt.graph.host import Neighbour, Route, RouteType


def link_names(namespace):
    ipr = netns.netlink(namespace)
    try:
        return {msg.get("IFLA_IFNAME") for msg in ipr.get_links()}
    finally:
        ipr.close()


def test_names_are_short_deterministic_and_distinct():
    names = Names("quickstart")
    made = {names.link(f"nv-quickstart-host{h}", f"endpoint-{e}") for h in range(10) for e in range(20)}
    assert len(made) == 200 and all(len(n) < IFNAMSIZ and n.startswith("nv-") for n in made)
    assert names.link("ns", "vxlan100") == Names("quickstart").link("ns", "vxlan100")
    assert names.link("ns", "vxlan100") != Names("other").link("ns", "vxlan100")
    long_name = Names("q", "nvt").link("ns", "a-very-long-device-name")
    assert long_name.startswith("nvt-avery-") and len(long_name) == IFNAMSIZ - 1
    assert names.namespace("host1") == "nv-quickstart-host1" and names.nft_table == "netvirt_quickstart"
    assert len(names.ipt_chain("POSTROUTING")) <= 28 and names.ipt_chain("INPUT").startswith("NV-")
    mac = names.mac("h1a")
    assert int(mac[:2], 16) & 0x03 == 0x02  # locally administered, unicast
    for bad in ("has-dash", "", "x" * 40, "a b"):
        with pytest.raises(NameError_):
            Names(bad)
    with pytest.raises(NameError_, match="prefix"):
        Names("ok", "xx")


def test_namespace_ensure_is_idempotent_and_replaces_a_stale_placeholder(deployment):
    name = deployment.names.namespace("a")
    with deployment.builder() as build:
        build.namespace("a")
        build.namespace("a")
    assert netns.exists(name)
    netns.remove(name)
    netns.path(name).touch()  # what a crash between "create file" and "mount" leaves
    assert not netns.exists(name)
    with deployment.builder() as build:
        build.namespace("a")
    assert netns.exists(name) and link_names(name) == {"lo"}


def test_code_commands_and_sysctls_run_inside_the_namespace(deployment):
    with open("/proc/sys/net/ipv4/ip_forward") as ours:
        forwarding_here = ours.read()
    with deployment.builder() as build:
        ns = build.namespace("a")
        build.bridge(ns, "br-only-here")
        build.forwarding(ns, ipv4=True, ipv6=False)
    assert "br-only-here" in netns.run(ns, ["ip", "-o", "link"]).stdout.decode()
    assert netns.sysctl(ns, "net.ipv4.ip_forward") == "1"
    assert netns.call_in(ns, socket.if_nameindex) != socket.if_nameindex()
    with open("/proc/sys/net/ipv4/ip_forward") as ours:  # the test's own namespace is untouched
        assert ours.read() == forwarding_here
    assert "br-only-here" not in {name for _, name in socket.if_nameindex()}
    with pytest.raises(netns.CommandFailed, match="exited"):
        netns.run(ns, ["ip", "link", "show", "no-such-link"])


def test_veth_and_vxlan_are_recreated_when_wrong(deployment):
    with deployment.builder() as build:
        a, b = build.namespace("a"), build.namespace("b")
        build.veth(a, "x", b, "y", mtu=1400)
        ipr_a = build.netlink(a)
        index_before = links.index(ipr_a, "x")
        build.veth(a, "x", b, "y", mtu=1400)
        assert links.index(ipr_a, "x") == index_before  # in place: untouched
        links.delete(ipr_a, "x")
        ipr_a.link("add", ifname="x", kind="bridge")  # wrong kind under our name
        build.veth(a, "x", b, "y", mtu=1400)
        msg = links.find(ipr_a, "x")
        assert links.kind(msg) == "veth" and msg.get("IFLA_MTU") == 1400
        assert "y" in link_names(b)

        spec = VxlanSpec(vni=100, local=ip_address("192.0.2.1"))
        build.vxlan(a, "vx", spec)
        build.vxlan(a, "vx", VxlanSpec(vni=200, local=ip_address("192.0.2.1"), arp_proxy=True))
        data = links.find(ipr_a, "vx").get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        assert (data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PROXY"), data.get("IFLA_VXLAN_LEARNING")) == (200, 1, 0)
        assert data.get("IFLA_VXLAN_PORT") == 4789


def test_addresses_routes_neighbours_and_fdb_converge_to_exactly_the_request(deployment):
    with deployment.builder() as build:
        a, b = build.namespace("a"), build.namespace("b")
        build.veth(a, "eth0", b, "eth0")
        build.vxlan(a, "vx", VxlanSpec(vni=7, local=ip_address("10.0.0.1")))
        ipr = build.netlink(a)

        build.addresses(a, "eth0", [ip_interface("10.0.0.1/24"), ip_interface("fd00::1/64")])
        build.addresses(a, "eth0", [ip_interface("10.0.0.1/24"), ip_interface("10.0.1.1/24")])
        got = {(m.get("IFA_ADDRESS"), m["prefixlen"]) for m in ipr.addr("dump", index=links.index(ipr, "eth0"))
               if m["scope"] == 0}
        assert got == {("10.0.0.1", 24), ("10.0.1.1", 24)}

        ipr.route("add", dst="192.0.2.0/24", gateway="10.0.0.254", proto=4)  # someone else's (static)
        build.routes(a, [Route(dst=ip_network("198.51.100.0/24"), via=ip_address("10.0.0.254")),
                         Route(dst=ip_network("203.0.113.0/24"), kind=RouteType.BLACKHOLE)])
        build.routes(a, [Route(dst=ip_network("198.51.100.0/24"), dev="eth0", metric=5)])
        ours = [(m.get("RTA_DST"), m.get("RTA_PRIORITY", 0)) for m in ipr.route("dump", family=socket.AF_INET)
                if m["proto"] == RTPROT_NETVIRT]
        assert ours == [("198.51.100.0", 5)]
        assert any(m.get("RTA_DST") == "192.0.2.0" for m in ipr.route("dump", family=socket.AF_INET))

        build.neighbours(a, "eth0", [Neighbour(ip_address("10.0.0.9"), "02:00:00:00:00:09", "eth0"),
                                     Neighbour(ip_address("fd00::9"), "02:00:00:00:00:09", "eth0")])
        build.neighbours(a, "eth0", [Neighbour(ip_address("10.0.0.9"), "02:00:00:00:00:0a", "eth0")])
        permanent = [(m.get("NDA_DST"), m.get("NDA_LLADDR")) for family in (socket.AF_INET, socket.AF_INET6)
                     for m in ipr.neigh("dump", ifindex=links.index(ipr, "eth0"), family=family)
                     if m["state"] & links.NUD_PERMANENT]
        assert permanent == [("10.0.0.9", "02:00:00:00:00:0a")]

        build.vxlan_fdb(a, "vx", [(FLOOD_MAC, ip_address("10.0.0.2")), (FLOOD_MAC, ip_address("10.0.0.3")),
                                  ("02:00:00:00:00:02", ip_address("10.0.0.2"))])
        build.vxlan_fdb(a, "vx", [(FLOOD_MAC, ip_address("10.0.0.3")), ("02:00:00:00:00:02", ip_address("10.0.0.3"))])
        fdb = {(m.get("NDA_LLADDR"), m.get("NDA_DST")) for m in ipr.fdb("dump", ifindex=links.index(ipr, "vx"))
               if m.get("NDA_DST")}
        assert fdb == {(FLOOD_MAC, "10.0.0.3"), ("02:00:00:00:00:02", "10.0.0.3")}
        with pytest.raises(links.LinkError, match="two remotes"):
            build.vxlan_fdb(a, "vx", [("02:00:00:00:00:02", ip_address("10.0.0.2")),
                                      ("02:00:00:00:00:02", ip_address("10.0.0.3"))])


def test_the_builder_refuses_to_touch_what_is_not_netvirts(deployment):
    foreign = f"nvt-foreign-{deployment.names.deployment}"
    netns.ensure(foreign)
    try:
        with deployment.builder() as build:
            a = build.namespace("a")
            with pytest.raises(NotOwned, match="must carry the link prefix"):
                build.veth(a, "eth0", foreign, "eth0")
            with pytest.raises(NotOwned, match="is not netvirt's"):
                build.routes(foreign, [])
            with pytest.raises(NotOwned, match="is not netvirt's"):
                build.addresses(foreign, "lo", [])
            with pytest.raises(NameError_, match="IFNAMSIZ"):
                build.bridge(a, "a-name-longer-than-15")
    finally:
        netns.remove(foreign)
