"""The simulator: walks real packet bytes through a ``NetworkGraph``, device by device.

Contract: ``Simulator(network).send(host, namespace, packet)`` returns the ``Walk`` of that IP
packet sent by an application in the namespace; ``inject`` starts a frame on a device's wire.
Deterministic: the same graph, state and packet give the same events. State that real systems
keep between packets is kept between calls in one ``State`` (``state``) — conntrack, learned FDB
entries, neighbour caches, fragments awaiting reassembly — so a reply sent after a request is
ESTABLISHED; a fresh ``Simulator`` starts empty. docs/trace.md lists the semantics of every device kind.

Layering inside the package: ``engine`` (L2: devices, wires, switches, tunnels, hooks) uses
``stack`` (L3: routing, netfilter, delivery, answers) and the stack hands frames back to it (its
``link``); both change only the one ``State`` they are given and append events to a ``Run``
(``run``). Device handling is a table per device kind: ``RECEIVERS`` (a frame arrives on the
device's wire) and ``TRANSMITTERS`` (the device sends it on), around the hooks of ``DRIVER_HOOKS``,
``INGRESS_HOOKS`` and ``EGRESS_HOOKS``; a new device kind or hook kind is one entry there.
"""

from netvirt.dataplane.sim import packets
from netvirt.dataplane.sim.classify import CompiledClassifier
from netvirt.dataplane.events import Action, Disposition, Event, Walk
from netvirt.dataplane.sim.run import Run
from netvirt.dataplane.sim.netfilter import packet_key
from netvirt.dataplane.sim.packets import ARP_TYPE, ETHERNET, IP_TYPES, IPV4_TYPE, IPV6_TYPE
from netvirt.dataplane.sim.stack import Stack, pick_target
from netvirt.dataplane.sim.state import State
from netvirt.dataplane.sim.topology import Place, Topology
from netvirt.graph import (
    SWITCH_KINDS,
    TUNNEL_KINDS,
    Accept,
    CtState,
    DeviceKind,
    Dnat,
    HookKind,
    KINDS,
    HypervisorSwitch,
    NetworkGraph,
    Snat,
    SwitchMode,
    Tunnel,
)
from netvirt.wire import builders, geneve, ipv4, ipv6, nvgre, udp, vxlan
from netvirt.wire.addresses import ip_to_text, mac_to_text
from netvirt.wire.builders import DYNAMIC_PORTS_START
from netvirt.wire.fields import headers

MAX_HOPS = 512
DRIVER_KINDS = (DeviceKind.NIC, DeviceKind.SRIOV_VF)
DRIVER_LABELS = ("Kernel", "Driver", "NIC Driver (IRQ/NAPI poll, socket buffer allocation)")
BYPASS_KINDS = (DeviceKind.SRIOV_VF, DeviceKind.NIC_ESWITCH, DeviceKind.DPDK_PMD, DeviceKind.AF_XDP_SOCKET)
ZERO = b"\0" * 6


