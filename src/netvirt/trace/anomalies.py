"""Anomaly checks: what on a packet's path a network engineer should know, and how to fix it.

Contract: ``check(trace, walk, answer, topology) -> list[Anomaly]`` looks at one trace (its hops,
the simulator walk behind it, the walk of the destination's answer if there was one, and the
graph) and returns every finding once, in path order, each with the step it happens at, an
explanation and a fix. The kinds (docs/trace.md has one example each):

``encap_mtu`` (encapsulation overhead exceeds the path MTU), ``mtu``, ``double_encapsulation``,
``double_nat``, ``hairpin``, ``asymmetric_return``, ``return_dropped``, ``kernel_bypass`` (hops
invisible to tcpdump and netfilter), ``sriov_live_migration``, ``vxlan_checksum_offload``
(VXLAN/Geneve inside a VirtualBox/VMware guest), ``wsl2_nat``, ``wsl2_mirrored``, ``policy_drop``
(naming the rule), ``no_route``, ``unresolved_neighbour``, ``ttl_expired``, ``no_listener``,
``forwarding_disabled``, ``no_fdb``, ``isolated_network``, ``macvlan_in_guest`` (a macvlan on a
Hyper-V or VMware guest's vNIC: MAC spoofing / promiscuous mode).
"""

from netvirt.dataplane.events import Action, Disposition, Walk
from netvirt.dataplane.sim import Topology
from netvirt.graph import TUNNEL_KINDS, DeviceKind, Hypervisor, HypervisorSwitch, NamespaceKind, SwitchMode, \
    Wsl2Gateway, Wsl2Mode
from netvirt.trace.model import Anomaly, Hop, Trace
from netvirt.wire.fields import headers

_TUNNEL_WORDS = {DeviceKind.VXLAN: "VXLAN", DeviceKind.GENEVE: "Geneve", DeviceKind.NVGRE: "NVGRE"}


def check(trace: Trace, walk: Walk, answer: Walk | None, topology: Topology) -> list[Anomaly]:
    """Every anomaly of ``trace`` (see the module docstring)."""
    found: list[Anomaly] = []
    hops = [hop for hop in trace.hops if not hop.reply]
    for rule in (_drops, _mtu, _encapsulation, _nat, _bypass, _environment):
        found.extend(rule(hops, topology))
    found.extend(_return_path(trace, walk, answer, topology))
    seen = set()
    unique = []
    for anomaly in sorted(found, key=lambda a: a.step):
        if (anomaly.kind, anomaly.message) not in seen:
            seen.add((anomaly.kind, anomaly.message))
            unique.append(anomaly)
    return unique


def _place(hop: Hop) -> str:
    return f"{hop.namespace}/{hop.device}" if hop.device else hop.namespace


def _device(topology: Topology, hop: Hop):
    if hop.device is None:
        return None
    host, namespace = hop.namespace.split(":", 1)
    return topology.devices.get((host, namespace, hop.device))


def _drops(hops: list[Hop], topology: Topology):
    for hop in hops:
        if hop.action in (Action.FILTER_DROP, Action.FILTER_REJECT):
            verb = "dropped" if hop.action is Action.FILTER_DROP else "rejected"
            yield Anomaly("policy_drop", hop.step, f"{verb} by {hop.rule} in {hop.namespace}",
                          f"if this traffic should pass, allow it before {hop.rule} (add an allow rule to that "
                          "policy, or change its default); if not, the policy works as written")
        if hop.action is not Action.DROP:
            continue
        cause = hop.cause
        if cause == "no-route":
            yield Anomaly("no_route", hop.step, f"{hop.message}",
                          "add a route to the destination there (a router joining both networks, or a spec "
                          "route), or send to an address the namespace can reach")
        elif cause == "neighbour":
            yield Anomaly("unresolved_neighbour", hop.step, hop.message,
                          "check that the next hop exists, is up and sits on the same L2 network as "
                          f"{hop.device or 'the outgoing device'} (same bridge or VNI); or add a static neighbour")
        elif cause == "ttl":
            yield Anomaly("ttl_expired", hop.step, hop.message,
                          "look for a routing loop (two routers pointing at each other) or raise the sender's TTL")
        elif cause == "no-listener":
            yield Anomaly("no_listener", hop.step, hop.message,
                          "start the application on that port, or fix the port (a service's target_port, "
                          "an endpoint's listen list)")
        elif cause == "forwarding-off":
            host, namespace = hop.namespace.split(":", 1)
            space = topology.spaces[(host, namespace)].namespace
            if space.kind is NamespaceKind.EXTERNAL:
                continue
            yield Anomaly("forwarding_disabled", hop.step, hop.message,
                          f"enable forwarding in {namespace} (net.ipv4.ip_forward=1) or route the packet to "
                          "a router instead")
        elif cause == "no-fdb":
            yield Anomaly("no_fdb", hop.step, hop.message,
                          "the control plane must install an FDB entry for the MAC (or list every remote "
                          "host in the tunnel's flood); check that the destination endpoint exists")


