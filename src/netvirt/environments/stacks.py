"""A spec stack (host -> hypervisor -> vm -> kubernetes -> pod -> app) as a device graph.

Contract: ``build(spec, stack) -> StackGraph``: one host graph holding the outside world (a
client on the ``lan`` segment), the physical host and every nested environment as namespaces,
wired as the real products wire them, with every device's mode, level and technique set and the
hops grouped in ``graph.Stage``s named in the notes' vocabulary: a Windows host gives the
walkthrough steps of the notes' section 5 ("Physical Entry", "Host OS (Win)", ...), a Linux host
the component names of section 4's paths ("NIC", "Host Bridge", ...). Traffic enters from the
client at the bottom and is forwarded up to the app: bridged networks put the guest on the LAN,
NAT networks forward the port (VirtualBox/VMware/Hyper-V NAT engines, libvirt, the WSL2 port
proxy), containers publish it, Kubernetes exposes it as a NodePort (30000 + port % 2768) that
kube-proxy translates to the pod. docs/trace.md has the table of layers and what each builds.
Fixed address plan: LAN 192.168.1.0/24 (or the tied spec host's underlay), host .10, bridged
guests .20, client .254; VirtualBox NAT 10.0.2.0/24, libvirt 192.168.122.0/24, Hyper-V/WSL2
172.28.0.0/20, Docker 172.17.0.0/16, pods 10.244.0.0/24, services 10.96.0.10.
"""

import dataclasses
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, ip_address, ip_interface, ip_network

from netvirt.environments.builder import EnvironmentError, GraphBuilder, host_address, last_address
from netvirt.graph import (
    Bridge,
    Chain,
    CtState,
    DeviceHook,
    DeviceKind,
    Dnat,
    DROP,
    FdbEntry,
    HookKind,
    Hypervisor,
    HypervisorSwitch,
    Macvlan,
    Masquerade,
    Match,
    Mode,
    NamespaceKind,
    NatTarget,
    Neighbour,
    NetfilterHook,
    NetworkGraph,
    PortRange,
    Proto,
    Route,
    Rule,
    Snat,
    Socket,
    SriovVf,
    SwitchMode,
    Tunnel,
    Veth,
    Wsl2Gateway,
    Wsl2Mode,
)
from netvirt.management.spec import AppLayer, ContainerLayer, HostLayer, HypervisorLayer, KubernetesLayer, \
    PodLayer, Spec, Stack, VmLayer

DEFAULT_LAN = ip_interface("192.168.1.10/24")
NODE_PORTS = (30000, 32767)
PROXY_TECHNIQUES = {
    "iptables": "Netfilter/IPTables (Service NAT/Filtering)",
    "nftables": "Netfilter/nftables (Service NAT/Filtering)",
    "ipvs": "IPVS (Kernel Load Balancer, Service NAT)",
    "ebpf": "eBPF (Kube-proxy Replacement, Service NAT)",
}
# The notes' anomaly 2: in WSL2 the distribution's kube-proxy rules run through iptables-nft and
# the WSL2 kernel's eBPF hooks alike.
WSL2_PROXY_TECHNIQUE = "eBPF/IPTables (Kube-proxy Rule Processing)"
CNI_ATTACH = {  # how the CNI joins a pod to the node: (switch or None, technique of the step)
    "flannel-vxlan": ("cni0", "Linux Bridge & Veth Pair (Inter-namespace routing)"),
    "antrea-geneve": ("br-int", "OVS Bridge & Veth Pair (Inter-namespace routing)"),
    "calico-ipip": (None, "Veth Pair (Namespace crossover)"),
    "calico-vxlan": (None, "Veth Pair (Namespace crossover)"),
    "cilium-ebpf": (None, "Veth Pair (Namespace crossover)"),
    "cilium-vxlan": (None, "Veth Pair (Namespace crossover)"),
    "cilium-geneve": (None, "Veth Pair (Namespace crossover)"),
}
CNI_TUNNELS = {  # the overlay device every node of the cluster has (name, kind, vni, port)
    "flannel-vxlan": ("flannel.1", DeviceKind.VXLAN, 1, 8472),
    "calico-vxlan": ("vxlan.calico", DeviceKind.VXLAN, 4096, 4789),
    "cilium-vxlan": ("cilium_vxlan", DeviceKind.VXLAN, 2, 8472),
    "cilium-geneve": ("cilium_geneve", DeviceKind.GENEVE, 2, 6081),
    "antrea-geneve": ("antrea-tun0", DeviceKind.GENEVE, 0, 6081),
}
VNIC = {  # vm vnic -> (device kind, technique)
    "virtio": (DeviceKind.VIRTIO_NIC, "VirtIO-net Driver (Hardware Abstraction)"),
    "e1000": (DeviceKind.NIC, "Emulated e1000 NIC (device model)"),
    "vmxnet3": (DeviceKind.NIC, "VMXNET3 Paravirtual NIC Driver"),
    "netvsc": (DeviceKind.NIC, "Hyper-V Synthetic NIC (netvsc over VMBus)"),
    "sriov-vf": (DeviceKind.SRIOV_VF, "SR-IOV Virtual Function (direct hardware access)"),
}
HYPERVISOR_NAMES = {"kvm": "KVM/QEMU", "virtualbox": "VirtualBox", "vmware": "VMware", "hyperv": "Hyper-V",
                    "wsl2": "WSL2"}