class Simulator:
    """See the module docstring. ``compiled``: tuple-space classifiers (else linear first match)."""

    def __init__(self, network: NetworkGraph, *, compiled: bool = True) -> None:
        self.topology = Topology(network, compiled)
        self._hook_classifiers: dict[tuple[Place, HookKind], object] = {}
        self.state = State()
        self.stack = Stack(self.topology, self.state, self)

    def reset(self, *, connections_only: bool = False) -> None:
        """Forget all state (``State.reset``): conntrack, fragments and — unless
        ``connections_only`` — learned FDB entries and neighbour caches."""
        self.state.reset(connections_only=connections_only)

    # --- entry points ----------------------------------------------------------------------------

    def send(self, host: str, namespace: str, packet: bytes, *, record: bool = True) -> Walk:
        """Walk an IP packet an application in ``host``/``namespace`` sends."""
        if (host, namespace) not in self.topology.spaces:
            raise KeyError(f"no namespace {host}:{namespace} in the graph")
        run = Run(record)
        frame = bytearray(ZERO + ZERO + (IPV4_TYPE if packet[0] >> 4 == 4 else IPV6_TYPE) + packet)
        space = self.topology.spaces[(host, namespace)]
        self.stack.event(run, Action.SEND, space, frame, "the application sends", labels=("User", "App", "Socket API (send)"))
        self.stack.local_out(run, space, frame)
        return self._walk(run)

    def announce(self) -> None:
        """Every addressed device sends a gratuitous ARP (IPv4) broadcast, silently, as Linux does
        when an address comes up: afterwards every switch has learned every MAC — the warm state
        of a network that has been running."""
        for place, dev in self.topology.devices.items():
            mac = self.topology.macs.get(place)
            address = next((a.ip.packed for a in dev.addresses if a.version == 4), None)
            if mac is None or address is None or dev.kind in SWITCH_KINDS:
                continue
            self.transmit(Run(record=False), place, bytearray(builders.arp_request(mac, address, address)))

    def answer(self, walk: Walk, *, record: bool = True) -> Walk | None:
        """Walk the destination's answer to a delivered packet (SYN|ACK, UDP reply, echo reply)
        from where it was delivered, in the state the request left (so conntrack sees a reply);
        None when the request was not delivered to a kernel socket."""
        delivered = next((e for e in walk.events if e.action is Action.DELIVER and not e.reply and not e.bypass), None)
        if walk.disposition is not Disposition.DELIVERED or delivered is None:
            return None
        found = headers(delivered.packet)
        packet = packets.response(delivered.packet[ETHERNET:], found) if found is not None else None
        if packet is None:
            return None
        return self.send(delivered.host, delivered.namespace, packet, record=record)

    def inject(self, host: str, namespace: str, device: str, frame: bytes, *, record: bool = True) -> Walk:
        """Walk a frame arriving on the wire of device ``namespace/device``."""
        place = (host, namespace, device)
        if place not in self.topology.devices:
            raise KeyError(f"no device {host}:{namespace}/{device} in the graph")
        run = Run(record)
        if not self.receive(run, place, bytearray(frame), None):
            self.drop(run, place, bytearray(frame), "the frame is addressed to no device here (MAC filter)", "mac")
        return self._walk(run)

    def _walk(self, run: Run) -> Walk:
        if run.result is None and run.events:
            last = run.events[-1]
            place = (last.host, last.namespace, last.device)
            reason = "no device took the frame: it is addressed to another MAC (MAC filter)"
            if last.device is not None:
                self.drop(run, place, last.packet, reason, "mac")
            else:
                run.finish(Disposition.DROPPED, reason)
        disposition, reason = run.result or (Disposition.DROPPED, "the packet went nowhere")
        return Walk(disposition, reason, tuple(run.events), run.where)

    # --- events ----------------------------------------------------------------------------------

    def event(self, run: Run, action: Action, place: Place, frame, message: str = "", *, labels=None,
              bypass: bool = False, rule: str = "", cause: str = "") -> None:
        if not run.record:
            return
        dev = self.topology.devices[place]
        mode, level, technique = labels or (dev.mode.value, dev.level, dev.technique)
        run.events.append(Event(action, place[0], place[1], place[2], mode, level, technique, bytes(frame),
                                message, dev.mtu, run.overhead, run.in_reply, rule,
                                bypass or dev.kind in BYPASS_KINDS, cause))

    def drop(self, run: Run, place: Place, frame, reason: str, cause: str,
             disposition: Disposition = Disposition.DROPPED) -> bool:
        self.event(run, Action.DROP, place, frame, reason, cause=cause)
        run.finish(disposition, reason)
        return True

    # --- receive: a frame arrives from a wire ----------------------------------------------------

    def receive(self, run: Run, place: Place, frame: bytearray, source: Place | None) -> bool:
        """Frame arrives at ``place`` from its wire (sent by ``source``). False: nobody took it.
        After the hop budget and the link state, the device kind's receiver (``RECEIVERS``) decides."""
        run.hops += 1
        if run.hops > MAX_HOPS:
            return self.drop(run, place, frame, f"more than {MAX_HOPS} hops: a forwarding loop", "loop")
        dev = self.topology.devices[place]
        if not dev.up:
            return self.drop(run, place, frame, f"device {dev.name} is down", "down")
        return RECEIVERS[dev.kind](self, run, place, dev, frame, source)

    def _receive_switch(self, run: Run, place: Place, dev, frame: bytearray, source: Place | None) -> bool:
        """A switch's own link feeds the switch (a NAT-mode hypervisor switch is a router port)."""
        if self._routed_switch(dev):
            return self._receive_port(run, place, dev, frame, source)
        return self.switch(run, place, place, frame)

    def _receive_socket(self, run: Run, place: Place, dev, frame: bytearray, source: Place | None) -> bool:
        return self.drop(run, place, frame, "a socket has no wire", "not-connected")

    def _receive_port(self, run: Run, place: Place, dev, frame: bytearray, source: Place | None) -> bool:
        """Any other device: the devices bound to it see the frame first (eswitch, DPDK PMD), an
        uplink also feeds its switch, the driver takes it, the ingress hooks run, then a macvlan
        child, the device's switch or its namespace's stack takes it."""
        topology = self.topology
        kind = dev.kind
        mine = self._accepts(place, frame)
        bound = topology.bound.get(place, ())
        eswitch = topology.binding.get((place, DeviceKind.NIC_ESWITCH)) if bound else None
        self.event(run, Action.RECEIVE, place, frame, "signal received" if kind is DeviceKind.NIC else "frame received")
        if eswitch is not None and self._eswitch(run, (place[0], place[1], eswitch.name), frame):
            return True
        pmd = topology.binding.get((place, DeviceKind.DPDK_PMD)) if bound else None
        if pmd is not None:
            if frame[12:14] == ARP_TYPE:  # the DPDK application answers ARP for its NIC itself
                return self.stack.stack_in(run, place, frame)
            return self._user_space(run, (place[0], place[1], pmd.name), frame, Action.BYPASS,
                                    "poll-mode driver takes the frame from the NIC ring (zero copy, no kernel)")
        peer = topology.wire.get(place)
        if peer is not None and place in topology.segment_of:
            # an uplink: a NIC on the outside network that also feeds a switch (bridged networking)
            if source == peer:
                return self.transmit(run, place, frame)
            if not mine or frame[0] & 1:
                taken = self.receive(run, peer, frame, place)
                if not mine:
                    return taken
        elif not mine and dev.master is None and not bound:
            return False
        if dev.hooks or bound:  # XDP runs in the driver's receive path, before the socket buffer exists
            for hook in DRIVER_HOOKS:
                verdict = self._hook(run, place, hook, frame)
                if verdict is not None:
                    return verdict
        if kind in DRIVER_KINDS and run.record:
            self.event(run, Action.DRIVER, place, frame, "driver takes the frame",
                       labels=(DRIVER_LABELS[0], DRIVER_LABELS[1],
                               "SR-IOV VF Driver (guest owns the VF, no hypervisor)" if kind is DeviceKind.SRIOV_VF
                               else DRIVER_LABELS[2]))
        if dev.hooks:
            for hook in INGRESS_HOOKS:
                verdict = self._hook(run, place, hook, frame)
                if verdict is not None:
                    return verdict
        if frame[0] & 1 and any(child.kind is DeviceKind.MACVLAN and child.namespace != place[1] for child in bound):
            taken = False  # a broadcast reaches every macvlan child too (bridge mode); copies nobody takes are not shown
            for child in bound:
                if child.kind is DeviceKind.MACVLAN and child.namespace != place[1]:
                    mark = len(run.events)
                    if self.stack.stack_in(run, (place[0], child.namespace, child.name), bytearray(frame)):
                        taken = True
                    else:
                        del run.events[mark:]
            if taken:
                return True
        for child in bound:
            if child.kind is DeviceKind.MACVLAN and child.mac is not None and bytes(frame[0:6]) == topology.macs[
                    (place[0], child.namespace, child.name)]:
                child_place = (place[0], child.namespace, child.name)
                self.event(run, Action.RECEIVE, child_place, frame, f"macvlan: {mac_to_text(bytes(frame[0:6]))} is "
                           f"this sub-interface of {place[1]}/{place[2]}")
                return self.stack.stack_in(run, child_place, frame)
        if dev.master is not None:
            return self.switch(run, (place[0], place[1], dev.master), place, frame)
        if not mine:
            return False
        return self.stack.stack_in(run, place, frame)

    def _eswitch(self, run: Run, eswitch: Place, frame: bytearray) -> bool:
        """The NIC's embedded switch sees the frame first: a VF's MAC goes to that VF (True);
        a broadcast goes to every VF and on to the PF; anything else goes on to the PF (False)."""
        if frame[0] & 1:
            for port in self.ports(eswitch):
                mark = len(run.events)
                if not self.port_out(run, eswitch, port, bytearray(frame)):
                    del run.events[mark:]
            return False
        port = self._lookup(eswitch, bytes(frame[0:6]))
        if port is None:
            return False
        self.event(run, Action.FORWARD, eswitch, frame, f"embedded switch: {mac_to_text(bytes(frame[0:6]))} is "
                   f"virtual function {port[1]}/{port[2]}; the host kernel never sees this frame")
        return self.port_out(run, eswitch, port, frame)

    def _routed_switch(self, dev) -> bool:
        """A hypervisor switch in NAT mode is the NAT engine's router interface, not a switch."""
        return isinstance(dev.config, HypervisorSwitch) and dev.config.mode is SwitchMode.NAT

    def _accepts(self, place: Place, frame) -> bool:
        mac = self.topology.macs.get(place)
        return mac is None or frame[0] & 1 == 1 or frame[0:6] == mac

    def _user_space(self, run: Run, place: Place, frame, action: Action, message: str) -> bool:
        """Hand a frame to a user-space receiver (DPDK PMD, AF_XDP socket) and its application."""
        self.event(run, action, place, frame, message, bypass=True)
        found = headers(frame)
        for dev in self.topology.members[place[:2]]:
            if dev.kind is DeviceKind.SOCKET and dev.parent == place[2] and found is not None:
                socket_place = (place[0], dev.namespace, dev.name)
                if self.stack.socket_matches(dev, found):
                    self.event(run, Action.DELIVER, socket_place, frame,
                               f"{dev.config.app or 'the application'} reads the frame in user space", bypass=True)
                    run.finish(Disposition.DELIVERED, f"delivered to {dev.config.app or dev.name} in user space "
                               f"({dev.config.proto}/{dev.config.port}) by kernel bypass", place[:2])
                    return True
        return self.drop(run, place, frame, "no user-space application handles this packet "
                         "(kernel bypass: the kernel cannot answer it either)", "no-listener")

    # --- hooks: XDP and tc programs --------------------------------------------------------------

    def _hook(self, run: Run, place: Place, kind: HookKind, frame) -> bool | None:
        """Run the ``kind`` program of the device: None = pass on, True/False = handled."""
        dev = self.topology.devices[place]
        hook = self.topology.hooks.get((place, kind))
        xsk = self.topology.binding.get((place, DeviceKind.AF_XDP_SOCKET))
        if kind is HookKind.XDP and xsk is not None and hook is None and frame[12:14] in IP_TYPES:
            return self._user_space(run, (place[0], place[1], xsk.name), frame, Action.REDIRECT,
                                    "XDP redirects the frame to the AF_XDP socket (user space, no sk_buff)")
        if hook is None:
            return None
        classifier = self._hook_classifiers.get((place, kind))
        if classifier is None:
            classifier = self._hook_classifiers[(place, kind)] = CompiledClassifier(hook.rules, hook.policy)
        found = headers(frame)
        labels = ("Kernel", "Driver", f"XDP eBPF program {hook.program} (before sk_buff)") if kind is HookKind.XDP \
            else ("Kernel", dev.level, f"tc eBPF program {hook.program}")
        if found is None:
            index, action = None, Accept()
        else:
            index, action = classifier.classify(packet_key(found, CtState.UNTRACKED, place[2], None))
        name = f"{kind.value} {hook.program} " + (f"rule {index}" if index is not None else "policy")
        if index is not None and hook.rules[index].comment:
            name += f" ({hook.rules[index].comment})"
        if isinstance(action, (Dnat, Snat)) and found is not None:
            return self._hook_nat(run, place, frame, found, action, name, labels)
        if isinstance(action, Accept):
            if kind is HookKind.XDP and xsk is not None and index is not None:
                return self._user_space(run, (place[0], place[1], xsk.name), frame, Action.REDIRECT,
                                        f"{name}: XDP_REDIRECT to the AF_XDP socket (user space)")
            self.event(run, Action.FILTER_ALLOW, place, frame, f"{name}: pass", labels=labels, rule=name)
            return None
        self.event(run, Action.FILTER_DROP, place, frame, f"{name}: drop", labels=labels, rule=name)
        run.finish(Disposition.DROPPED, f"dropped by {name} on {place[1]}/{place[2]}")
        return True

    def _hook_nat(self, run: Run, place: Place, frame, found, action, name: str, labels) -> None:
        """A program's NAT (an eBPF service load balancer, as Cilium's kube-proxy replacement):
        the rewrite in the program, no netfilter hop; it keeps no conntrack of its own here, so
        its reverse translation is a rule of the egress program (stateless)."""
        if isinstance(action, Dnat):
            target = pick_target(action, found)
            address = target.address.packed
            port = target.port if target.port is not None and found.proto in (ipv4.TCP, ipv4.UDP) else None
            old = (found.dst, found.dst_port)
            packets.rewrite(frame, found, dst=address, dst_port=port)
            what, before, after = "DNAT", old, (address, port if port is not None else found.dst_port)
        else:
            port = action.ports.first if action.ports is not None and found.proto in (ipv4.TCP, ipv4.UDP) else None
            old = (found.src, found.src_port)
            packets.rewrite(frame, found, src=action.address.packed, src_port=port)
            what, before, after = "reverse NAT", old, (action.address.packed, port if port is not None else found.src_port)
        text = f"{name}: {what} {ip_to_text(before[0])}:{before[1]} -> {ip_to_text(after[0])}:{after[1]} in eBPF"
        self.event(run, Action.NAT, place, frame, text, labels=labels, rule=name)
        return None

    # --- switches --------------------------------------------------------------------------------

    def switch(self, run: Run, switch: Place, ingress: Place | None, frame: bytearray) -> bool:
        """Forward a frame that entered ``switch`` from port ``ingress`` (None: its own stack)."""
        topology = self.topology
        dev = topology.devices[switch]
        dst = bytes(frame[0:6])
        if ingress is not None and ingress != switch or (ingress == switch and switch in topology.wire):
            learning = getattr(dev.config, "learning", True)
            if learning and not frame[6] & 1:
                self.state.learned.setdefault(switch, {})[bytes(frame[6:12])] = ingress
        own = topology.macs.get(switch)
        if ingress is not None and own is not None and dst == own and dev.addresses:
            self.event(run, Action.FORWARD, switch, frame, "addressed to the switch itself: up its IP stack")
            return self.stack.stack_in(run, switch, frame)
        if dst[0] & 1:
            return self._flood(run, switch, ingress, frame, "broadcast")
        port = self._lookup(switch, dst)
        if port is None:
            return self._flood(run, switch, ingress, frame, "unknown destination")
        if port == ingress:
            return self.drop(run, switch, frame, f"{mac_to_text(dst)} is behind the port the frame came in on "
                             "(hairpin): the switch does not send it back", "hairpin")
        if run.record:
            self.event(run, Action.FORWARD, switch, frame, f"{mac_to_text(dst)} is on port {_port_name(switch, port)}")
        return self.port_out(run, switch, port, frame)

    def _lookup(self, switch: Place, mac: bytes) -> Place | None:
        """The port behind ``mac``: a static FDB entry first (netvirt's are sticky, as the kernel's
        ``bridge fdb add ... sticky``: learning never moves them — an anycast gateway MAC heard
        through a tunnel from a remote router copy stays on the local router leg), then what the
        switch learned, then (hypervisor switches, NICs) the MAC of a port."""
        topology = self.topology
        dev = topology.devices[switch]
        for entry in getattr(dev.config, "fdb", ()):
            if entry.device is not None and bytes.fromhex(entry.mac.replace(":", "")) == mac:
                return (switch[0], switch[1], entry.device)
        learned = self.state.learned.get(switch)
        if learned and mac in learned:
            return learned[mac]
        if dev.kind is not DeviceKind.BRIDGE:  # hypervisors and NICs know the MACs of their ports
            for port in self.ports(switch):
                if topology.port_mac(port) == mac:
                    return port
        return None

    def ports(self, switch: Place) -> list[Place]:
        ports = list(self.topology.ports.get(switch, ()))
        if switch in self.topology.wire:
            ports.append(switch)  # the switch's own link is a port too
        return ports

    def _flood(self, run: Run, switch: Place, ingress: Place | None, frame: bytearray, why: str) -> bool:
        ports = [port for port in self.ports(switch) if port != ingress]
        if ingress is not None and switch != ingress and self.topology.devices[switch].addresses:
            ports.append(None)  # the switch's own IP stack gets broadcasts too
        self.event(run, Action.FLOOD, switch, frame, f"{why}: out of {len(ports)} port(s)")
        taken = False
        for port in ports:
            mark = len(run.events)
            if port is None:
                took = self.stack.stack_in(run, switch, bytearray(frame))
            else:
                took = self.port_out(run, switch, port, bytearray(frame))
            if not took:
                del run.events[mark:]
            taken = taken or took
        return taken

    def port_out(self, run: Run, switch: Place, port: Place, frame: bytearray) -> bool:
        """Send a frame out of a switch port."""
        topology = self.topology
        dev = topology.devices[port]
        length = len(frame) - ETHERNET  # simulated frames carry no padding: this is the IP length
        if length > dev.mtu and port != switch and frame[12:14] in IP_TYPES:
            return self.drop(run, port, frame, f"frame of {length} IP bytes is larger than the MTU "
                             f"{dev.mtu} of port {port[2]}: the switch drops it silently", "mtu")
        if port == switch:
            return self.receive(run, topology.wire[switch], frame, switch)
        if dev.kind in TUNNEL_KINDS:
            return self.encap(run, port, frame)
        if port in topology.wire or port in topology.segment_of:
            return self.transmit(run, port, frame)
        self.event(run, Action.RECEIVE, port, frame, "port of the switch with its own IP stack")
        if not self._accepts(port, frame):
            return False
        return self.stack.stack_in(run, port, frame)

    # --- transmit: a frame leaves a device -------------------------------------------------------

    def transmit(self, run: Run, place: Place, frame: bytearray) -> bool:
        """The device at ``place`` puts ``frame`` on its wire: after the link state and the egress
        hooks, the device kind's transmitter (``TRANSMITTERS``) sends it on."""
        dev = self.topology.devices[place]
        if not dev.up:
            return self.drop(run, place, frame, f"device {dev.name} is down", "down")
        if dev.hooks:
            for hook in EGRESS_HOOKS:
                verdict = self._hook(run, place, hook, frame)
                if verdict is not None:
                    return verdict
        return TRANSMITTERS[dev.kind](self, run, place, dev, frame)

    def _transmit_tunnel(self, run: Run, place: Place, dev, frame: bytearray) -> bool:
        return self.encap(run, place, frame)

    def _transmit_switch(self, run: Run, place: Place, dev, frame: bytearray) -> bool:
        """A switch sends a frame from its own stack (a NAT-mode hypervisor switch is a router port)."""
        if self._routed_switch(dev):
            return self._transmit_port(run, place, dev, frame)
        return self.switch(run, place, None, frame)

    def _transmit_port(self, run: Run, place: Place, dev, frame: bytearray) -> bool:
        """Any other device: into its switch, onto its network segment, or to its wire's far end."""
        topology = self.topology
        if dev.master is not None and place not in topology.wire and place not in topology.segment_of:
            self.event(run, Action.TRANSMIT, place, frame, f"into switch {dev.master}")
            return self.switch(run, (place[0], place[1], dev.master), place, frame)
        peer = topology.wire.get(place)
        segment = topology.segment_of.get(place)
        if segment is not None:
            labels = (dev.mode.value, dev.level, "Physical Signal Transmission") \
                if dev.technique == KINDS[DeviceKind.NIC].technique else None
            if run.record:
                self.event(run, Action.TRANSMIT, place, frame, f"onto network {segment}", labels=labels)
            return self._segment(run, place, segment, frame)
        if peer is not None:
            if run.record:
                self.event(run, Action.TRANSMIT, place, frame, f"to {peer[1]}/{peer[2]}")
            return self.receive(run, peer, frame, place)
        return self.drop(run, place, frame, f"device {dev.name} is not connected to anything", "not-connected")

    def _transmit_macvlan(self, run: Run, place: Place, dev, frame: bytearray) -> bool:
        """A macvlan sends out of its lower device (wired ones: as any port)."""
        if dev.parent is None or place in self.topology.wire:
            return self._transmit_port(run, place, dev, frame)
        lower = (place[0], self.topology.lower_namespace(dev), dev.parent)
        if run.record:
            self.event(run, Action.TRANSMIT, place, frame, f"out of its lower device {lower[1]}/{lower[2]}")
        return self.transmit(run, lower, frame)

    def _segment(self, run: Run, source: Place, name: str, frame: bytearray) -> bool:
        topology = self.topology
        mtu = topology.segment_mtu[name]
        if len(frame) - ETHERNET > mtu:
            return self.drop(run, source, frame, f"{len(frame) - ETHERNET}-byte packet exceeds the MTU {mtu} of "
                             f"network {name}", "mtu")
        others = [port for port in topology.segment_ports[name] if port != source]
        dst = bytes(frame[0:6])
        exact = [port for port in others if topology.macs.get(port) == dst]
        size = len(frame) - ETHERNET
        if exact and size > topology.devices[exact[0]].mtu:
            port = exact[0]
            return self.drop(run, source, frame, f"{size}-byte packet exceeds the MTU {topology.devices[port].mtu} of "
                             f"{port[0]}:{port[1]}/{port[2]} on network {name}: the switch in front of it drops the "
                             "frame", "mtu")
        taken = False
        for port in exact or [port for port in others if size <= topology.devices[port].mtu]:
            mark = len(run.events)
            took = self.receive(run, port, bytearray(frame), source)
            if not took:
                del run.events[mark:]
            taken = taken or took
        return taken

    # --- tunnels ---------------------------------------------------------------------------------

    def encap(self, run: Run, place: Place, frame: bytearray) -> bool:
        """Wrap ``frame`` for each remote the tunnel's FDB names and send the outer packets."""
        dev = self.topology.devices[place]
        config: Tunnel = dev.config  # type: ignore[assignment]
        space = self.topology.spaces[(place[0], place[1])]
        remotes = self._remotes(place, bytes(frame[0:6]))
        if not remotes:
            return self.drop(run, place, frame, f"{dev.kind.value} vni {config.vni} knows no remote endpoint for "
                             f"{mac_to_text(bytes(frame[0:6]))} (no FDB entry)", "no-fdb")
        taken = False
        for remote in remotes:
            local = self.topology.tunnels[place].local or self.stack.source_for(space, remote)
            if local is None:
                return self.drop(run, place, frame, f"no local underlay address to reach {remote.hex()}", "no-route")
            outer = self._outer(dev.kind, config, self.topology.tunnels[place].options, bytes(frame), local, remote)
            mark, before = len(run.events), run.overhead
            run.overhead += len(outer) - len(frame) + packets.ETHERNET
            out = bytearray(ZERO + ZERO + (IPV4_TYPE if len(local) == 4 else IPV6_TYPE) + outer)
            if run.record:
                self.event(run, Action.ENCAP, place, out, f"{dev.kind.value} vni {config.vni} to {_ip_text(remote)} "
                           f"(+{run.overhead - before} bytes of overhead)")
            took = self.stack.local_out(run, space, out)
            run.overhead = before
            if not took and len(remotes) > 1:
                del run.events[mark:]
            taken = taken or took
        return taken

    def _remotes(self, place: Place, mac: bytes) -> list[bytes]:
        learned = self.state.tunnel_learned.get(place)
        if learned and mac in learned:
            return [learned[mac]]
        tunnel = self.topology.tunnels[place]
        exact = tunnel.fdb.get(mac)
        if exact:
            return exact
        if tunnel.remote is not None:
            return [tunnel.remote]
        return tunnel.defaults

    def _outer(self, kind: DeviceKind, config: Tunnel, options: tuple[geneve.Option, ...], inner: bytes,
               local: bytes, remote: bytes) -> bytes:
        """Outer IP + UDP + VXLAN/Geneve with ``options`` (or GRE/NVGRE) around ``inner``; see
        ``wire.encapsulate``."""
        entropy = packets.entropy(inner)
        if kind is DeviceKind.NVGRE:
            body = nvgre.Repr(config.vni, entropy & 0xFF).emit(inner)
            protocol = ipv4.GRE
        else:
            header = vxlan.Repr(config.vni) if kind is DeviceKind.VXLAN else geneve.Repr(config.vni, options=options)
            span = config.src_ports.last - config.src_ports.first + 1
            src_port = config.src_ports.first + (entropy - DYNAMIC_PORTS_START) % span
            zero = not config.udp_checksum and len(local) == 4
            body = udp.Repr(src_port, config.dst_port).emit(header.emit(inner), src=local, dst=remote,
                                                              zero_checksum=zero)
            protocol = ipv4.UDP
        if len(local) == 4:
            return ipv4.Repr(local, remote, protocol, config.ttl).emit(body)
        return ipv6.Repr(local, remote, protocol, hop_limit=config.ttl).emit(body)

    def decap(self, run: Run, space, frame: bytearray, found) -> bool | None:
        """Deliver a local UDP/GRE packet to the tunnel endpoint it is for; None if none is."""
        l4 = found.l4
        data = bytes(frame[l4:ETHERNET + found.length])
        for dev in space.tunnels:
            config: Tunnel = dev.config  # type: ignore[assignment]
            local = self.topology.tunnels[(space.host, space.namespace.name, dev.name)].local
            if local is not None and local != found.dst:
                continue
            if found.proto == ipv4.UDP and dev.kind in (DeviceKind.VXLAN, DeviceKind.GENEVE):
                if found.dst_port != config.dst_port or len(data) < udp.HEADER_LENGTH + vxlan.HEADER_LENGTH:
                    continue
                codec = vxlan.Repr if dev.kind is DeviceKind.VXLAN else geneve.Repr
                header, payload = codec.decode(data[udp.HEADER_LENGTH:])
            elif found.proto == ipv4.GRE and dev.kind is DeviceKind.NVGRE and data[:4] == nvgre.FIRST_WORD:
                header, payload = nvgre.Repr.decode(data)
            else:
                continue
            vni = header.vsid if dev.kind is DeviceKind.NVGRE else header.vni
            if vni != config.vni:
                continue
            place = (space.host, space.namespace.name, dev.name)
            inner = bytearray(payload)
            run.overhead = max(0, run.overhead - (len(data) - len(inner) + (found.l4 - found.l3)) - packets.ETHERNET)
            if run.record:
                technique = dev.technique.replace("Encapsulation", "Decapsulation")
                self.event(run, Action.DECAP, place, inner, f"{dev.kind.value} vni {config.vni} from "
                           f"{_ip_text(found.src)}", labels=(dev.mode.value, dev.level, technique))
            if config.learning:
                self.state.tunnel_learned.setdefault(place, {})[bytes(inner[6:12])] = found.src
            if dev.master is not None:
                return self.switch(run, (place[0], place[1], dev.master), place, inner)
            if not self._accepts(place, inner):
                return self.drop(run, place, inner, "inner frame is not addressed to the tunnel device", "mac")
            return self.stack.stack_in(run, place, inner)
        return None


