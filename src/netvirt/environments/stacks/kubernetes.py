"""The kubernetes layer: a node with its CNI (one row of ``CNIS`` each) and service proxy, and what
kube-proxy does for a pod on it: the ClusterIP (the spec's service, else 10.96.0.10) and the
NodePort (30000 + port % 2768) DNAT to the pod, and, when the pod's network spans another spec
host, that peer node with the CNI's overlay between the two."""

import dataclasses
from dataclasses import dataclass
from ipaddress import IPv4Interface, ip_address, ip_interface, ip_network

from netvirt.environments.builder import StackError
from netvirt.environments.stacks.walk import Level, StackWalk
from netvirt.graph import (
    Chain,
    CtState,
    DeviceHook,
    DeviceKind,
    Dnat,
    DROP,
    FdbEntry,
    HookKind,
    Masquerade,
    Match,
    Mode,
    NamespaceKind,
    NatTarget,
    Neighbour,
    NetfilterHook,
    PortRange,
    Proto,
    Route,
    Rule,
    Snat,
    Tunnel,
)
from netvirt.management.spec import KubernetesLayer

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
LINUX_BRIDGE = "Linux Bridge (L2 Switching)"
BRIDGE_AND_VETH = "Linux Bridge & Veth Pair (Inter-namespace routing)"
VETH_PAIR = "Veth Pair (Namespace crossover)"


@dataclass(frozen=True, slots=True)
class Overlay:
    """The tunnel device every node of the cluster has."""

    device: str
    kind: DeviceKind
    vni: int
    port: int


@dataclass(frozen=True, slots=True)
class Cni:
    """What one CNI builds. ``switch``: the bridge its pods join (technique ``switch_technique``),
    None for a routed veth with a /32 route per pod (Calico, Cilium); ``attach``: the technique of
    the pod's attach step; ``overlay``: its tunnel device, if it has one; ``tc_program``: the
    program it hangs on the node NIC's tc ingress; ``proxy``: the service proxy it brings when the
    spec names none (None: kube-proxy as the spec says)."""

    switch: str | None
    attach: str
    overlay: Overlay | None = None
    switch_technique: str = LINUX_BRIDGE
    tc_program: str | None = None
    proxy: str | None = None


CNIS = {
    "flannel-vxlan": Cni("cni0", BRIDGE_AND_VETH, Overlay("flannel.1", DeviceKind.VXLAN, 1, 8472)),
    "antrea-geneve": Cni("br-int", "OVS Bridge & Veth Pair (Inter-namespace routing)",
                         Overlay("antrea-tun0", DeviceKind.GENEVE, 0, 6081),
                         switch_technique="Open vSwitch (OpenFlow pipeline)"),
    "calico-ipip": Cni(None, VETH_PAIR),
    "calico-vxlan": Cni(None, VETH_PAIR, Overlay("vxlan.calico", DeviceKind.VXLAN, 4096, 4789)),
    "cilium-ebpf": Cni(None, VETH_PAIR, tc_program="cil_from_netdev", proxy="ebpf"),
    "cilium-vxlan": Cni(None, VETH_PAIR, Overlay("cilium_vxlan", DeviceKind.VXLAN, 2, 8472),
                        tc_program="cil_from_netdev", proxy="ebpf"),
    "cilium-geneve": Cni(None, VETH_PAIR, Overlay("cilium_geneve", DeviceKind.GENEVE, 2, 6081),
                         tc_program="cil_from_netdev", proxy="ebpf"),
}