def _mtu(hops: list[Hop], topology: Topology):
    for hop in hops:
        if hop.cause != "mtu" and hop.action is not Action.FRAGMENT:
            continue
        dev = _device(topology, hop)
        if dev is not None and dev.kind in TUNNEL_KINDS:
            yield Anomaly("encap_mtu", hop.step,
                          f"{hop.message}: {dev.name}'s MTU already leaves room for the {_TUNNEL_WORDS[dev.kind]} "
                          "headers, and a bridge drops bigger frames without telling the sender",
                          f"set the MTU of the endpoints on this network to {dev.mtu} or less, or raise the "
                          "underlay MTU (jumbo frames) so the overlay MTU can grow")
        elif hop.overhead:
            yield Anomaly("encap_mtu", hop.step,
                          f"{hop.message}: the encapsulation adds {hop.overhead} bytes, more than the underlay MTU "
                          "leaves room for" + (" (the outer packet is fragmented)" if hop.action is Action.FRAGMENT
                                               else ""),
                          f"lower the overlay MTU to the underlay MTU minus {hop.overhead} on every endpoint, or "
                          "raise the underlay MTU (jumbo frames, 9000)")
        else:
            yield Anomaly("mtu", hop.step, hop.message,
                          "send smaller packets (path MTU discovery needs the ICMP errors to get back), or raise "
                          "the MTU of that link")


def _encapsulation(hops: list[Hop], topology: Topology):
    depth = 0
    for hop in hops:
        if hop.action is Action.ENCAP:
            depth += 1
            if depth == 2:
                yield Anomaly("double_encapsulation", hop.step,
                              f"{hop.message}: the packet is encapsulated inside another tunnel "
                              f"({hop.overhead} bytes of headers in all)",
                              "run the inner overlay without its own tunnel (a routed CNI, host-gw, or the outer "
                              "overlay's network directly), or lower the inner MTU by both overheads")
        elif hop.action is Action.DECAP:
            depth = max(0, depth - 1)


def _nat(hops: list[Hop], topology: Topology):
    dnat = [hop for hop in hops if hop.action is Action.NAT and hop.cause == "dnat"]
    snat = [hop for hop in hops if hop.action is Action.NAT and hop.cause == "snat"]
    for kind, group in (("destination", dnat), ("source", snat)):
        if len({hop.namespace for hop in group}) >= 2:
            places = ", then ".join(f"{hop.namespace} ({hop.rule or hop.message})" for hop in group)
            yield Anomaly("double_nat", group[1].step,
                          f"the {kind} address is translated {len(group)} times: {places}",
                          "each translation hides the real address from the next layer (logs, policies and "
                          "client-IP affinity see the wrong one); use bridged or mirrored networking for the "
                          "outer layer, or expose the app on the host network, so one NAT remains")
    for hop in dnat:
        found = headers(hop.packet)
        if found is not None and found.src == found.dst:
            yield Anomaly("hairpin", hop.step, f"{hop.message}: the service sends the client back to itself",
                          "the bridge port needs hairpin mode (and masquerade for hairpin traffic) for this to "
                          "work; or reach another backend")
    for hop in hops:
        if hop.cause == "hairpin":
            yield Anomaly("hairpin", hop.step, hop.message,
                          "enable hairpin mode on the bridge port (bridge link set dev PORT hairpin on), as "
                          "kubelet does with --hairpin-mode")


