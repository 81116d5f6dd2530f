"""The hypervisor layers: a hypervisor with the VM on it (KVM/virtio, VirtualBox, VMware, Hyper-V;
bridged, NAT, internal, SR-IOV VF passthrough) and WSL2's utility VM (NAT or mirrored).
Bridged guests take .20 of the LAN (an SR-IOV VF .30); VirtualBox NAT 10.0.2.0/24, libvirt
192.168.122.0/24, Hyper-V/WSL2 172.28.0.0/20."""

from ipaddress import IPv4Interface, ip_interface, ip_network

from netvirt.environments.builder import host_address
from netvirt.environments.stacks.walk import Level, StackWalk
from netvirt.graph import (
    Bridge,
    DeviceKind,
    Hypervisor,
    HypervisorSwitch,
    Masquerade,
    Match,
    Mode,
    NamespaceKind,
    Route,
    Rule,
    Snat,
    SriovVf,
    SwitchMode,
    Wsl2Gateway,
    Wsl2Mode,
)
from netvirt.management.spec import HypervisorLayer, VmLayer

VNIC = {  # vm vnic -> (device kind, technique)
    "virtio": (DeviceKind.VIRTIO_NIC, "VirtIO-net Driver (Hardware Abstraction)"),
    "e1000": (DeviceKind.NIC, "Emulated e1000 NIC (device model)"),
    "vmxnet3": (DeviceKind.NIC, "VMXNET3 Paravirtual NIC Driver"),
    "netvsc": (DeviceKind.NIC, "Hyper-V Synthetic NIC (netvsc over VMBus)"),
    "sriov-vf": (DeviceKind.SRIOV_VF, "SR-IOV Virtual Function (direct hardware access)"),
}
HYPERVISOR_NAMES = {"kvm": "KVM/QEMU", "virtualbox": "VirtualBox", "vmware": "VMware", "hyperv": "Hyper-V",
                    "wsl2": "WSL2"}


def virtual_machine(walk: StackWalk, hypervisor: HypervisorLayer, vm: VmLayer, below: Level) -> Level:
    """A guest on a hypervisor: its vNIC, joined to the host bridged, behind NAT, on an internal
    network, or as an SR-IOV VF."""
    b = walk.b
    product = HYPERVISOR_NAMES[hypervisor.type]
    mode = hypervisor.network or "nat"
    guest = "vm" if "vm" not in b.namespaces else f"vm{len(b.namespaces)}"
    b.namespace(guest, NamespaceKind.VM, origin=f"stack/{walk.stack.name}/vm")
    kind, technique = VNIC[vm.vnic]
    distro = vm.label or ("Linux" if vm.os == "linux" else "Windows")
    vnic_fields = dict(level=f"Guest ({distro})", technique=technique)
    if kind is DeviceKind.NIC:
        vnic_fields["mode"] = Mode.KERNEL
    host_ns = below.ns
    if vm.vnic == "sriov-vf":
        return _sriov_vm(walk, vm, below, guest, distro)
    if mode in ("bridged", "external"):
        address = walk.tied(vm.endpoint, below.address.network) or host_address(below.address, 20)
        vnic = b.device(kind, "eth0", guest, addresses=[str(address)], **vnic_fields)
        _bridge_guest(walk, hypervisor, below, vnic, product)
        walk.target = address.ip
    elif mode == "nat":
        inner = {"virtualbox": "10.0.2.15/24", "kvm": "192.168.122.10/24"}.get(hypervisor.type, "172.28.0.10/20")
        address = ip_interface(inner)
        gateway = host_address(address, 2 if hypervisor.type == "virtualbox" else 1)
        vnic = b.device(kind, "eth0", guest, addresses=[str(address)], **vnic_fields)
        _nat_guest(walk, hypervisor, below, vnic, gateway, product)
        b.namespaces[guest].routes.append(Route(dst=ip_network("0.0.0.0/0"), via=gateway.ip))
    else:  # internal / host-only: the guest has no way to the outside
        address = ip_interface("192.168.56.101/24")
        vnic = b.device(kind, "eth0", guest, addresses=[str(address)], **vnic_fields)
        switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None,
                          config=HypervisorSwitch(_hypervisor(hypervisor.type), SwitchMode.INTERNAL),
                          level=product, technique=f"{product} Internal Network (no uplink)")
        b.link(switch, vnic, "VM NIC emulation")
        b.stage(walk.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, product,
                "Internal Network (no uplink)", f"{host_ns}/vswitch")
        walk.target = address.ip
    b.stage(walk.name("VM Entrance", "Virtual NIC"), vnic.mode, f"Guest ({distro})", technique, f"{guest}/eth0")
    return Level(guest, "eth0", address, "vm", vm.os)


