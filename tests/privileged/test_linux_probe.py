"""The capability probe agrees with iproute2 (an independent oracle) on what this kernel can
create, leaves nothing behind, and turns into plan-time refusals naming backends that can."""

import secrets

import pytest

from netvirt.dataplane import registry
from netvirt.dataplane.api import plan
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.probe import LINK_KINDS, Unsupported, probe
from netvirt.graph import Bridge, Device, DeviceKind, HostGraph, Namespace, NamespaceKind, Tunnel

IPROUTE2_ARGS = {  # how `ip link add` spells a minimal device of each kind
    "veth": ["type", "veth", "peer", "name", "p1"],
    "bridge": ["type", "bridge"],
    "vxlan": ["type", "vxlan", "id", "42", "dstport", "4789"],
    "geneve": ["type", "geneve", "id", "42", "remote", "192.0.2.1"],
    "gretap": ["type", "gretap", "key", "42"],
    "ip6gretap": ["type", "ip6gretap"],
    "macvlan": ["link", "base", "type", "macvlan", "mode", "bridge"],
    "ipvlan": ["link", "base", "type", "ipvlan"],
    "dummy": ["type", "dummy"],
    "vrf": ["type", "vrf", "table", "42"],
}


def iproute2_can_create(kind: str) -> bool:
    name = f"nvt-oracle-{secrets.token_hex(3)}"
    netns.ensure(name)
    try:
        netns.run(name, ["ip", "link", "add", "base", "type", "veth", "peer", "name", "base-p"], check=False)
        if kind == "tuntap":
            done = netns.run(name, ["ip", "tuntap", "add", "dev", "t0", "mode", "tap"], check=False)
        else:
            done = netns.run(name, ["ip", "link", "add", "d0", *IPROUTE2_ARGS[kind]], check=False)
        return done.returncode == 0
    finally:
        netns.remove(name)


def test_probe_matches_iproute2_for_every_kind():
    found = probe()
    for kind in LINK_KINDS:
        assert (kind in found.link_kinds) == iproute2_can_create(kind), kind
        assert (found.reason(kind) is None) == (kind in found.link_kinds)


def test_netvirt_needs_veth_bridge_vxlan_and_a_filter_backend():
    found = probe()
    assert {"veth", "bridge", "vxlan"} <= found.link_kinds
    assert found.nftables and found.iptables in ("nf_tables", "legacy")


def test_probe_is_cached_and_leaves_nothing_behind():
    before = netns.names()
    assert probe() is probe()
    assert netns.names() == before


def geneve_graph() -> HostGraph:
    ns = Namespace(name="host", kind=NamespaceKind.HOST)
    tunnel = Device.of(DeviceKind.GENEVE, "gnv0", "host", config=Tunnel(vni=5, dst_port=6081))
    return HostGraph(host="h1", namespaces=(ns,), devices=(tunnel,))


def test_missing_encapsulations_are_refused_at_plan_time_naming_who_can():
    found = probe()
    problems = plan(geneve_graph(), found.for_plan("linux"))
    if "geneve" in found.link_kinds:
        assert problems == []
        found.require_device_kind("geneve")
        return
    assert len(problems) == 1
    message = str(problems[0])
    able = [name for name, caps in registry.declared_all().items() if DeviceKind.GENEVE in caps.device_kinds]
    assert "geneve" in message and "on this kernel" in message and message.endswith(f"backends that can: {', '.join(sorted(able))}")
    with pytest.raises(Unsupported, match="backends? that can: sim, userspace"):
        found.require_device_kind("geneve", ["sim", "linux", "userspace"])


def test_model_only_kinds_are_never_kernel_kinds():
    with pytest.raises(Unsupported, match="cannot be realised in the Linux kernel; use a backend that can: sim"):
        probe().require_device_kind("hypervisor_switch", ["sim"])


def test_the_linux_backend_refuses_names_the_kernel_cannot_take():
    """IFNAMSIZ is the linux backend's limit (its ``check``), not the graph's."""
    from netvirt.dataplane.linux.backend import LinuxBackend

    ns = Namespace(name="h1", kind=NamespaceKind.HOST)
    graph = HostGraph(host="h1", namespaces=(ns,), devices=(Device.of(DeviceKind.BRIDGE, "a-very-long-ifname", "h1",
                                                                       config=Bridge()),))
    assert any("a-very-long-ifname" in p.message and "1..15 characters" in p.message
               for p in LinuxBackend("h1").check(graph))