def node(walk: StackWalk, layer: KubernetesLayer, below: Level) -> Level:
    """A node: kube-proxy's NodePort/ClusterIP DNAT, the CNI's overlay device, XDP/tc programs."""
    b = walk.b
    cni = CNIS[layer.cni]
    walk.k8s = layer
    node = below.ns
    plan = b.namespaces[node]
    plan.ip_forward = True
    proxy = cni.proxy if cni.proxy is not None and "proxy" not in layer.model_fields_set else layer.proxy
    overlay = cni.overlay
    places = [node]
    if overlay is not None:
        b.device(overlay.kind, overlay.device, node, mtu=b.segment_mtu - 50, level="Linux Kernel",
                 config=Tunnel(vni=overlay.vni, local=below.address.ip, dst_port=overlay.port),
                 technique=f"{layer.cni} overlay ({overlay.kind.value.upper()} Encapsulation)")
        places.append(f"{node}/{overlay.device}")
    hooks = []
    if layer.xdp:
        hooks.append(DeviceHook(kind=HookKind.XDP, program="xdp-nodeport"))
    # proxy ebpf on another CNI: Cilium chained to it (CNI chaining), its program on the node's NIC
    program = cni.tc_program or ("cil_from_netdev" if proxy == "ebpf" else None)
    if program is not None:
        hooks.append(DeviceHook(kind=HookKind.TC_INGRESS, program=program))
    if hooks:
        ingress = walk.device(node, below.ingress)
        b.devices[b.devices.index(ingress)] = dataclasses.replace(ingress, hooks=tuple(hooks))
    walk.ebpf_proxy = proxy == "ebpf"
    if not walk.ebpf_proxy:  # kube-proxy's own chain; a kube-proxy replacement runs no kube-proxy
        plan.filter.append(Chain(hook=NetfilterHook.FORWARD, rules=(
            Rule(match=Match(ct_states=frozenset({CtState.INVALID})), action=DROP, comment="KUBE-FORWARD: invalid"),)))
    walk.node = below
    if below.context == "host" and not walk.windows:
        name = "Host Namespace"
    else:
        name = {"vm": walk.name("VM Networking", "Guest Kernel"), "wsl2": "WSL2 Linux"}.get(below.context, "Host OS")
    technique = WSL2_PROXY_TECHNIQUE if below.context == "wsl2" and proxy != "ipvs" else PROXY_TECHNIQUES[proxy]
    b.stage(name, Mode.KERNEL, "Linux Kernel", technique, *[place for place in places if "/" not in place])
    if overlay is not None:
        b.stage("CNI Overlay", Mode.KERNEL, "Linux Kernel", f"{overlay.kind.value.upper()} Encapsulation "
                f"({layer.cni}, in the kernel)", f"{node}/{overlay.device}")
    return Level(node, below.ingress, below.address, "node", "linux")


def expose(walk: StackWalk, below: Level, pod: IPv4Interface, gateway: IPv4Interface, endpoint: str | None) -> None:
    """kube-proxy for the pod at ``pod`` (gateway ``gateway``) on the node ``below``: its service,
    and the peer node when the pod's network spans another spec host."""
    node = below.ns
    _service(walk, node, pod, endpoint)
    peer = _peer_host(walk, endpoint)
    if peer is not None and CNIS[walk.k8s.cni].overlay is not None and below.context == "node" and \
            walk.node.context == "host":
        _peer_node(walk, peer, node, pod, gateway)


def _service(walk: StackWalk, node: str, pod: IPv4Interface, endpoint: str | None) -> None:
    """kube-proxy: the ClusterIP (the spec's service for this endpoint, else 10.96.0.10) and
    the NodePort DNAT to the pod."""
    service = walk.service_of(endpoint)
    vip, port = (service.vip, service.port.port) if service is not None else (ip_address("10.96.0.10"), walk.app_port)
    name = service.name if service is not None else "app"
    walk.port = NODE_PORTS[0] + port % (NODE_PORTS[1] - NODE_PORTS[0] + 1)
    target = NatTarget(pod.ip, walk.app_port)
    proto = Proto(walk.proto)
    who = "cilium" if walk.ebpf_proxy else "kube-proxy"
    rules = [
        Rule(match=Match(dst=ip_network(f"{vip}/{vip.max_prefixlen}"), proto=proto, dst_ports=PortRange.single(port)),
             action=Dnat(targets=(target,)), comment=f"{who}: ClusterIP svc/{name}"),
        Rule(match=Match(dst=ip_network(f"{walk.node.address.ip}/32"), proto=proto,
                         dst_ports=PortRange.single(walk.port)),
             action=Dnat(targets=(target,)), comment=f"{who}: NodePort {walk.port} svc/{name}"),
    ]
    if not walk.ebpf_proxy:
        walk.b.namespaces[node].nat.setdefault("prerouting", []).extend(rules)
        return
    # a kube-proxy replacement (Cilium): the service NAT is done by the eBPF program on the node's
    # NIC (tc ingress, cil_from_netdev), no netfilter NAT; the reverse NAT of the answer by the one
    # on its way out (tc egress, cil_to_netdev)
    nic = walk.device(node, walk.node.ingress)
    back = Rule(match=Match(src=ip_network(f"{pod.ip}/32"), proto=proto, src_ports=PortRange.single(walk.app_port)),
                action=Snat(walk.node.address.ip, PortRange.single(walk.port)), comment=f"cilium: reverse NAT svc/{name}")
    hooks = [dataclasses.replace(h, rules=(*h.rules, *rules)) if h.kind is HookKind.TC_INGRESS else h for h in nic.hooks]
    hooks.append(DeviceHook(kind=HookKind.TC_EGRESS, program="cil_to_netdev", rules=(back,)))
    walk.b.devices[walk.b.devices.index(nic)] = dataclasses.replace(nic, hooks=tuple(hooks))