def _bridge_guest(walk: StackWalk, hypervisor: HypervisorLayer, below: Level, vnic, product: str) -> None:
    """Bridged networking: the guest's vNIC joins the LAN through the host's NIC."""
    b = walk.b
    host_ns = below.ns
    nic = next(d for d in b.devices if d.namespace == host_ns and d.name == below.ingress)
    if hypervisor.type == "kvm":
        b.devices.remove(nic)
        nic = b.device(DeviceKind.NIC, nic.name, host_ns, mac=nic.mac, mtu=nic.mtu, master="br0")
        b.device(DeviceKind.BRIDGE, "br0", host_ns, config=Bridge(), addresses=[str(below.address)], mtu=nic.mtu)
        tap = b.device(DeviceKind.TAP, "vnet0", host_ns, master="br0", level="KVM/QEMU", mtu=nic.mtu,
                       technique="TAP + vhost-net (virtio backend)")
        b.link(tap, vnic, "virtio (vhost-net)")
        b.stage("Host Bridge", Mode.KERNEL, "Linux Kernel", "Linux Bridge (L2 Switching)", f"{host_ns}/br0")
        b.stage(walk.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, "KVM/QEMU",
                "TAP + vhost-net (virtio backend)", f"{host_ns}/vnet0")
        return
    config = HypervisorSwitch(_hypervisor(hypervisor.type), SwitchMode.BRIDGED)
    if hypervisor.type == "hyperv":
        switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None, config=config,
                          mode=Mode.KERNEL, level="Network Stack", technique="Hyper-V Virtual Switch (L2 Switching)")
        b.link(nic, switch, "external virtual switch uplink")
        port = b.device(DeviceKind.TAP, "vmbus0", host_ns, master="vswitch", mac=None, level="Hyper-V",
                        technique="VMBus Synthetic NIC Channel")
        b.link(port, vnic, "VMBus")
        b.stage(walk.name("Host OS (Win)", "Host Switch"), Mode.KERNEL, "Network Stack",
                "Hyper-V Virtual Switch (L2 Switching)", f"{host_ns}/vswitch")
        b.stage(walk.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL, "Hyper-V", "VMBus Synthetic NIC Channel",
                f"{host_ns}/vmbus0")
        return
    switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None, config=config, level=product)
    if below.os == "windows":
        ndis = b.device(DeviceKind.NDIS_FILTER, "ndis-filter", host_ns, master="vswitch",
                        technique="NDIS Driver Interception")
        b.link(nic, ndis, "NDIS lightweight filter binding")
        b.stage("Host OS (Win)", Mode.KERNEL, "Network Stack", "NDIS Driver Interception", f"{host_ns}/ndis-filter")
    else:
        b.devices.remove(switch)
        switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None, config=config, level=product,
                          technique=f"Bridged Networking & Software Switching ({product} net filter driver)")
        port = b.device(DeviceKind.TAP, "uplink", host_ns, master="vswitch", mac=None, level=product,
                        technique=f"{product} net filter driver (bridged uplink)")
        b.link(nic, port, "bridged networking filter")
    b.link(switch, vnic, "VM NIC emulation")
    b.stage(walk.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, product,
            "Bridged Networking & Software Switching", f"{host_ns}/vswitch", *(
                [f"{host_ns}/uplink"] if below.os != "windows" else []))