def _bypass(hops: list[Hop], topology: Topology):
    bypassing = [hop for hop in hops if hop.bypass]
    if bypassing:
        places = ", ".join(dict.fromkeys(_place(hop) for hop in bypassing))
        yield Anomaly("kernel_bypass", bypassing[0].step,
                      f"kernel bypass at {places}: these hops skip the host kernel, so tcpdump on the host and its "
                      "netfilter rules (firewall, NAT, conntrack) never see these packets",
                      "capture with the bypass's own tools (dpdk-pdump, xdpdump, the NIC's port mirroring) and "
                      "enforce policy where the packets are (the DPDK app, the XDP program, the NIC eswitch)")
    for hop in hops:
        dev = _device(topology, hop)
        if dev is not None and dev.kind is DeviceKind.SRIOV_VF:
            host, namespace = hop.namespace.split(":", 1)
            if topology.spaces[(host, namespace)].namespace.kind is NamespaceKind.VM:
                yield Anomaly("sriov_live_migration", hop.step,
                              f"{_place(hop)} is an SR-IOV virtual function passed through to the VM: the guest "
                              "owns real hardware of this host, so the VM cannot be live-migrated",
                              "use virtio-net (vhost-net or vDPA) for VMs that must migrate, or pair the VF with a "
                              "virtio failover NIC (net_failover) and unplug the VF before migrating")
                break


def _environment(hops: list[Hop], topology: Topology):
    hypervisors = set()
    for hop in hops:
        dev = _device(topology, hop)
        if dev is None:
            continue
        config = dev.config
        if isinstance(config, HypervisorSwitch):
            hypervisors.add(config.hypervisor)
        if isinstance(config, Wsl2Gateway) and config.mode is Wsl2Mode.NAT:
            yield Anomaly("wsl2_nat", hop.step,
                          "WSL2 in NAT mode: the LAN reaches WSL2 only through a port proxy on Windows (assumed "
                          "here), the app sees Windows' internal address as the client, and WSL2's address "
                          "changes at every restart",
                          "set networkingMode=mirrored in %UserProfile%\\.wslconfig (Windows 11 22H2+) and allow the "
                          "port with New-NetFirewallHyperVRule; or re-create `netsh interface portproxy add v4tov4 "
                          "listenport=PORT connectaddress=<WSL IP>` after each restart")
        elif isinstance(config, Wsl2Gateway):
            yield Anomaly("wsl2_mirrored", hop.step,
                          "WSL2 in mirrored mode: Windows and Linux share the host's addresses and ports; a Windows "
                          "process on the same port wins, and the Hyper-V firewall blocks inbound by default",
                          "allow the port with New-NetFirewallHyperVRule and keep Windows services off the app's port")
    yield from _macvlan_in_guest(hops, topology, hypervisors)
    if hops and not any(hop.action is Action.DELIVER for hop in hops):
        for (host, namespace, name), dev in topology.devices.items():
            config = dev.config
            if isinstance(config, HypervisorSwitch) and config.mode in (SwitchMode.INTERNAL, SwitchMode.HOST_ONLY):
                yield Anomaly("isolated_network", hops[-1].step,
                              f"{host}:{namespace}/{name} is a {config.hypervisor.value} {config.mode.value} network: "
                              "no route leads there from outside the host",
                              "use bridged networking, or NAT with a port forward, to reach the guest from outside")
    guests = {}
    for hop in hops:
        host, namespace = hop.namespace.split(":", 1)
        space = topology.spaces[(host, namespace)]
        if space.namespace.kind is NamespaceKind.VM and namespace not in guests:
            guests[namespace] = hop
    risky = hypervisors & {Hypervisor.VIRTUALBOX, Hypervisor.VMWARE}
    for namespace, hop in guests.items():
        host = hop.namespace.split(":", 1)[0]
        for dev in topology.spaces[(host, namespace)].tunnels:
            if dev.kind in (DeviceKind.VXLAN, DeviceKind.GENEVE) and risky:
                product = "VirtualBox" if Hypervisor.VIRTUALBOX in risky else "VMware"
                yield Anomaly("vxlan_checksum_offload", hop.step,
                              f"{_TUNNEL_WORDS[dev.kind]} device {dev.name} runs inside a {product} guest: with TX "
                              f"checksum offload on, {product}'s virtual NIC sends the encapsulated packets with "
                              "bad inner checksums, so traffic to pods on other nodes is dropped while same-node "
                              "traffic works",
                              f"ethtool -K {dev.name} tx-checksum-ip-generic off on every node (flannel does this "
                              "since 0.24 for VXLAN), or use a CNI backend without UDP encapsulation (host-gw)")