def _peer_host(walk: StackWalk, endpoint: str | None):
    """Another spec host of the cluster: one with endpoints on this pod's network (first by name)."""
    tied = walk.spec.index["endpoints"].get(endpoint) if endpoint else None
    here = walk.layers[0].host
    if tied is None or here is None:
        return None
    network = tied.attachments[0].network
    names = sorted({e.host for e in walk.spec.endpoints if e.host != here
                    and any(a.network == network for a in e.attachments)})
    return walk.spec.host(names[0]) if names else None


def _peer_node(walk: StackWalk, peer, node: str, pod: IPv4Interface, gateway: IPv4Interface) -> None:
    """The cluster's other node: the client reaches the service's NodePort there, kube-proxy
    sends it to this node's pod, and the CNI carries it across in its overlay — the notes'
    "extends the container model using CNI (VXLAN/Geneve encapsulation in the kernel)"."""
    b = walk.b
    overlay = CNIS[walk.k8s.cni].overlay
    name, kind = overlay.device, overlay.kind
    here_tunnel = walk.device(node, name)
    peer_ns = f"peer-{peer.name}"
    underlay = ip_interface(peer.underlay)
    if underlay.network != walk.lan.network:
        raise StackError(f"stack {walk.stack.name}: node {peer.name} ({underlay}) is not on the LAN of "
                         f"{walk.layers[0].host} ({walk.lan.network}); put the cluster's nodes on one LAN")
    plan = b.namespace(peer_ns, NamespaceKind.HOST, origin=f"host/{peer.name}")
    plan.ip_forward = True
    nic = b.device(DeviceKind.NIC, "eth0", peer_ns, addresses=[str(underlay)], mtu=peer.mtu)
    b.attach(nic)
    peer_subnet = ip_network(f"{gateway.network.network_address + 256}/{gateway.network.prefixlen}", strict=False) \
        if gateway.network.prefixlen >= 24 else ip_network("10.244.255.0/24")
    here_address, peer_address = gateway.network.network_address, peer_subnet.network_address
    peer_tunnel = b.device(kind, name, peer_ns, mtu=peer.mtu - 50, addresses=[f"{peer_address}/32"],
                           config=Tunnel(vni=overlay.vni, local=underlay.ip, dst_port=overlay.port, fdb=(
                               FdbEntry(here_tunnel.mac, remote=walk.node.address.ip),)),
                           level="Linux Kernel", technique=f"{walk.k8s.cni} overlay ({kind.value.upper()} Encapsulation)")
    b.devices[b.devices.index(here_tunnel)] = dataclasses.replace(
        here_tunnel, addresses=(ip_interface(f"{here_address}/32"),),
        config=dataclasses.replace(here_tunnel.config, fdb=(FdbEntry(peer_tunnel.mac, remote=underlay.ip),)))
    for ns, subnet, via, mac in ((peer_ns, gateway.network, here_address, here_tunnel.mac),
                                 (node, peer_subnet, peer_address, peer_tunnel.mac)):
        b.namespaces[ns].routes.append(Route(dst=subnet, via=via, dev=name))
        b.namespaces[ns].neighbours.append(Neighbour(via, mac, name))
    proto = Proto(walk.proto)
    plan.nat["prerouting"] = [Rule(
        match=Match(dst=ip_network(f"{underlay.ip}/32"), proto=proto, dst_ports=PortRange.single(walk.port)),
        action=Dnat(targets=(NatTarget(pod.ip, walk.app_port),)), comment=f"kube-proxy: NodePort {walk.port}")]
    plan.nat["postrouting"] = [Rule(match=Match(out_iface=name), action=Masquerade(),
                                    comment="kube-proxy: masquerade NodePort traffic")]
    walk.target = underlay.ip
    b.stage(f"Peer Node ({peer.name})", Mode.KERNEL, "Linux Kernel",
            f"kube-proxy NodePort DNAT + {kind.value.upper()} Encapsulation", peer_ns, f"{peer_ns}/eth0",
            f"{peer_ns}/{name}")