@dataclass(frozen=True, slots=True)
class StackGraph:
    """A stack as a graph, and the walkthrough it stands for: the outside client in namespace
    ``client`` sends ``proto`` to ``target``:``port`` and the app listening on ``app_port`` in
    ``app_namespace`` should get it. ``host`` names the graph's one host."""

    name: str
    network: NetworkGraph
    host: str
    client: str
    client_address: IPv4Address
    target: IPv4Address
    proto: str
    port: int
    app_namespace: str
    app_port: int


@dataclass
class _Level:
    """Where packets arrive at the current layer: namespace, its ingress device and address."""

    ns: str
    ingress: str
    address: IPv4Interface
    context: str  # "host", "vm", "wsl2", "pod", "container"
    os: str


def build(spec: Spec, stack: Stack) -> StackGraph:
    """The graph of ``stack`` (see the module docstring); ``EnvironmentError`` if it cannot be built."""
    return _Stack(spec, stack).run()


class _Stack:
    def __init__(self, spec: Spec, stack: Stack) -> None:
        self.spec = spec
        self.stack = stack
        self.layers = stack.layers
        self.b = GraphBuilder(host=stack.name)
        self.windows = isinstance(self.layers[0], HostLayer) and self.layers[0].os == "windows"
        app = next((layer for layer in self.layers if isinstance(layer, AppLayer)), None)
        if app is None:
            raise EnvironmentError(f"stack {stack.name}: a stack needs an app layer on top")
        self.app = app
        self.proto, self.app_port = self._listen(app)
        self.port = self.app_port  # the port the outside uses; a NodePort once kubernetes exposes the app
        self.k8s: KubernetesLayer | None = None
        self.pending_dnat: list[tuple[str, IPv4Interface, IPv4Interface, str]] = []

    # --- naming ----------------------------------------------------------------------------------

    def name(self, windows: str, linux: str) -> str:
        """A step's name in the notes' walkthrough (Windows host) or path (Linux host) vocabulary."""
        return windows if self.windows else linux

    def _listen(self, app: AppLayer) -> tuple[str, int]:
        listen = app.listen
        if listen is None and app.endpoint is not None:
            endpoint = self.spec.index["endpoints"].get(app.endpoint)
            if endpoint is not None and endpoint.listen:
                listen = endpoint.listen[0]
        if listen is None:
            return "tcp", 8080
        return str(listen.proto), int(listen.port)

    def _tied(self, name: str | None, within=None) -> IPv4Interface | None:
        """The IPv4 address (with its network's prefix) of spec endpoint ``name``, if it has one
        (and it lies in ``within``)."""
        endpoint = self.spec.index["endpoints"].get(name) if name else None
        if endpoint is None or endpoint.attachments[0].ip is None:
            return None
        network = self.spec.index["networks"].get(endpoint.attachments[0].network)
        prefix = network.subnet.prefixlen if network is not None and network.subnet is not None else 24
        address = ip_interface(f"{endpoint.attachments[0].ip}/{prefix}")
        return address if within is None or address.ip in within else None

    def _workload_address(self, name: str | None, default: str, per_node: bool) -> tuple[IPv4Interface, IPv4Interface]:
        """A pod's or container's address and its gateway on the node (with prefix). A tied
        endpoint keeps its spec address and gateway; with ``per_node`` a network wider than /24
        gives the node the /24 around the address, as flannel gives each node a /24."""
        address = self._tied(name) or ip_interface(default)
        endpoint = self.spec.index["endpoints"].get(name) if name else None
        network = self.spec.index["networks"].get(endpoint.attachments[0].network) if endpoint else None
        subnet = address.network
        if per_node and subnet.prefixlen < 24:
            subnet = ip_network(f"{address.ip}/24", strict=False)
        gateway = network.gateway if network is not None and network.gateway in subnet else subnet.network_address + 1
        if gateway == address.ip:
            gateway = subnet.broadcast_address - 1
        return ip_interface(f"{address.ip}/{subnet.prefixlen}"), ip_interface(f"{gateway}/{subnet.prefixlen}")

    def _service_of(self, endpoint: str | None):
        """The spec service that balances over ``endpoint`` (first by name), if any."""
        return next((service for service in sorted(self.spec.services, key=lambda s: s.name)
                     if endpoint is not None and endpoint in service.backends), None)

    # --- the walk over the layers ----------------------------------------------------------------

    def run(self) -> StackGraph:
        level = self._host(self.layers[0])
        index = 1
        while index < len(self.layers):
            layer = self.layers[index]
            if isinstance(layer, HypervisorLayer):
                if layer.type == "wsl2":
                    level = self._wsl2(layer, level)
                    index += 1
                    continue
                guest = self.layers[index + 1] if index + 1 < len(self.layers) else None
                if not isinstance(guest, VmLayer):
                    raise EnvironmentError(f"stacks[{self.stack.name}].layers[{index + 1}]: a {layer.type} "
                                           "hypervisor needs a vm layer on it")
                level = self._vm(layer, guest, level)
                index += 2
            elif isinstance(layer, KubernetesLayer):
                level = self._kubernetes(layer, level)
                index += 1
            elif isinstance(layer, (PodLayer, ContainerLayer)):
                level = self._workload(layer, level)
                index += 1
            elif isinstance(layer, AppLayer):
                self._app(layer, level)
                index += 1
            else:
                raise EnvironmentError(f"stacks[{self.stack.name}].layers[{index}]: a {layer.layer} layer cannot sit here")
        network = self.b.finish()
        return StackGraph(self.stack.name, network, self.b.host, "outside", self.client_address,
                          self.target, self.proto, self.port, self.app_namespace, self.app_port)

    # --- host ------------------------------------------------------------------------------------

    def _host(self, layer: HostLayer) -> _Level:
        b = self.b
        lan = DEFAULT_LAN
        mtu = 1500
        if layer.host is not None and layer.host in self.spec.index["hosts"]:
            host = self.spec.host(layer.host)
            lan, mtu = ip_interface(host.underlay), host.mtu
            if lan.version != 4:
                raise EnvironmentError(f"stack {self.stack.name}: host {host.name} has an IPv6 underlay; "
                                       "walkthroughs are built on an IPv4 LAN")
        b.segment_mtu = mtu
        self.lan = lan
        b.namespace("outside", NamespaceKind.EXTERNAL)
        self.client_address = last_address(lan)
        client = b.device(DeviceKind.NIC, "eth0", "outside", addresses=[f"{self.client_address}/{lan.network.prefixlen}"],
                          mtu=mtu, mode=Mode.HARDWARE, level="Outside", technique="Client on the LAN")
        b.attach(client)
        ns = "windows" if layer.os == "windows" else "host"
        b.namespace(ns, NamespaceKind.HOST, origin=f"stack/{self.stack.name}/host")
        nic = b.device(DeviceKind.NIC, "eth0", ns, addresses=[str(lan)], mtu=mtu)
        b.attach(nic)
        self.target = lan.ip
        following = self.layers[1] if len(self.layers) > 1 else None
        name = self.name("Physical Entry", "Hardware NIC" if isinstance(following, AppLayer) else
                         "NIC" if isinstance(following, HypervisorLayer) else "Host NIC")
        b.stage(name, Mode.HARDWARE, "NIC", "Physical Signal Reception", f"{ns}/eth0")
        if layer.nic == "sriov":
            b.device(DeviceKind.NIC_ESWITCH, "eswitch", ns, parent="eth0")
            b.stage(self.name("NIC eSwitch", "NIC eSwitch"), Mode.HARDWARE, "NIC", "NIC Embedded Switch (SR-IOV)",
                    f"{ns}/eswitch")
        return _Level(ns, "eth0", lan, "host", layer.os)

    # --- hypervisor + vm -------------------------------------------------------------------------

    def _vm(self, hypervisor: HypervisorLayer, vm: VmLayer, below: _Level) -> _Level:
        b = self.b
        product = HYPERVISOR_NAMES[hypervisor.type]
        mode = hypervisor.network or "nat"
        guest = "vm" if "vm" not in b.namespaces else f"vm{len(b.namespaces)}"
        b.namespace(guest, NamespaceKind.VM, origin=f"stack/{self.stack.name}/vm")
        kind, technique = VNIC[vm.vnic]
        distro = vm.label or ("Linux" if vm.os == "linux" else "Windows")
        vnic_fields = dict(level=f"Guest ({distro})", technique=technique)
        if kind is DeviceKind.NIC:
            vnic_fields["mode"] = Mode.KERNEL
        host_ns = below.ns
        if vm.vnic == "sriov-vf":
            return self._sriov_vm(vm, below, guest, distro)
        if mode in ("bridged", "external"):
            address = self._tied(vm.endpoint, below.address.network) or host_address(below.address, 20)
            vnic = b.device(kind, "eth0", guest, addresses=[str(address)], **vnic_fields)
            self._bridge_guest(hypervisor, below, vnic, product)
            self.target = address.ip
            gateway = None
        elif mode == "nat":
            inner = {"virtualbox": "10.0.2.15/24", "kvm": "192.168.122.10/24"}.get(hypervisor.type, "172.28.0.10/20")
            address = ip_interface(inner)
            gateway = host_address(address, 2 if hypervisor.type == "virtualbox" else 1)
            vnic = b.device(kind, "eth0", guest, addresses=[str(address)], **vnic_fields)
            self._nat_guest(hypervisor, below, vnic, gateway, product)
            b.namespaces[guest].routes.append(Route(dst=ip_network("0.0.0.0/0"), via=gateway.ip))
        else:  # internal / host-only: the guest has no way to the outside
            address = ip_interface("192.168.56.101/24")
            vnic = b.device(kind, "eth0", guest, addresses=[str(address)], **vnic_fields)
            switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None,
                              config=HypervisorSwitch(_hypervisor(hypervisor.type), SwitchMode.INTERNAL),
                              level=product, technique=f"{product} Internal Network (no uplink)")
            b.link(switch, vnic, "VM NIC emulation")
            b.stage(self.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, product,
                    "Internal Network (no uplink)", f"{host_ns}/vswitch")
            self.target = address.ip
        b.stage(self.name("VM Entrance", "Virtual NIC"), vnic.mode, f"Guest ({distro})", technique, f"{guest}/eth0")
        return _Level(guest, "eth0", address, "vm", vm.os)

    def _bridge_guest(self, hypervisor: HypervisorLayer, below: _Level, vnic, product: str) -> None:
        """Bridged networking: the guest's vNIC joins the LAN through the host's NIC."""
        b = self.b
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
            b.stage(self.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, "KVM/QEMU",
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
            b.stage(self.name("Host OS (Win)", "Host Switch"), Mode.KERNEL, "Network Stack",
                    "Hyper-V Virtual Switch (L2 Switching)", f"{host_ns}/vswitch")
            b.stage(self.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL, "Hyper-V", "VMBus Synthetic NIC Channel",
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
        b.stage(self.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, product,
                "Bridged Networking & Software Switching", f"{host_ns}/vswitch", *(
                    [f"{host_ns}/uplink"] if below.os != "windows" else []))

    def _nat_guest(self, hypervisor: HypervisorLayer, below: _Level, vnic, gateway: IPv4Interface, product: str) -> None:
        """NAT networking: the host forwards the port to the guest and hides the guest behind itself."""
        b = self.b
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
            b.stage(self.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, "KVM/QEMU",
                    "TAP + vhost-net (virtio backend)", f"{host_ns}/vnet0")
            b.stage(self.name("Host OS", "Host Namespace"), Mode.KERNEL, "Linux Kernel", technique, host_ns)
        else:
            switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, level=product,
                              config=HypervisorSwitch(_hypervisor(hypervisor.type), SwitchMode.NAT),
                              addresses=[str(gateway)], technique=f"{product} NAT Engine (port forwarding)")
            b.link(switch, vnic, "VM NIC emulation")
            out = "vswitch"
            technique = f"{product} NAT Engine (port forwarding)"
            b.stage(self.name("Hypervisor Layer", "Hypervisor"), Mode.KERNEL_USER, product, technique,
                    host_ns, f"{host_ns}/vswitch")
        self._forward_port(host_ns, below.address, vnic.addresses[0], f"{product} NAT port forwarding")
        plan.nat.setdefault("postrouting", []).append(
            Rule(match=Match(out_iface=out), action=Snat(gateway.ip), comment=f"{product} NAT: guest sees the gateway"))

    def _sriov_vm(self, vm: VmLayer, below: _Level, guest: str, distro: str) -> _Level:
        """An SR-IOV VF passed through to the guest: the host NIC's eswitch hands it the frames."""
        b = self.b
        address = self._tied(vm.endpoint, below.address.network) or host_address(below.address, 30)
        vf = b.device(DeviceKind.SRIOV_VF, "eth0", guest, config=SriovVf(0), addresses=[str(address)],
                      level="NIC", technique="SR-IOV Virtual Function (direct hardware access)")
        eswitch = next(d for d in b.devices if d.kind is DeviceKind.NIC_ESWITCH)
        b.link(eswitch, vf, "PCIe passthrough (VFIO)")
        b.stage(self.name("VM Entrance", "Virtual Function"), Mode.HARDWARE, "NIC",
                "SR-IOV Virtual Function (hypervisor bypassed)", f"{guest}/eth0")
        b.stage(self.name("VM Driver", "VF Driver"), Mode.KERNEL, f"Guest ({distro})",
                "SR-IOV VF Driver (guest owns the VF, no hypervisor)", f"{guest}/eth0:driver")
        self.target = address.ip
        return _Level(guest, "eth0", address, "vm", vm.os)

    # --- WSL2 ------------------------------------------------------------------------------------

    def _wsl2(self, layer: HypervisorLayer, below: _Level) -> _Level:
        """WSL2: the Linux utility VM behind the Hyper-V switch, in NAT (default) or mirrored mode."""
        b = self.b
        host_ns = below.ns
        nic = self._device(host_ns, below.ingress)
        b.devices.remove(nic)  # the NIC becomes the switch's uplink: the host's address moves to a vNIC
        nic = b.device(DeviceKind.NIC, "eth0", host_ns, mac=nic.mac, mtu=nic.mtu)
        switch = b.device(DeviceKind.HYPERVISOR_SWITCH, "vswitch", host_ns, mac=None,
                          config=HypervisorSwitch(Hypervisor.HYPERV, SwitchMode.BRIDGED), mode=Mode.KERNEL,
                          level="Network Stack", technique="Hyper-V Virtual Switch (L2 Switching)")
        b.link(nic, switch, "Hyper-V switch uplink")
        b.namespace("wsl", NamespaceKind.VM, origin=f"stack/{self.stack.name}/wsl2")
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
            self.target = below.address.ip
            return _Level("wsl", "eth0", below.address, "wsl2", "linux")
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
        self._forward_port(host_ns, below.address, address, "WSL2 port proxy (netsh interface portproxy)")
        plan.nat.setdefault("postrouting", []).append(
            Rule(match=Match(out_iface="wsl-gw"), action=Masquerade(), comment="WSL2 NAT (WinNAT)"))
        b.namespaces["wsl"].routes.append(Route(dst=ip_network("0.0.0.0/0"), via=inside.ip))
        b.stage("Host OS (Win)", Mode.KERNEL, "Network Stack", "Hyper-V Virtual Switch (L2 Switching)",
                f"{host_ns}/vswitch", f"{host_ns}/host-vnic")
        b.stage("WSL2 Boundary", Mode.KERNEL, "Internal Gateway", "Internal Bridge/IP Forwarding",
                host_ns, f"{host_ns}/wsl-gw")
        return _Level("wsl", "eth0", address, "wsl2", "linux")

    def _forward_port(self, ns: str, outside: IPv4Interface, inside: IPv4Interface, comment: str) -> None:
        """DNAT the outside port to ``inside``; the port is filled in once the app layer is known."""
        self.pending_dnat.append((ns, outside, inside, comment))

    # --- kubernetes, pods, containers ------------------------------------------------------------

    def _kubernetes(self, layer: KubernetesLayer, below: _Level) -> _Level:
        """A node: kube-proxy's NodePort/ClusterIP DNAT, the CNI's overlay device, XDP/tc programs."""
        b = self.b
        self.k8s = layer
        node = below.ns
        plan = b.namespaces[node]
        plan.ip_forward = True
        # Cilium replaces kube-proxy with eBPF unless a proxy is named
        proxy = layer.proxy if "proxy" in layer.model_fields_set or not layer.cni.startswith("cilium") else "ebpf"
        tunnel = CNI_TUNNELS.get(layer.cni)
        places = [node]
        if tunnel is not None:
            name, kind, vni, port = tunnel
            b.device(kind, name, node, mtu=self.b.segment_mtu - 50, level="Linux Kernel",
                     config=Tunnel(vni=vni, local=below.address.ip, dst_port=port),
                     technique=f"{layer.cni} overlay ({kind.value.upper()} Encapsulation)")
            places.append(f"{node}/{name}")
        hooks = []
        if layer.xdp:
            hooks.append(DeviceHook(kind=HookKind.XDP, program="xdp-nodeport"))
        if layer.cni.startswith("cilium"):
            hooks.append(DeviceHook(kind=HookKind.TC_INGRESS, program="cil_from_netdev"))
        if hooks:
            ingress = self._device(node, below.ingress)
            b.devices[b.devices.index(ingress)] = dataclasses.replace(ingress, hooks=tuple(hooks))
        plan.filter.append(Chain(hook=NetfilterHook.FORWARD, rules=(
            Rule(match=Match(ct_states=frozenset({CtState.INVALID})), action=DROP, comment="KUBE-FORWARD: invalid"),)))
        self.node = below
        if below.context == "host" and not self.windows:
            name = "Host Namespace"
        else:
            name = {"vm": self.name("VM Networking", "Guest Kernel"), "wsl2": "WSL2 Linux"}.get(below.context, "Host OS")
        technique = WSL2_PROXY_TECHNIQUE if below.context == "wsl2" and proxy != "ipvs" else PROXY_TECHNIQUES[proxy]
        b.stage(name, Mode.KERNEL, "Linux Kernel", technique, *[place for place in places if "/" not in place])
        if tunnel is not None:
            b.stage("CNI Overlay", Mode.KERNEL, "Linux Kernel", f"{kind.value.upper()} Encapsulation ({layer.cni}, "
                    "in the kernel)", f"{node}/{tunnel[0]}")
        self.proxy = proxy
        return _Level(node, below.ingress, below.address, "node", "linux")

    def _workload(self, layer: PodLayer | ContainerLayer, below: _Level) -> _Level:
        """A pod or container: its namespace, joined to the node by the CNI or the container runtime."""
        b = self.b
        is_pod = isinstance(layer, PodLayer)
        if isinstance(layer, ContainerLayer) and layer.network == "host":
            return _Level(below.ns, below.ingress, below.address, "container", below.os)
        ns = "pod" if is_pod else "container"
        b.namespace(ns, NamespaceKind.POD if is_pod else NamespaceKind.CONTAINER, origin=f"stack/{self.stack.name}/{ns}")
        if isinstance(layer, ContainerLayer) and layer.network == "macvlan":
            return self._macvlan(layer, below)
        node = below.ns
        if self.k8s is not None:
            switch, technique = CNI_ATTACH[self.k8s.cni]
            address, gateway = self._workload_address(layer.endpoint, "10.244.0.10/24", True)
        else:
            switch = {"docker": "docker0", "podman": "podman0"}.get(layer.runtime, "cni0")
            technique = "Linux Bridge & Veth Pair (Inter-namespace routing)"
            address, gateway = self._workload_address(layer.endpoint, "172.17.0.2/16", False)
        host_side = f"veth-{ns}"
        if switch is not None:
            b.device(DeviceKind.BRIDGE, switch, node, config=Bridge(), addresses=[str(gateway)],
                     technique="Open vSwitch (OpenFlow pipeline)" if switch == "br-int" else "Linux Bridge (L2 Switching)")
            b.device(DeviceKind.VETH, host_side, node, config=Veth("eth0", ns), master=switch)
            b.device(DeviceKind.VETH, "eth0", ns, config=Veth(host_side, node), addresses=[str(address)])
            b.namespaces[ns].routes.append(Route(dst=ip_network("0.0.0.0/0"), via=gateway.ip))
        else:  # routed veth (Calico, Cilium): a /32 route on the node, a link-local gateway in the pod
            host_veth = b.device(DeviceKind.VETH, host_side, node, config=Veth("eth0", ns))
            address = ip_interface(f"{address.ip}/32")
            b.device(DeviceKind.VETH, "eth0", ns, config=Veth(host_side, node), addresses=[str(address)])
            link_local = ip_address("169.254.1.1")
            b.namespaces[ns].routes += [Route(dst=ip_network("169.254.1.1/32"), dev="eth0"),
                                        Route(dst=ip_network("0.0.0.0/0"), via=link_local, dev="eth0")]
            b.namespaces[ns].neighbours.append(Neighbour(link_local, host_veth.mac, "eth0"))
            b.namespaces[node].routes.append(Route(dst=ip_network(f"{address.ip}/32"), dev=host_side))
        if self.k8s is not None:
            self._service(node, address, layer.endpoint)
            peer = self._peer_host(layer.endpoint)
            if peer is not None and CNI_TUNNELS.get(self.k8s.cni) and below.context == "node" and \
                    self.node.context == "host":
                self._peer_node(peer, node, address, gateway)
        else:
            b.namespaces[node].ip_forward = True
            self._forward_port(node, below.address, address, f"{layer.runtime} published port")
            b.namespaces[node].nat.setdefault("postrouting", []).append(
                Rule(match=Match(src=gateway.network), action=Masquerade(), comment=f"{layer.runtime} masquerade"))
            name = {"wsl2": "WSL2 Linux", "vm": self.name("VM Networking", "Guest Kernel")}.get(
                below.context, self.name("Host OS", "Host Namespace"))
            b.stage(name, Mode.KERNEL, "Linux Kernel", "Netfilter/IPTables (Port Publishing DNAT)", node)
        crossing = [f"{node}/{host_side}", f"{ns}/eth0"]
        if self.windows and is_pod:  # the notes' walkthroughs: the CNI's bridge and veth pair isolate the pod
            b.stage("Pod Isolation", Mode.KERNEL, "Namespace", technique,
                    *([f"{node}/{switch}"] if switch else []), *crossing, ns)
        elif self.windows:  # a container is reached across its veth pair; the bridge is the node's
            node_stage = next(stage for stage in b.stages if node in stage.places)
            if switch is not None:
                b.stages[b.stages.index(node_stage)] = dataclasses.replace(
                    node_stage, places=(*node_stage.places, f"{node}/{switch}"))
            b.stage("Container Access", Mode.KERNEL, "Namespace", "Veth Pair (Namespace crossover)", *crossing, ns)
        else:  # the notes' paths: Virtual Bridge -> Veth Pair -> Container Namespace
            if switch is not None:
                b.stage("Virtual Bridge", Mode.KERNEL, "Linux Kernel", "Linux Bridge (L2 Switching)", f"{node}/{switch}")
            b.stage("Veth Pair", Mode.KERNEL, "Namespace", "Veth Pair (Namespace crossover)", *crossing)
            b.stage("Pod Namespace" if is_pod else "Container Namespace", Mode.KERNEL, "Namespace",
                    "Network Namespace (isolated stack)", ns)
        return _Level(ns, "eth0", address, "pod" if is_pod else "container", "linux")

    def _peer_host(self, endpoint: str | None):
        """Another spec host of the cluster: one with endpoints on this pod's network (first by name)."""
        tied = self.spec.index["endpoints"].get(endpoint) if endpoint else None
        here = self.layers[0].host
        if tied is None or here is None:
            return None
        network = tied.attachments[0].network
        names = sorted({e.host for e in self.spec.endpoints if e.host != here
                        and any(a.network == network for a in e.attachments)})
        return self.spec.host(names[0]) if names else None

    def _peer_node(self, peer, node: str, pod: IPv4Interface, gateway: IPv4Interface) -> None:
        """The cluster's other node: the client reaches the service's NodePort there, kube-proxy
        sends it to this node's pod, and the CNI carries it across in its overlay — the notes'
        "extends the container model using CNI (VXLAN/Geneve encapsulation in the kernel)"."""
        b = self.b
        name, kind, vni, port = CNI_TUNNELS[self.k8s.cni]
        here_tunnel = self._device(node, name)
        peer_ns = f"peer-{peer.name}"
        underlay = ip_interface(peer.underlay)
        if underlay.network != self.lan.network:
            raise EnvironmentError(f"stack {self.stack.name}: node {peer.name} ({underlay}) is not on the LAN of "
                                   f"{self.layers[0].host} ({self.lan.network}); put the cluster's nodes on one LAN")
        plan = b.namespace(peer_ns, NamespaceKind.HOST, origin=f"host/{peer.name}")
        plan.ip_forward = True
        nic = b.device(DeviceKind.NIC, "eth0", peer_ns, addresses=[str(underlay)], mtu=peer.mtu)
        b.attach(nic)
        peer_subnet = ip_network(f"{gateway.network.network_address + 256}/{gateway.network.prefixlen}", strict=False) \
            if gateway.network.prefixlen >= 24 else ip_network("10.244.255.0/24")
        here_address, peer_address = gateway.network.network_address, peer_subnet.network_address
        peer_tunnel = b.device(kind, name, peer_ns, mtu=peer.mtu - 50, addresses=[f"{peer_address}/32"],
                               config=Tunnel(vni=vni, local=underlay.ip, dst_port=port, fdb=(
                                   FdbEntry(here_tunnel.mac, remote=self.node.address.ip),)),
                               level="Linux Kernel", technique=f"{self.k8s.cni} overlay ({kind.value.upper()} Encapsulation)")
        b.devices[b.devices.index(here_tunnel)] = dataclasses.replace(
            here_tunnel, addresses=(ip_interface(f"{here_address}/32"),),
            config=dataclasses.replace(here_tunnel.config, fdb=(FdbEntry(peer_tunnel.mac, remote=underlay.ip),)))
        for ns, subnet, via, mac in ((peer_ns, gateway.network, here_address, here_tunnel.mac),
                                     (node, peer_subnet, peer_address, peer_tunnel.mac)):
            b.namespaces[ns].routes.append(Route(dst=subnet, via=via, dev=name))
            b.namespaces[ns].neighbours.append(Neighbour(via, mac, name))
        proto = Proto(self.proto)
        plan.nat["prerouting"] = [Rule(
            match=Match(dst=ip_network(f"{underlay.ip}/32"), proto=proto, dst_ports=PortRange.single(self.port)),
            action=Dnat(targets=(NatTarget(pod.ip, self.app_port),)), comment=f"kube-proxy: NodePort {self.port}")]
        plan.nat["postrouting"] = [Rule(match=Match(out_iface=name), action=Masquerade(),
                                        comment="kube-proxy: masquerade NodePort traffic")]
        self.target = underlay.ip
        b.stage(f"Peer Node ({peer.name})", Mode.KERNEL, "Linux Kernel",
                f"kube-proxy NodePort DNAT + {kind.value.upper()} Encapsulation", peer_ns, f"{peer_ns}/eth0",
                f"{peer_ns}/{name}")

    def _macvlan(self, layer: ContainerLayer, below: _Level) -> _Level:
        """A macvlan container: its own MAC on the LAN, behind the host NIC (bridge mode)."""
        b = self.b
        nic = self._device(below.ns, below.ingress)
        if below.ns not in {a.namespace for a in b.segment} or nic.kind is not DeviceKind.NIC:
            raise EnvironmentError(f"stack {self.stack.name}: network macvlan needs the NIC on the LAN; the container "
                                   f"sits in {below.ns}, behind {nic.kind.value} {nic.name}. Use network: bridge")
        address = self._tied(layer.endpoint, below.address.network) or host_address(below.address, 40)
        child = b.device(DeviceKind.MACVLAN, "eth0", "container", config=Macvlan(), addresses=[str(address)])
        b.link(nic, child, "macvlan (bridge mode)")
        b.stage("Macvlan", Mode.KERNEL, "Linux Kernel", "Macvlan Sub-interface (own MAC on the LAN)", "container/eth0")
        b.stage(self.name("Container Access", "Container Namespace"), Mode.KERNEL, "Namespace",
                "Network Namespace (isolated stack)", "container")
        self.target = address.ip
        return _Level("container", "eth0", address, "container", "linux")

    def _service(self, node: str, pod: IPv4Interface, endpoint: str | None) -> None:
        """kube-proxy: the ClusterIP (the spec's service for this endpoint, else 10.96.0.10) and
        the NodePort DNAT to the pod."""
        service = self._service_of(endpoint)
        vip, port = (service.vip, service.port.port) if service is not None else (ip_address("10.96.0.10"), self.app_port)
        name = service.name if service is not None else "app"
        self.port = NODE_PORTS[0] + port % (NODE_PORTS[1] - NODE_PORTS[0] + 1)
        target = NatTarget(pod.ip, self.app_port)
        proto = Proto(self.proto)
        self.b.namespaces[node].nat.setdefault("prerouting", []).extend([
            Rule(match=Match(dst=ip_network(f"{vip}/{vip.max_prefixlen}"), proto=proto, dst_ports=PortRange.single(port)),
                 action=Dnat(targets=(target,)), comment=f"kube-proxy: ClusterIP svc/{name}"),
            Rule(match=Match(dst=ip_network(f"{self.node.address.ip}/32"), proto=proto,
                             dst_ports=PortRange.single(self.port)),
                 action=Dnat(targets=(target,)), comment=f"kube-proxy: NodePort {self.port} svc/{name}"),
        ])

    # --- the app ---------------------------------------------------------------------------------

    def _app(self, layer: AppLayer, below: _Level) -> None:
        b = self.b
        ns = below.ns
        self.app_namespace = ns
        level = {"pod": "K8s App", "container": "Container App"}.get(below.context, "App")
        socket = Socket(proto=Proto(self.proto), port=self.app_port, app=layer.endpoint or "app")
        name = self.name("Final Destination", "App Socket" if below.context == "host" else "App")
        if not b.staged(ns):
            self._kernel_stage(below)
        if layer.io == "socket":
            technique = "Socket API (User Space processing)" if below.context == "container" else "Socket API (Buffer Read)"
            b.device(DeviceKind.SOCKET, "app", ns, config=socket, level=level, technique=technique)
            b.stage(name, Mode.USER, level, technique, f"{ns}/app")
        else:
            nic = self._device(ns, below.ingress)
            if layer.io == "dpdk" and nic.kind not in (DeviceKind.NIC, DeviceKind.VIRTIO_NIC, DeviceKind.SRIOV_VF):
                raise EnvironmentError(f"stack {self.stack.name}: app io dpdk needs a NIC it can bind (a host NIC, a "
                                       f"VM's vNIC or an SR-IOV VF); here it would sit on {nic.kind.value} {nic.name} "
                                       f"of a {below.context}. Use io: af_xdp or io: socket")
            dpdk = layer.io == "dpdk"
            bypass = "pmd0" if dpdk else "xsk0"
            technique = "DPDK Application (user-space stack)" if dpdk else "AF_XDP Application (UMEM rings)"
            b.device(DeviceKind.DPDK_PMD if dpdk else DeviceKind.AF_XDP_SOCKET, bypass, ns, parent=below.ingress)
            b.device(DeviceKind.SOCKET, "app", ns, config=socket, parent=bypass, level=level, technique=technique)
            if dpdk:
                b.stage("DPDK PMD", Mode.USER, "DPDK", "Poll Mode Driver (Kernel Bypass)", f"{ns}/{bypass}")
            else:
                b.stage("XDP Redirect", Mode.KERNEL, "Driver", "XDP redirect to AF_XDP (before sk_buff)",
                        f"{ns}/{bypass}", *([] if b.staged(f"{ns}/{below.ingress}:driver") else
                                            [f"{ns}/{below.ingress}:driver"]))
            b.stage(name, Mode.USER, level, technique, f"{ns}/app")
        self._apply_port_forwards()

    def _kernel_stage(self, below: _Level) -> None:
        """The step of the IP stack the app sits on, when no layer above the machine named one."""
        ns = below.ns
        technique = "TCP/IP Stack (Netfilter, Routing, Sockets)"
        if below.context == "host":
            if self.windows:
                self.b.stage("Host OS (Win)", Mode.KERNEL, "Network Stack", "Windows TCP/IP Stack (Sockets)", ns)
                return
            if self.app.io != "af_xdp":
                self.b.stage("Driver", Mode.KERNEL, "Driver", "NIC Driver (IRQ/NAPI poll, socket buffer allocation)",
                             f"{ns}/{below.ingress}:driver")
            self.b.stage("Kernel Stack", Mode.KERNEL, "Linux Kernel", technique, ns)
        elif below.context == "wsl2":
            self.b.stage("WSL2 Linux", Mode.KERNEL, "Linux Kernel", technique, ns)
        else:
            linux = below.os == "linux"
            self.b.stage(self.name("VM Networking", "Guest Kernel"), Mode.KERNEL,
                         "Linux Kernel" if linux else "Network Stack", technique, ns)

    def _apply_port_forwards(self) -> None:
        """The port forwards of NAT layers, now that the outside port is known (same port inside)."""
        proto = Proto(self.proto)
        for ns, outside, inside, comment in self.pending_dnat:
            self.b.namespaces[ns].nat.setdefault("prerouting", []).append(
                Rule(match=Match(dst=ip_network(f"{outside.ip}/32"), proto=proto, dst_ports=PortRange.single(self.port)),
                     action=Dnat(targets=(NatTarget(inside.ip, self.port),)), comment=comment))

    def _device(self, namespace: str, name: str):
        return next(d for d in self.b.devices if d.namespace == namespace and d.name == name)


def _hypervisor(kind: str) -> Hypervisor:
    return {"virtualbox": Hypervisor.VIRTUALBOX, "vmware": Hypervisor.VMWARE, "hyperv": Hypervisor.HYPERV}[kind]