def _nat_guest(walk: StackWalk, hypervisor: HypervisorLayer, below: Level, vnic, gateway: IPv4Interface,
               product: str) -> None:
    """NAT networking: the host forwards the port to the guest and hides the guest behind itwalk."""
    b = walk.b
    host_ns = below.ns
    plan = b.namespaces[host_ns]
    plan.ip_forward = True
    if hypervisor.type == "kvm":
        b.device(DeviceKind.BRIDGE, "virbr0", host_ns, config=Bridge(), addresses=[str(gateway)])
        tap = b.device(DeviceKind.TAP, "vnet0", host_ns, master="virbr0", level="KVM/QEMU",
                       technique="TAP + vhost-net (virtio backend)")
        b.link(tap, vnic, "virtio (vhost-net)")
        technique = "libvirt NAT (iptables DNAT/MASQUERADE)"
        out = "virbr0"
        b.stage("Host Bridge", Mode.KERNEL, "Linux Kernel", "Linux Bridge (L2 Switching)", f"{host_ns}/virbr0")
        b.stage(walk.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, "KVM/QEMU",
                "TAP + vhost-net (virtio backend)", f"{host_ns}/vnet0")
        b.stage(walk.name("Host OS", "Host Namespace"), Mode.KERNEL, "Linux Kernel", technique, host_ns)
    else:
        switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, level=product,
                          config=HypervisorSwitch(_hypervisor(hypervisor.type), SwitchMode.NAT),
                          addresses=[str(gateway)], technique=f"{product} NAT Engine (port forwarding)")
        b.link(switch, vnic, "VM NIC emulation")
        out = "vswitch"
        technique = f"{product} NAT Engine (port forwarding)"
        b.stage(walk.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, product, technique,
                host_ns, f"{host_ns}/vswitch")
    walk.forward_port(host_ns, below.address, vnic.addresses[0], f"{product} NAT port forwarding")
    plan.nat.setdefault("postrouting", []).append(
        Rule(match=Match(out_iface=out), action=Snat(gateway.ip), comment=f"{product} NAT: guest sees the gateway"))


def _sriov_vm(walk: StackWalk, vm: VmLayer, below: Level, guest: str, distro: str) -> Level:
    """An SR-IOV VF passed through to the guest: the host NIC's eswitch hands it the frames."""
    b = walk.b
    address = walk.tied(vm.endpoint, below.address.network) or host_address(below.address, 30)
    vf = b.device(DeviceKind.SRIOV_VF, "eth0", guest, config=SriovVf(0), addresses=[str(address)],
                  level="NIC", technique="SR-IOV Virtual Function (direct hardware access)")
    eswitch = next(d for d in b.devices if d.kind is DeviceKind.NIC_ESWITCH)
    b.link(eswitch, vf, "PCIe passthrough (VFIO)")
    b.stage(walk.name("VM Entrance", "Virtual Function"), Mode.HARDWARE, "NIC",
            "SR-IOV Virtual Function (hypervisor bypassed)", f"{guest}/eth0")
    b.stage(walk.name("VM Driver", "VF Driver"), Mode.KERNEL, f"Guest ({distro})",
            "SR-IOV VF Driver (guest owns the VF, no hypervisor)", f"{guest}/eth0:driver")
    walk.target = address.ip
    return Level(guest, "eth0", address, "vm", vm.os)


