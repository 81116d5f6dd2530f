"""The IP stack of a namespace, as Linux runs it: hooks, routing, delivery and answers.

Contract (the order of the kernel, docs/trace.md has the picture): a received packet is tracked
and sees nat then filter at prerouting, is routed, then either goes up (filter then nat at input,
reassembly, a tunnel, a socket or the kernel's own answers) or is forwarded (forwarding must be
on; TTL/hop limit checked and decremented; filter at forward). A local packet is tracked, sees nat
then filter at output and is routed. Both leave through filter then nat at postrouting, the MTU
check (DF set: dropped with ICMP fragmentation needed / packet too big to the sender; else
fragmented), neighbour resolution (ARP, IPv6 ND; unresolved: dropped) and the device.
Answers (TCP RST, ICMP errors) are walked back like any local packet, marked as replies.
"""

import zlib

from netvirt.dataplane.sim import packets
from netvirt.dataplane.events import Action, Disposition, Event
from netvirt.dataplane.sim.run import Run
from netvirt.dataplane.sim.netfilter import Tracked, packet_key, rule_name, track
from netvirt.dataplane.sim.packets import ETHERNET
from netvirt.dataplane.sim.state import State
from netvirt.dataplane.sim.topology import NamespaceIndex, Place, Topology
from netvirt.graph import (
    Accept,
    Affinity,
    CtState,
    Dnat,
    Masquerade,
    NamespaceKind,
    Reject,
    RejectWith,
    RouteType,
    Snat,
    Socket,
)
from netvirt.wire import arp, builders, ethernet, icmpv4, icmpv6
from netvirt.wire.addresses import ip_to_text, mac_to_text
from netvirt.wire.fields import Headers, ethertype_of, headers
from netvirt.wire.ipv4 import GRE, ICMP, ICMPV6, TCP, UDP

TECHNIQUES = {
    Action.ROUTE: "IP Routing (FIB lookup)",
    Action.NAT: "Netfilter NAT (conntrack)",
    Action.FILTER_ALLOW: "Netfilter Filtering (first match)",
    Action.FILTER_DROP: "Netfilter Filtering (first match)",
    Action.FILTER_REJECT: "Netfilter Filtering (first match)",
    Action.DELIVER: "Kernel Network Stack",
    Action.REPLY: "ICMP / TCP Error Reply",
    Action.ARP: "ARP / IPv6 Neighbour Discovery",
    Action.FRAGMENT: "IP Fragmentation",
    Action.REASSEMBLE: "IP Reassembly",
    Action.DROP: "Kernel Network Stack",
    Action.SEND: "Socket API (send)",
}
ISOLATED_KINDS = (NamespaceKind.POD, NamespaceKind.CONTAINER)
_REJECT_KINDS = {RejectWith.PORT_UNREACHABLE: "port", RejectWith.HOST_UNREACHABLE: "host",
                 RejectWith.ADMIN_PROHIBITED: "admin"}


