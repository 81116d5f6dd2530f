"""The pod and container layers: a network namespace joined to the node by the CNI (see
``kubernetes.CNIS``) or to the host by the container runtime's bridge (published ports, masquerade),
or a macvlan child of the LAN NIC. Docker 172.17.0.0/16, pods 10.244.0.0/24."""

import dataclasses
from ipaddress import ip_address, ip_interface, ip_network

from netvirt.environments.builder import StackError, host_address
from netvirt.environments.stacks.kubernetes import BRIDGE_AND_VETH, CNIS, LINUX_BRIDGE, VETH_PAIR, expose
from netvirt.environments.stacks.walk import Level, StackWalk
from netvirt.graph import Bridge, DeviceKind, Macvlan, Masquerade, Match, Mode, NamespaceKind, Neighbour, Route, Rule, \
    Veth
from netvirt.management.spec import ContainerLayer, PodLayer

RUNTIME_BRIDGES = {"docker": "docker0", "podman": "podman0"}  # any other runtime: cni0
GUEST_NICS = (DeviceKind.VIRTIO_NIC, DeviceKind.NIC)  # a guest's vNIC (virtio, or emulated: e1000, vmxnet3, netvsc)


def workload(walk: StackWalk, layer: PodLayer | ContainerLayer, below: Level) -> Level:
    """A pod or container: its namespace, joined to the node by the CNI or the container runtime."""
    b = walk.b
    is_pod = isinstance(layer, PodLayer)
    if isinstance(layer, ContainerLayer) and layer.network == "host":
        return Level(below.ns, below.ingress, below.address, "container", below.os)
    ns = "pod" if is_pod else "container"
    b.namespace(ns, NamespaceKind.POD if is_pod else NamespaceKind.CONTAINER, origin=f"stack/{walk.stack.name}/{ns}")
    if isinstance(layer, ContainerLayer) and layer.network == "macvlan":
        return _macvlan(walk, layer, below)
    node = below.ns
    if walk.k8s is not None:
        cni = CNIS[walk.k8s.cni]
        switch, switch_technique, technique = cni.switch, cni.switch_technique, cni.attach
        address, gateway = walk.workload_address(layer.endpoint, "10.244.0.10/24", True)
    else:
        switch, switch_technique = RUNTIME_BRIDGES.get(layer.runtime, "cni0"), LINUX_BRIDGE
        technique = BRIDGE_AND_VETH
        address, gateway = walk.workload_address(layer.endpoint, "172.17.0.2/16", False)
    host_side = f"veth-{ns}"
    if switch is not None:
        b.device(DeviceKind.BRIDGE, switch, node, config=Bridge(), addresses=[str(gateway)], technique=switch_technique)
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
    if walk.k8s is not None:
        expose(walk, below, address, gateway, layer.endpoint)
    else:
        b.namespaces[node].ip_forward = True
        walk.forward_port(node, below.address, address, f"{layer.runtime} published port")
        b.namespaces[node].nat.setdefault("postrouting", []).append(
            Rule(match=Match(src=gateway.network), action=Masquerade(), comment=f"{layer.runtime} masquerade"))
        name = {"wsl2": "WSL2 Linux", "vm": walk.name("VM Networking", "Guest Kernel")}.get(
            below.context, walk.name("Host OS", "Host Namespace"))
        b.stage(name, Mode.KERNEL, "Linux Kernel", "Netfilter/IPTables (Port Publishing DNAT)", node)
    crossing = [f"{node}/{host_side}", f"{ns}/eth0"]
    if walk.windows and is_pod:  # the notes' walkthroughs: the CNI's bridge and veth pair isolate the pod
        b.stage("Pod Isolation", Mode.KERNEL, "Namespace", technique,
                *([f"{node}/{switch}"] if switch else []), *crossing, ns)
    elif walk.windows:  # a container is reached across its veth pair; the bridge is the node's
        node_stage = next(stage for stage in b.stages if node in stage.places)
        if switch is not None:
            b.stages[b.stages.index(node_stage)] = dataclasses.replace(
                node_stage, places=(*node_stage.places, f"{node}/{switch}"))
        b.stage("Container Access", Mode.KERNEL, "Namespace", VETH_PAIR, *crossing, ns)
    else:  # the notes' paths: Virtual Bridge -> Veth Pair -> Container Namespace
        if switch is not None:
            b.stage("Virtual Bridge", Mode.KERNEL, "Linux Kernel", LINUX_BRIDGE, f"{node}/{switch}")
        b.stage("Veth Pair", Mode.KERNEL, "Namespace", VETH_PAIR, *crossing)
        b.stage("Pod Namespace" if is_pod else "Container Namespace", Mode.KERNEL, "Namespace",
                "Network Namespace (isolated stack)", ns)
    return Level(ns, "eth0", address, "pod" if is_pod else "container", "linux")


def _macvlan(walk: StackWalk, layer: ContainerLayer, below: Level) -> Level:
    """A macvlan container: its own MAC on the LAN, behind the host NIC (bridge mode)."""
    b = walk.b
    nic = walk.device(below.ns, below.ingress)
    address = walk.tied(layer.endpoint, below.address.network) or host_address(below.address, 40)
    if below.context == "vm" and nic.kind in GUEST_NICS:
        # on a VM guest's virtual NIC (docker's macvlan driver inside the guest): the hypervisor's
        # switch must pass frames of a MAC it did not give the VM (anomaly macvlan_in_guest)
        b.device(DeviceKind.MACVLAN, "eth0", "container", parent=nic.name, config=Macvlan(lower_namespace=below.ns),
                 addresses=[str(address)])
    elif below.ns not in {a.namespace for a in b.segment} or nic.kind is not DeviceKind.NIC:
        raise StackError(f"stack {walk.stack.name}: network macvlan needs a NIC on the LAN (the host's, or a VM "
                         f"guest's virtual NIC); the container sits in {below.ns}, behind {nic.kind.value} "
                         f"{nic.name}. Use network: bridge")
    else:
        child = b.device(DeviceKind.MACVLAN, "eth0", "container", config=Macvlan(), addresses=[str(address)])
        b.link(nic, child, "macvlan (bridge mode)")
    b.stage("Macvlan", Mode.KERNEL, "Linux Kernel", "Macvlan Sub-interface (own MAC on the LAN)", "container/eth0")
    b.stage(walk.name("Container Access", "Container Namespace"), Mode.KERNEL, "Namespace",
            "Network Namespace (isolated stack)", "container")
    walk.target = address.ip
    return Level("container", "eth0", address, "container", "linux")