_MAC_POLICY = {
    Hypervisor.HYPERV: ("Hyper-V drops frames to and from a MAC address it did not assign to the VM's network "
                        "adapter", "Set-VMNetworkAdapter -VMName <VM> -MacAddressSpoofing On (the VM's Advanced "
                        "Features: Enable MAC address spoofing)"),
    Hypervisor.VMWARE: ("a VMware vSwitch drops frames of a MAC it did not assign to the VM's vNIC (security "
                        "policy: Promiscuous mode, MAC address changes and Forged transmits reject by default)",
                        "set Promiscuous mode, MAC address changes and Forged transmits to Accept on the port group, "
                        "or enable MAC learning on a distributed switch (vSphere 6.7+)"),
}


def _macvlan_in_guest(hops: list[Hop], topology: Topology, hypervisors: set):
    """A macvlan child of a VM guest's vNIC: its own MAC must pass the hypervisor's switch."""
    for hop in hops:
        dev = _device(topology, hop)
        lower = getattr(dev.config, "lower_namespace", None) if dev is not None and dev.kind is DeviceKind.MACVLAN \
            else None
        if lower is None:
            continue
        space = topology.spaces.get((hop.namespace.split(":", 1)[0], lower))
        if space is None or space.namespace.kind is not NamespaceKind.VM:
            continue
        for hypervisor in sorted(hypervisors & set(_MAC_POLICY)):
            why, fix = _MAC_POLICY[hypervisor]
            yield Anomaly("macvlan_in_guest", hop.step, f"{hop.namespace}/{dev.name} is a macvlan on the guest's "
                          f"vNIC {lower}/{dev.parent} with a MAC of its own: {why}; unless that is allowed, the container is unreachable",
                          fix)
        return


def _return_path(trace: Trace, walk: Walk, answer: Walk | None, topology: Topology):
    if answer is None:
        return
    forward = [(e.host, e.namespace) for e in walk.events if e.device is not None and not e.reply]
    backward = [(e.host, e.namespace) for e in answer.events if e.device is not None and not e.reply]
    last = trace.rows[-1].step if trace.rows else 1
    if answer.disposition is not Disposition.DELIVERED:
        yield Anomaly("return_dropped", last, f"the answer from the destination does not get back: {answer.reason}",
                      "make the return path route back the way the request came (a route to the client's network, "
                      "the same NAT box), and let stateful filters see both directions")
        return
    ends = {(e.host, e.namespace) for e in walk.events[:1] + answer.events[:1]}  # both paths join client and server
    only_forward = [place for place in dict.fromkeys(forward) if place not in backward and place not in ends]
    only_backward = [place for place in dict.fromkeys(backward) if place not in forward and place not in ends]
    events = walk.events + answer.events
    stateful = [place for place in only_forward + only_backward if _stateful(topology, place, events)]
    if stateful:
        text = "; ".join(filter(None, [
            "the request crosses " + ", ".join(f"{h}:{n}" for h, n in only_forward) if only_forward else "",
            "the answer crosses " + ", ".join(f"{h}:{n}" for h, n in only_backward) if only_backward else "",
        ]))
        names = ", ".join(f"{h}:{n}" for h, n in stateful)
        yield Anomaly("asymmetric_return", last,
                      f"the answer takes another path than the request: {text}; {names} keeps connection state "
                      "(NAT or a conntrack filter) and sees one direction only",
                      "stateful devices (NAT, conntrack firewalls) on only one path break connections; make both "
                      "directions route through the same hops")


def _stateful(topology: Topology, place: tuple[str, str], events) -> bool:
    """Whether the namespace keeps connection state that matters to this flow: it translated one of
    its packets (NAT: the other direction must be translated back there), or it filtered one with
    rules that match a conntrack state. A stateless router copy on one path only (a distributed
    router's return path, a router whose masquerade is for other traffic) is fine."""
    host, name = place
    here = [e for e in events if e.host == host and e.namespace == name]
    if any(e.action is Action.NAT for e in here):
        return True
    filtered = any(e.action in (Action.FILTER_ALLOW, Action.FILTER_DROP, Action.FILTER_REJECT) for e in here)
    namespace = topology.spaces[place].namespace
    return filtered and any(rule.match.ct_states for chain in namespace.filter for rule in chain.rules)