class Stack:
    """The namespaces' IP stacks of one simulator: ``topology`` (read-only), the ``state`` they
    change (conntrack, fragments, neighbour caches) and ``link``, the L2 engine frames leave by
    (``transmit``), tunnels decapsulate in (``decap``) and device events are recorded with."""

    def __init__(self, topology: Topology, state: State, link) -> None:
        self.topology = topology
        self.state = state
        self.link = link

    # --- events ----------------------------------------------------------------------------------

    def event(self, run, action: Action, space: NamespaceIndex, frame, message: str = "", *, labels=None,
              rule: str = "", mtu: int = 0, cause: str = "") -> None:
        if not run.record:
            return
        if labels is None:
            level = "Namespace" if space.namespace.kind in ISOLATED_KINDS else "Network Stack"
            labels = ("Kernel", level, TECHNIQUES[action])
        run.events.append(Event(action, space.host, space.namespace.name, None, labels[0], labels[1], labels[2],
                                bytes(frame), message, mtu, run.overhead, run.in_reply, rule, False, cause))

    def _drop(self, run, space, frame, reason: str, cause: str, disposition: Disposition = Disposition.DROPPED) -> bool:
        self.event(run, Action.DROP, space, frame, reason, cause=cause)
        run.finish(disposition, reason)
        return True

    def _space(self, place: Place) -> NamespaceIndex:
        return self.topology.spaces[(place[0], place[1])]

    # --- receive path ----------------------------------------------------------------------------

    def stack_in(self, run, place: Place, frame: bytearray) -> bool:
        """A frame addressed to device ``place`` goes up its namespace's stack."""
        space = self._space(place)
        ethertype = ethertype_of(frame)
        if ethertype == ethernet.ARP:
            return self._arp_in(run, place, frame)
        found = headers(frame)
        if found is None:
            return self._drop(run, space, frame, f"ethertype {ethertype:#06x} is not handled here", "unsupported")
        if found.proto == ICMPV6 and found.icmp_type in icmpv6.NEIGHBOR_TYPES:
            return self._nd_in(run, place, frame, found)
        if found.dst not in space.addresses and frame[0] & 1 and not space.namespace.ip_forward:
            return False  # a broadcast or multicast this stack does not want
        ct = self._track(space, frame, found)
        in_iface = place[2]
        if not self._nat_dst(run, space, "prerouting", frame, found, ct, in_iface):
            return True
        if not self._filter(run, space, "prerouting", frame, found, ct, in_iface, None):
            return True
        if found.dst in space.addresses:
            return self._local_in(run, space, place, frame, found, ct)
        return self._forward(run, space, place, frame, found, ct)

    def _forward(self, run, space, place: Place, frame, found: Headers, ct: Tracked) -> bool:
        ns = space.namespace
        if not (ns.ip_forward if found.version == 4 else ns.ipv6_forward):
            return self._drop(run, space, frame, f"{ip_to_text(found.dst)} is not an address of {ns.name}, and "
                              f"{ns.name} does not forward IPv{found.version} packets", "forwarding-off")
        route = self.topology.route(space, found.dst)
        if route is None or route.kind is not RouteType.UNICAST:
            return self._unroutable(run, space, place, frame, found, route)
        out_dev = route.dev or self._device_for(space, route.via)
        if found.ttl <= 1:
            self._drop(run, space, frame, f"TTL expired in transit at {ns.name}", "ttl", Disposition.REJECTED)
            return self._answer(run, space, frame, found, "ttl", self._address_on(space, place[2], found.version))
        nexthop = route.via or found.dst
        if run.record:
            self.event(run, Action.ROUTE, space, frame, f"forward to {ip_to_text(found.dst)} via "
                       f"{_nexthop_text(route)} dev {out_dev} (route {route.text})")
        if not self._filter(run, space, "forward", frame, found, ct, place[2], out_dev):
            return True
        packets.decrement_ttl(frame, found)
        return self._post_routing(run, space, frame, found, ct, out_dev, nexthop, place)

    def _local_in(self, run, space, place: Place, frame, found: Headers, ct: Tracked) -> bool:
        if run.record:
            self.event(run, Action.ROUTE, space, frame, f"{ip_to_text(found.dst)} is local: deliver up the stack")
        if not self._filter(run, space, "input", frame, found, ct, place[2], None):
            return True
        if not self._nat_src(run, space, "input", frame, found, ct, None):
            return True
        ct.confirm()
        if found.fragment:
            whole = self._reassemble(run, space, frame, found)
            if whole is None:
                return True
            frame, found = whole
        if found.proto in (UDP, GRE):
            handled = self.link.decap(run, space, frame, found)
            if handled is not None:
                return handled
        if ct.is_reply or ct.state.value == "related":
            self.event(run, Action.DELIVER, space, frame, f"the application that opened this {ct.state.value} "
                       "connection gets the answer", labels=("User", "App", "Socket API (Buffer Read)"))
            run.finish(Disposition.DELIVERED, f"answer delivered to the connecting application in {space.namespace.name}",
                       (space.host, space.namespace.name))
            return True
        if found.proto in (TCP, UDP):
            for socket in space.sockets.get((found.proto, found.dst_port), ()):
                if self.socket_matches(socket, found):
                    config: Socket = socket.config  # type: ignore[assignment]
                    socket_place = (space.host, space.namespace.name, socket.name)
                    self.link.event(run, Action.DELIVER, socket_place, frame,
                                   f"{config.app or 'the application'} listening on {config.proto}/{config.port} reads it")
                    run.finish(Disposition.DELIVERED, f"delivered to {config.app or socket.name} "
                               f"({config.proto}/{config.port}) in {space.namespace.name}", socket_place[:2])
                    return True
            if found.proto == TCP:
                if found.tcp_flags & 0x04:
                    return self._drop(run, space, frame, "a TCP reset for no connection is dropped", "invalid")
                self._drop(run, space, frame, f"nothing listens on tcp/{found.dst_port} in "
                           f"{space.namespace.name}: connection refused (TCP RST)", "no-listener", Disposition.REJECTED)
                return self._answer(run, space, frame, found, "reset", found.dst)
            self._drop(run, space, frame, f"nothing listens on udp/{found.dst_port} in {space.namespace.name}"
                       " (ICMP port unreachable)", "no-listener", Disposition.REJECTED)
            return self._answer(run, space, frame, found, "port", found.dst)
        if found.proto in (ICMP, ICMPV6):
            if found.icmp_type == (icmpv4.ECHO_REQUEST if found.proto == ICMP else icmpv6.ECHO_REQUEST):
                self.event(run, Action.DELIVER, space, frame, "the kernel answers the echo request",
                           labels=("Kernel", "Network Stack", "ICMP Echo (kernel responder)"))
                run.finish(Disposition.DELIVERED, f"echo request answered by {space.namespace.name}",
                            (space.host, space.namespace.name))
                return True
            self.event(run, Action.DELIVER, space, frame, "the kernel passes the ICMP message to the sending socket",
                       labels=("Kernel", "Network Stack", "ICMP (kernel)"))
            run.finish(Disposition.DELIVERED, f"ICMP message delivered to {space.namespace.name}",
                        (space.host, space.namespace.name))
            return True
        return self._drop(run, space, frame, f"no handler for IP protocol {found.proto} in {space.namespace.name}", "no-listener")

    def socket_matches(self, socket, found: Headers) -> bool:
        config: Socket = socket.config
        return (found.proto == (TCP if config.proto == "tcp" else UDP) and found.dst_port == config.port
                and (config.address is None or config.address.packed == found.dst))

    def _reassemble(self, run, space, frame, found: Headers):
        key = (space.host, space.namespace.name, found.src, found.dst, found.proto, found.identification)
        pieces = self.state.reassembly.setdefault(key, [])
        pieces.append(bytes(frame[ETHERNET:ETHERNET + found.length]))
        whole = packets.reassemble(pieces)
        if whole is None:
            self.event(run, Action.REASSEMBLE, space, frame, f"fragment {len(pieces)} held until the rest arrive")
            return None
        del self.state.reassembly[key]
        frame = bytearray(frame[:ETHERNET] + whole)
        self.event(run, Action.REASSEMBLE, space, frame, f"{len(pieces)} fragments reassembled ({len(whole)} bytes)")
        return frame, headers(frame)

    # --- local output ----------------------------------------------------------------------------

    def local_out(self, run, space: NamespaceIndex, frame: bytearray) -> bool:
        """A packet generated in ``space`` (by an app, a tunnel, or an answer) leaves it."""
        found = headers(frame)
        ct = self._track(space, frame, found)
        if not self._nat_dst(run, space, "output", frame, found, ct, None):
            return True
        route = self.topology.route(space, found.dst)
        if found.dst in space.addresses:
            self.event(run, Action.ROUTE, space, frame, f"{ip_to_text(found.dst)} is local (loopback)")
            if not self._filter(run, space, "output", frame, found, ct, None, "lo"):
                return True
            return self._local_in(run, space, (space.host, space.namespace.name, "lo"), frame, found, ct)
        if route is None or route.kind is not RouteType.UNICAST:
            return self._unroutable(run, space, None, frame, found, route)
        out_dev = route.dev or self._device_for(space, route.via)
        if found.src == bytes(len(found.src)):
            source = route.src or self._address_on(space, out_dev, found.version)
            if source is not None:
                packets.rewrite(frame, found, src=source)
        if run.record:
            self.event(run, Action.ROUTE, space, frame, f"to {ip_to_text(found.dst)} via {_nexthop_text(route)} "
                       f"dev {out_dev} (route {route.text})")
        if not self._filter(run, space, "output", frame, found, ct, None, out_dev):
            return True
        return self._post_routing(run, space, frame, found, ct, out_dev, route.via or found.dst, None)

    def _post_routing(self, run, space, frame, found: Headers, ct: Tracked, out_dev: str, nexthop: bytes,
                      came_from: Place | None) -> bool:
        if not self._filter(run, space, "postrouting", frame, found, ct, None, out_dev):
            return True
        if not self._nat_src(run, space, "postrouting", frame, found, ct, out_dev):
            return True
        ct.confirm()
        out_place = (space.host, space.namespace.name, out_dev)
        device = self.topology.devices.get(out_place)
        if device is None:
            return self._drop(run, space, frame, f"route names device {out_dev}, which is not in {space.namespace.name}", "no-route")
        if found.length > device.mtu:
            locally = came_from is None
            if found.df and not (locally and found.version == 6 and not run.in_reply):
                source = self._address_on(space, came_from[2], found.version) if came_from else found.src
                what = "fragmentation needed" if found.version == 4 else "packet too big"
                self._drop(run, space, frame, f"{found.length}-byte packet does not fit the MTU {device.mtu} "
                           f"of {out_dev} and may not be fragmented (DF): {what}",
                           "mtu", Disposition.DROPPED if locally else Disposition.REJECTED)
                if not locally:
                    self._answer(run, space, frame, found, "too-big", source, mtu=device.mtu)
                return True
            pieces = packets.fragments(bytes(frame[ETHERNET:ETHERNET + found.length]), device.mtu)
            self.event(run, Action.FRAGMENT, space, frame, f"{found.length} bytes into {len(pieces)} fragments "
                       f"for the MTU {device.mtu} of {out_dev}", mtu=device.mtu)
            taken = False
            for piece in pieces:
                piece_frame = bytearray(frame[:ETHERNET] + piece)
                taken = self._to_neighbour(run, space, out_place, piece_frame, nexthop, came_from is not None) or taken
            return taken
        return self._to_neighbour(run, space, out_place, frame, nexthop, came_from is not None)

    def _to_neighbour(self, run, space, out_place: Place, frame: bytearray, nexthop: bytes, forwarded: bool) -> bool:
        mac = self.resolve(run, space, out_place, nexthop, frame)
        if mac is None:
            what = "ARP" if len(nexthop) == 4 else "neighbour solicitation"
            if not forwarded:  # the sender's own kernel: the application gets EHOSTUNREACH
                return self._drop(run, space, frame, f"no answer to {what} for {ip_to_text(nexthop)} on "
                                  f"{out_place[2]}: neighbour unresolved (the send fails: host unreachable)",
                                  "neighbour")
            self._drop(run, space, frame, f"no answer to {what} for {ip_to_text(nexthop)} on {out_place[2]}: "
                       "neighbour unresolved (ICMP host unreachable to the sender)", "neighbour", Disposition.REJECTED)
            return self._answer(run, space, frame, headers(frame), "host", self._address_on(space, out_place[2], 4
                                                                                           if len(nexthop) == 4 else 6))
        own = self.topology.macs.get(out_place, builders.ZERO_MAC)
        frame[0:12] = mac + own
        return self.link.transmit(run, out_place, frame)

    def _unroutable(self, run, space, place, frame, found: Headers, route) -> bool:
        if route is None:
            reason = f"no route to {ip_to_text(found.dst)} in {space.namespace.name}"
        else:
            reason = f"route {route.text} in {space.namespace.name} is {route.kind.value}"
        if place is not None:
            self._drop(run, space, frame, reason + " (ICMP unreachable to the sender)", "no-route", Disposition.REJECTED)
            return self._answer(run, space, frame, found, "net", self._address_on(space, place[2], found.version))
        return self._drop(run, space, frame, reason + ": the application's send fails (network unreachable)", "no-route")

    # --- neighbours ------------------------------------------------------------------------------

    def resolve(self, run, space, out_place: Place, nexthop: bytes, frame) -> bytes | None:
        """The MAC of ``nexthop`` on device ``out_place``: static entry, cache, or ARP/ND.

        A resolution broadcasts the request through the graph (silently: it is shown as one ARP
        hop) and notes, for every stack it reaches, the MAC that stack would answer with for each
        of its addresses: later resolutions from the same device are looked up there, as if the
        broadcast were sent again (the graph does not change)."""
        static = space.neighbours.get((out_place[2], nexthop))
        if static is not None:
            return static
        cache = self.state.neighbours.setdefault(out_place, {})
        if nexthop in cache:
            return cache[nexthop]
        version = 4 if len(nexthop) == 4 else 6
        domain = self.state.domains.get((out_place, version))
        if domain is None or run.record:
            own = self.topology.macs.get(out_place, builders.ZERO_MAC)
            source = self._address_on(space, out_place[2], version) or bytes(len(nexthop))
            if version == 4:
                request = builders.arp_request(own, source, nexthop)
            else:
                request = builders.neighbor_solicitation(own, source, nexthop)
        if domain is None:
            silent = Run(record=False)
            silent.hops = run.hops
            silent.heard = domain = {}
            self.link.transmit(silent, out_place, bytearray(request))
            self.state.domains[(out_place, version)] = domain
        mac = domain.get(nexthop, (None, None))[0]
        if mac is not None:
            cache[nexthop] = mac
        if run.record:
            what = "ARP" if version == 4 else "neighbour discovery"
            message = (f"{what}: {ip_to_text(nexthop)} is at {mac_to_text(mac)}" if mac is not None
                       else f"{what}: nobody answers for {ip_to_text(nexthop)}")
            device = self.topology.devices[out_place]
            run.events.append(Event(Action.ARP, space.host, space.namespace.name, out_place[2], "Kernel",
                                    "Network Stack", TECHNIQUES[Action.ARP], request, message, device.mtu,
                                    run.overhead, run.in_reply))
        return mac

    def _hear(self, run, place: Place, version: int) -> None:
        """During a silent broadcast: note what the stack at ``place`` would answer for each of its
        namespace's addresses (Linux answers for any local address, arp_ignore=0)."""
        mac = self.topology.macs.get(place, builders.ZERO_MAC)
        size = 4 if version == 4 else 16
        for address, (device, _) in self._space(place).addresses.items():
            if len(address) == size and device != "lo":
                run.heard.setdefault(address, (mac, place))

    def _arp_in(self, run, place: Place, frame) -> bool:
        space = self._space(place)
        try:
            message = arp.Repr.parse(bytes(frame[ETHERNET:]))
        except Exception:  # noqa: BLE001 - a malformed ARP frame is dropped like the kernel does
            return self._drop(run, space, frame, "malformed ARP packet", "unsupported")
        if message.operation == arp.REQUEST:
            if not any(a.version == 4 for a in self.topology.devices[place].addresses):
                return False  # the device runs no IPv4 (a switch uplink): no answer
            if run.heard is not None:
                self._hear(run, place, 4)
            if message.target_protocol_address not in space.addresses:
                return False
            mac = self.topology.macs.get(place, builders.ZERO_MAC)
            self.state.neighbours.setdefault(place, {})[message.sender_protocol_address] = message.sender_hardware_address
            self.link.transmit(run, place, bytearray(packets.arp_reply(message, mac)))
            return True
        self.state.neighbours.setdefault(place, {})[message.sender_protocol_address] = message.sender_hardware_address
        return True

    def _nd_in(self, run, place: Place, frame, found: Headers) -> bool:
        space = self._space(place)
        message = icmpv6.Repr.parse(bytes(frame[found.l4:ETHERNET + found.length]))
        if found.icmp_type == icmpv6.NEIGHBOR_SOLICITATION:
            if not any(a.version == 6 for a in self.topology.devices[place].addresses):
                return False
            if run.heard is not None:
                self._hear(run, place, 6)
            if message.target_address not in space.addresses:
                return False
            mac = self.topology.macs.get(place, builders.ZERO_MAC)
            if message.link_layer_address:
                self.state.neighbours.setdefault(place, {})[found.src] = message.link_layer_address
            reply = packets.neighbor_advertisement(mac, message.target_address, bytes(frame[6:12]), found.src)
            self.link.transmit(run, place, bytearray(reply))
            return True
        if message.link_layer_address:
            self.state.neighbours.setdefault(place, {})[message.target_address] = message.link_layer_address
        return True

    # --- netfilter -------------------------------------------------------------------------------

    def _track(self, space, frame, found: Headers) -> Tracked:
        key = (space.host, space.namespace.name, space.namespace.conntrack_zone)
        table = self.state.conntrack.setdefault(key, {})
        return track(table, frame, found)

    def _filter(self, run, space, hook: str, frame, found: Headers, ct: Tracked, in_iface, out_iface) -> bool:
        """Run the filter chain at ``hook``: True = the packet goes on."""
        found_chain = space.classifier("filter", hook)
        if found_chain is None:
            return True
        chain, classifier = found_chain
        index, action = classifier.classify(packet_key(found, ct.state, in_iface, out_iface))
        if isinstance(action, Accept) and not run.record:
            return True
        comment = chain.rules[index].comment if index is not None else ""
        name = rule_name("filter", hook, index, comment)
        state = ct.state.value
        if isinstance(action, Accept):
            self.event(run, Action.FILTER_ALLOW, space, frame, f"{name} accepts ({state})", rule=name)
            return True
        if isinstance(action, Reject):
            self.event(run, Action.FILTER_REJECT, space, frame, f"{name} rejects ({state})", rule=name, cause="filter")
            kind = "reset" if action.reply is RejectWith.TCP_RESET and found.proto == TCP else \
                _REJECT_KINDS.get(action.reply, "port")
            self._answer(run, space, frame, found, kind, found.dst if hook in ("input", "output") else
                         self._address_on(space, in_iface, found.version))
            run.finish(Disposition.REJECTED, f"rejected by {name} in {space.namespace.name}")
            return False
        self.event(run, Action.FILTER_DROP, space, frame, f"{name} drops ({state})", rule=name, cause="filter")
        run.finish(Disposition.DROPPED, f"dropped by {name} in {space.namespace.name}")
        return False

    def _nat_dst(self, run, space, hook: str, frame, found: Headers, ct: Tracked, in_iface) -> bool:
        """Destination NAT at prerouting/output: the chain for a NEW flow, the entry otherwise."""
        if ct.new:
            found_chain = space.classifier("nat", hook)
            if found_chain is not None:
                chain, classifier = found_chain
                index, action = classifier.classify(packet_key(found, ct.state, in_iface, None))
                if isinstance(action, Dnat):
                    target = pick_target(action, found)
                    new_dst = target.address.packed
                    new_port = target.port if target.port is not None else found.dst_port
                    old = _endpoint(found.dst, found.dst_port, found.proto)
                    ct.entry.reply = (ct.entry.reply[0], ct.entry.reply[1], new_dst, new_port if found.proto in (TCP, UDP)
                                      else ct.entry.reply[3], ct.entry.reply[4], ct.entry.reply[5])
                    packets.rewrite(frame, found, dst=new_dst, dst_port=new_port if found.proto in (TCP, UDP) else None)
                    name = rule_name("nat", hook, index, chain.rules[index].comment)
                    self.event(run, Action.NAT, space, frame, f"DNAT {old} -> {_endpoint(found.dst, found.dst_port, found.proto)}"
                               f" by {name}", rule=name, cause="dnat")
            return True
        address, port = ct.dst_target()
        if ct.state is CtState.RELATED and not ct.translates_dst():
            return True  # an ICMP error about an untranslated flow keeps its addresses (its sender's own)
        if address != found.dst or (found.proto in (TCP, UDP) and port != found.dst_port):
            old = _endpoint(found.dst, found.dst_port, found.proto)
            packets.rewrite(frame, found, dst=address, dst_port=port if found.proto in (TCP, UDP) else None)
            what = "reverse SNAT" if ct.is_reply else "DNAT"
            self.event(run, Action.NAT, space, frame, f"{what} {old} -> {_endpoint(found.dst, found.dst_port, found.proto)} "
                       f"(conntrack {ct.state.value})", cause="reverse" if ct.is_reply else what.lower())
        return True

    def _nat_src(self, run, space, hook: str, frame, found: Headers, ct: Tracked, out_iface) -> bool:
        """Source NAT at postrouting/input: the chain for a NEW flow, the entry otherwise."""
        if ct.new:
            found_chain = space.classifier("nat", hook)
            if found_chain is not None:
                chain, classifier = found_chain
                index, action = classifier.classify(packet_key(found, ct.state, None, out_iface))
                if isinstance(action, (Snat, Masquerade)):
                    if isinstance(action, Snat):
                        new_src = action.address.packed
                    else:
                        new_src = self._address_on(space, out_iface, found.version)
                        if new_src is None:
                            return self._drop(run, space, frame, f"masquerade: {out_iface} has no IPv{found.version} address", "no-route")
                    port = found.src_port
                    if action.ports is not None and found.proto in (TCP, UDP) and port not in action.ports:
                        port = action.ports.first
                    old = _endpoint(found.src, found.src_port, found.proto)
                    reply = ct.entry.reply
                    ct.entry.reply = (reply[0], reply[1], reply[2], reply[3], new_src,
                                      port if found.proto in (TCP, UDP) else reply[5])
                    packets.rewrite(frame, found, src=new_src, src_port=port if found.proto in (TCP, UDP) else None)
                    name = rule_name("nat", hook, index, chain.rules[index].comment)
                    kind = "SNAT" if isinstance(action, Snat) else "masquerade"
                    self.event(run, Action.NAT, space, frame, f"{kind} {old} -> "
                               f"{_endpoint(found.src, found.src_port, found.proto)} by {name}", rule=name, cause="snat")
            return True
        address, port = ct.src_target()
        if ct.state is CtState.RELATED and not ct.translates_src():
            return True
        if address != found.src or (found.proto in (TCP, UDP) and port != found.src_port):
            old = _endpoint(found.src, found.src_port, found.proto)
            packets.rewrite(frame, found, src=address, src_port=port if found.proto in (TCP, UDP) else None)
            what = "reverse DNAT" if ct.is_reply else "SNAT"
            self.event(run, Action.NAT, space, frame, f"{what} {old} -> {_endpoint(found.src, found.src_port, found.proto)} "
                       f"(conntrack {ct.state.value})", cause="reverse" if ct.is_reply else what.lower())
        return True

    # --- answers ---------------------------------------------------------------------------------

    def _answer(self, run, space, frame, found: Headers | None, kind: str, source: bytes | None, mtu: int = 0) -> bool:
        """Send a TCP RST (``kind`` "reset") or an ICMP error about ``frame`` back to its sender.
        Never about an answer or an ICMP error (RFC 1122 §3.2.2). Returns True (the frame was handled)."""
        if found is None or run.answers <= 0 or run.in_reply or found.is_icmp_error:
            return True
        if kind != "reset" and found.dst not in space.addresses:  # about a forwarded packet: as the kernel's
            source = self.source_for(space, found.src) or source  # icmp_send, the address routing back picks
        source = source or next((a for a in space.addresses if len(a) == len(found.src) and a[0] != 127
                                 and a != bytes(15) + b"\x01"), None)
        if source is None:
            return True
        packet = bytes(frame[ETHERNET:ETHERNET + found.length])
        if kind == "reset":
            answer = packets.tcp_reset(packet, found)
        else:
            answer = packets.icmp_error(packet, found, source, kind, mtu)
        run.answers -= 1
        run.in_reply = True
        reply = bytearray(builders.ZERO_MAC * 2 + frame[12:14] + answer)
        self.event(run, Action.REPLY, space, reply, _answer_text(kind, mtu))
        self.local_out(run, space, reply)
        run.in_reply = False
        return True

    # --- helpers ---------------------------------------------------------------------------------

    def _address_on(self, space, device: str | None, version: int) -> bytes | None:
        size = 4 if version == 4 else 16
        candidates = [a for a, (dev, _) in space.addresses.items() if len(a) == size and dev != "lo"]
        for address in candidates:
            if space.addresses[address][0] == device:
                return address
        return candidates[0] if candidates else None

    def source_for(self, space, remote: bytes) -> bytes | None:
        route = self.topology.route(space, remote)
        if route is None:
            return None
        return route.src or self._address_on(space, route.dev or self._device_for(space, route.via), 4 if len(remote) == 4 else 6)

    def _device_for(self, space, via: bytes | None) -> str | None:
        if via is None:
            return None
        route = self.topology.route(space, via)
        return None if route is None else route.dev