DRIVER_HOOKS = (HookKind.XDP,)
"""The programs a received frame meets in the driver, before the socket buffer exists."""
INGRESS_HOOKS = (HookKind.TC_INGRESS,)
"""The programs a received frame meets after the driver (on the socket buffer)."""
EGRESS_HOOKS = (HookKind.TC_EGRESS,)
"""The programs a transmitted frame meets."""
RECEIVERS = ({kind: Simulator._receive_port for kind in DeviceKind}
             | {kind: Simulator._receive_switch for kind in SWITCH_KINDS}
             | {DeviceKind.SOCKET: Simulator._receive_socket})
"""Device kind -> what a frame arriving on its wire does there: ``(simulator, run, place, device,
frame, source) -> taken``. A new kind (a user-mode device, say) adds its receiver here."""
TRANSMITTERS = ({kind: Simulator._transmit_port for kind in DeviceKind}
                | {kind: Simulator._transmit_switch for kind in SWITCH_KINDS}
                | {kind: Simulator._transmit_tunnel for kind in TUNNEL_KINDS}
                | {DeviceKind.MACVLAN: Simulator._transmit_macvlan})
"""Device kind -> how it sends a frame on: ``(simulator, run, place, device, frame) -> taken``."""


def _port_name(switch: Place, port: Place) -> str:
    return "link" if port == switch else port[2] if port[1] == switch[1] else f"{port[1]}/{port[2]}"


def _ip_text(address: bytes) -> str:
    return ip_to_text(address)
