"""The app layer: where the walk ends (a socket, or a kernel-bypass app on DPDK or AF_XDP)."""

from netvirt.environments.builder import StackError
from netvirt.environments.stacks.walk import Level, StackWalk
from netvirt.graph import DeviceKind, Mode, Proto, Socket
from netvirt.management.spec import AppLayer


def app(walk: StackWalk, layer: AppLayer, below: Level) -> None:
    """The app on top: a socket, or a DPDK PMD / AF_XDP socket bound to the ingress device; then
    the port forwards of the NAT layers below, now that the outside port is known."""
    b = walk.b
    ns = below.ns
    walk.app_namespace = ns
    level = {"pod": "K8s App", "container": "Container App"}.get(below.context, "App")
    socket = Socket(proto=Proto(walk.proto), port=walk.app_port, app=layer.endpoint or "app")
    name = walk.name("Final Destination", "App Socket" if below.context == "host" else "App")
    if not b.staged(ns):
        _kernel_stage(walk, below)
    if layer.io == "socket":
        technique = "Socket API (User Space processing)" if below.context == "container" else "Socket API (Buffer Read)"
        b.device(DeviceKind.SOCKET, "app", ns, config=socket, level=level, technique=technique)
        b.stage(name, Mode.USER, level, technique, f"{ns}/app")
    else:
        nic = walk.device(ns, below.ingress)
        if layer.io == "dpdk" and nic.kind not in (DeviceKind.NIC, DeviceKind.VIRTIO_NIC, DeviceKind.SRIOV_VF):
            raise StackError(f"stack {walk.stack.name}: app io dpdk needs a NIC it can bind (a host NIC, a "
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
    walk.apply_port_forwards()


def _kernel_stage(walk: StackWalk, below: Level) -> None:
    """The step of the IP stack the app sits on, when no layer above the machine named one."""
    ns = below.ns
    technique = "TCP/IP Stack (Netfilter, Routing, Sockets)"
    if below.context == "host":
        if walk.windows:
            walk.b.stage("Host OS (Win)", Mode.KERNEL, "Network Stack", "Windows TCP/IP Stack (Sockets)", ns)
            return
        if walk.app.io != "af_xdp":
            walk.b.stage("Driver", Mode.KERNEL, "Driver", "NIC Driver (IRQ/NAPI poll, socket buffer allocation)",
                         f"{ns}/{below.ingress}:driver")
        walk.b.stage("Kernel Stack", Mode.KERNEL, "Linux Kernel", technique, ns)
    elif below.context == "wsl2":
        walk.b.stage("WSL2 Linux", Mode.KERNEL, "Linux Kernel", technique, ns)
    else:
        linux = below.os == "linux"
        walk.b.stage(walk.name("VM Networking", "Guest Kernel"), Mode.KERNEL,
                     "Linux Kernel" if linux else "Network Stack", technique, ns)