def wsl2(walk: StackWalk, layer: HypervisorLayer, below: Level) -> Level:
    """WSL2: the Linux utility VM behind the Hyper-V switch, in NAT (default) or mirrored mode."""
    b = walk.b
    host_ns = below.ns
    nic = walk.device(host_ns, below.ingress)
    b.devices.remove(nic)  # the NIC becomes the switch's uplink: the host's address moves to a vNIC
    nic = b.device(DeviceKind.NIC, "eth0", host_ns, mac=nic.mac, mtu=nic.mtu)
    switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None,
                      config=HypervisorSwitch(Hypervisor.HYPERV, SwitchMode.BRIDGED), mode=Mode.KERNEL,
                      level="Network Stack", technique="Hyper-V Virtual Switch (L2 Switching)")
    b.link(nic, switch, "Hyper-V switch uplink")
    b.namespace("wsl", NamespaceKind.VM, origin=f"stack/{walk.stack.name}/wsl2")
    wsl_fields = dict(mode=Mode.KERNEL, level="WSL2 Linux", technique="Hyper-V Synthetic NIC (hv_netvsc)")
    b.join("wsl", "wsl/eth0", "wsl/eth0:driver")
    if layer.network == "mirrored":
        gateway = b.device(DeviceKind.WSL2_GATEWAY, "mirror", host_ns, mac=None, master="vswitch",
                           config=Wsl2Gateway(Wsl2Mode.MIRRORED),
                           technique="Mirrored Networking (host interfaces shared with Linux)")
        vnic = b.device(DeviceKind.NIC, "eth0", "wsl", addresses=[str(below.address)], **wsl_fields)
        b.link(gateway, vnic, "mirrored interface")
        b.stage("Host OS (Win)", Mode.KERNEL, "Network Stack", "Hyper-V Virtual Switch (L2 Switching)",
                f"{host_ns}/vswitch")
        b.stage("WSL2 Boundary", Mode.KERNEL, "Internal Gateway", "Mirrored Networking (Hyper-V firewall)",
                f"{host_ns}/mirror")
        walk.target = below.address.ip
        return Level("wsl", "eth0", below.address, "wsl2", "linux")
    b.device(DeviceKind.NIC, "host-vnic", host_ns, master="vswitch", addresses=[str(below.address)],
             mode=Mode.KERNEL, level="Network Stack", technique="Hyper-V Host vNIC (vEthernet)")
    inside = ip_interface("172.28.0.1/20")
    address = ip_interface("172.28.0.2/20")
    gateway = b.device(DeviceKind.WSL2_GATEWAY, "wsl-gw", host_ns, config=Wsl2Gateway(Wsl2Mode.NAT),
                       addresses=[str(inside)])
    vnic = b.device(DeviceKind.NIC, "eth0", "wsl", addresses=[str(address)], **wsl_fields)
    b.link(gateway, vnic, "vEthernet (WSL) internal switch")
    plan = b.namespaces[host_ns]
    plan.ip_forward = True
    walk.forward_port(host_ns, below.address, address, "WSL2 port proxy (netsh interface portproxy)")
    plan.nat.setdefault("postrouting", []).append(
        Rule(match=Match(out_iface="wsl-gw"), action=Masquerade(), comment="WSL2 NAT (WinNAT)"))
    b.namespaces["wsl"].routes.append(Route(dst=ip_network("0.0.0.0/0"), via=inside.ip))
    b.stage("Host OS (Win)", Mode.KERNEL, "Network Stack", "Hyper-V Virtual Switch (L2 Switching)",
            f"{host_ns}/vswitch", f"{host_ns}/host-vnic")
    b.stage("WSL2 Boundary", Mode.KERNEL, "Internal Gateway", "Internal Bridge/IP Forwarding",
            host_ns, f"{host_ns}/wsl-gw")
    return Level("wsl", "eth0", address, "wsl2", "linux")



def _hypervisor(kind: str) -> Hypervisor:
    return {"virtualbox": Hypervisor.VIRTUALBOX, "vmware": Hypervisor.VMWARE, "hyperv": Hypervisor.HYPERV}[kind]
