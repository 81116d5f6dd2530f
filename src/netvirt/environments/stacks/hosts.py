"""The host layer: the outside client on the LAN, the physical machine and its NIC (an SR-IOV
eswitch behind it with ``nic: sriov``). LAN 192.168.1.0/24 (or the tied spec host's underlay),
host .10, client .254."""

from ipaddress import ip_interface

from netvirt.environments.builder import StackError, last_address
from netvirt.environments.stacks.walk import DEFAULT_LAN, Level, StackWalk
from netvirt.graph import DeviceKind, Mode, NamespaceKind
from netvirt.management.spec import AppLayer, HostLayer, HypervisorLayer


def host(walk: StackWalk, layer: HostLayer) -> Level:
    b = walk.b
    lan = DEFAULT_LAN
    mtu = 1500
    if layer.host is not None and layer.host in walk.spec.index["hosts"]:
        spec_host = walk.spec.host(layer.host)
        lan, mtu = ip_interface(spec_host.underlay), spec_host.mtu
        if lan.version != 4:
            raise StackError(f"stack {walk.stack.name}: host {spec_host.name} has an IPv6 underlay; "
                             "walkthroughs are built on an IPv4 LAN")
    b.segment_mtu = mtu
    walk.lan = lan
    b.namespace("outside", NamespaceKind.EXTERNAL)
    walk.client_address = last_address(lan)
    client = b.device(DeviceKind.NIC, "eth0", "outside", addresses=[f"{walk.client_address}/{lan.network.prefixlen}"],
                      mtu=mtu, mode=Mode.HARDWARE, level="Outside", technique="Client on the LAN")
    b.attach(client)
    ns = "windows" if layer.os == "windows" else "host"
    b.namespace(ns, NamespaceKind.HOST, origin=f"stack/{walk.stack.name}/host")
    nic = b.device(DeviceKind.NIC, "eth0", ns, addresses=[str(lan)], mtu=mtu)
    b.attach(nic)
    walk.target = lan.ip
    following = walk.layers[1] if len(walk.layers) > 1 else None
    name = walk.name("Physical Entry", "Hardware NIC" if isinstance(following, AppLayer) else
                     "NIC" if isinstance(following, HypervisorLayer) else "Host NIC")
    b.stage(name, Mode.HARDWARE, "NIC", "Physical Signal Reception", f"{ns}/eth0")
    if layer.nic == "sriov":
        b.device(DeviceKind.NIC_ESWITCH, "eswitch", ns, parent="eth0")
        b.stage(walk.name("NIC eSwitch", "NIC eSwitch"), Mode.HARDWARE, "NIC", "NIC Embedded Switch (SR-IOV)",
                f"{ns}/eswitch")
    return Level(ns, "eth0", lan, "host", layer.os)