def pick_target(action: Dnat, found: Headers):
    """The DNAT target for this flow: a stable hash of the flow, so every packet of a flow — and
    every run — picks the same backend; with client-IP affinity the rule targets' source hash
    (``Dnat.affinity_target`` of the client address's low bits), exactly as the kernel picks."""
    if action.affinity is Affinity.CLIENT_IP:
        bucket = int.from_bytes(found.src, "big") % action.affinity_buckets
        return action.targets[action.affinity_target(bucket)]
    key = found.src + found.dst + bytes((found.proto,)) + found.src_port.to_bytes(2, "big") + \
        found.dst_port.to_bytes(2, "big")
    return action.targets[zlib.crc32(key) % len(action.targets)]


def _endpoint(address: bytes, port: int, proto: int) -> str:
    text = ip_to_text(address)
    if proto not in (TCP, UDP):
        return text
    return f"[{text}]:{port}" if len(address) == 16 else f"{text}:{port}"


def _nexthop_text(route) -> str:
    return ip_to_text(route.via) if route.via is not None else "direct"


def _answer_text(kind: str, mtu: int) -> str:
    return {
        "reset": "TCP RST back to the sender",
        "port": "ICMP port unreachable back to the sender",
        "host": "ICMP host unreachable back to the sender",
        "net": "ICMP network unreachable back to the sender",
        "admin": "ICMP administratively prohibited back to the sender",
        "ttl": "ICMP time exceeded back to the sender",
        "too-big": f"ICMP fragmentation needed / packet too big (MTU {mtu}) back to the sender",
    }[kind]

