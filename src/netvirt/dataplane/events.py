"""The trace vocabulary every backend speaks: one ``Event`` per thing that happened to a packet,
and the outcome of its ``Walk``.

Contract: ``Action`` and ``Disposition`` are closed, ``CAUSES`` lists the machine-readable drop and
NAT causes; every event names where it happened (host, namespace and device, or no device for the
namespace's IP stack), the labels of that place (mode, system level, technique), and the packet as
it is right after the event — an Ethernet frame, whose addresses are zero while a locally sent
packet has not been routed yet. The simulator predicts walks in these words; a backend that
observes real traffic describes what it saw in the same words, without importing the simulator.
Traces (``netvirt.trace``) are built from events; the JSON names of actions and dispositions are
part of the trace interface (docs/trace.md).
"""

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What happened to the packet at one hop."""

    SEND = "send"
    """An application or the outside world sent the packet from this namespace."""
    RECEIVE = "receive"
    """The device took the frame off its wire (physical reception, a veth or link arrival)."""
    DRIVER = "driver"
    """The kernel driver picked the frame up (IRQ/NAPI poll, socket buffer allocated)."""
    TRANSMIT = "transmit"
    """The device put the frame on its wire."""
    FORWARD = "forward"
    """A switch (bridge, hypervisor switch, NIC eswitch, NDIS filter) sent the frame to one port by MAC."""
    FLOOD = "flood"
    """A switch sent a broadcast or unknown-destination frame out of every other port."""
    ENCAP = "encap"
    """A tunnel endpoint wrapped the frame in outer headers (VXLAN, Geneve, NVGRE)."""
    DECAP = "decap"
    """A tunnel endpoint removed the outer headers and took the inner frame in."""
    ROUTE = "route"
    """The routing table chose the next hop, or local delivery."""
    NAT = "nat"
    """Network address translation rewrote addresses or ports (DNAT, SNAT, masquerade, reverse NAT)."""
    FILTER_ALLOW = "filter_allow"
    """A filter (netfilter chain, XDP or tc program) let the packet pass."""
    FILTER_DROP = "filter_drop"
    """A filter discarded the packet; the message names the rule or the chain policy."""
    FILTER_REJECT = "filter_reject"
    """A filter discarded the packet and answers the sender (TCP RST or ICMP unreachable)."""
    REDIRECT = "redirect"
    """An XDP program redirected the frame to an AF_XDP socket in user space."""
    BYPASS = "bypass"
    """A kernel-bypass path (DPDK poll-mode driver, SR-IOV virtual function) moved the frame: the
    host kernel, its netfilter rules and tcpdump never see it."""
    ARP = "arp"
    """Neighbour resolution (ARP or IPv6 ND) found the next hop's MAC address."""
    FRAGMENT = "fragment"
    """The packet was split into fragments to fit the outgoing MTU."""
    REASSEMBLE = "reassemble"
    """Fragments were put back together (or held until the rest arrive)."""
    DELIVER = "deliver"
    """The packet reached its destination: a listening socket, or the kernel itself (echo, errors)."""
    REPLY = "reply"
    """The namespace answered with a packet it generated: TCP RST or an ICMP error."""
    DROP = "drop"
    """The packet was discarded; the message says why (no route, TTL, MTU, neighbour, ...)."""


class Disposition(StrEnum):
    """How a packet's journey ended."""

    DELIVERED = "delivered"
    """It reached a listening socket or the destination's kernel answered it."""
    DROPPED = "dropped"
    """It was discarded and the sender was not told."""
    REJECTED = "rejected"
    """It was discarded and the sender was told (TCP RST, ICMP unreachable, time exceeded,
    fragmentation needed / packet too big)."""


CAUSES = {
    "no-route": "no route to the destination (or the route is blackhole/unreachable)",
    "forwarding-off": "the packet is not for this namespace and it does not forward",
    "ttl": "TTL / hop limit expired",
    "mtu": "the packet is larger than an MTU on the path",
    "neighbour": "ARP / neighbour discovery got no answer",
    "filter": "a filter (netfilter rule or policy, XDP or tc program) dropped or rejected it",
    "no-listener": "nothing listens on the destination port",
    "no-fdb": "a tunnel knows no remote endpoint for the destination MAC",
    "hairpin": "a switch would have to send the frame back out of the port it came in on",
    "mac": "the frame is addressed to no device here",
    "down": "a device on the path is down",
    "not-connected": "a device on the path has no wire",
    "loop": "the packet loops (hop budget exhausted)",
    "invalid": "a packet that belongs to no connection",
    "unsupported": "a protocol the stack does not handle",
    "dnat": "destination NAT (on a NAT event)",
    "snat": "source NAT or masquerade (on a NAT event)",
    "reverse": "conntrack undoing NAT on a reply or a later packet (on a NAT event)",
}
"""The values of ``Event.cause``."""


@dataclass(frozen=True, slots=True)
class Event:
    """One hop: ``action`` at ``host``/``namespace``/``device`` (``device`` None: the IP stack).

    ``packet``: the frame after the action. ``mtu``: the MTU of the device (the namespace stack:
    of the device the packet arrived on or leaves by). ``overhead``: encapsulation bytes around
    the packet that was first sent. ``reply``: part of a packet the simulator generated in answer
    (RST, ICMP error), not of the packet that was sent. ``rule``: the filter rule that decided, as
    ``"table/hook rule N (comment)"`` or ``"table/hook policy"``. ``bypass``: the hop happens
    outside the host kernel. ``cause``: a machine-readable word for drops and NAT (see ``CAUSES``).
    """

    action: Action
    host: str
    namespace: str
    device: str | None
    mode: str
    level: str
    technique: str
    packet: bytes
    message: str = ""
    mtu: int = 0
    overhead: int = 0
    reply: bool = False
    rule: str = ""
    bypass: bool = False
    cause: str = ""

    @property
    def place(self) -> str:
        """``NS``, ``NS/DEV`` or ``NS/DEV:driver`` — what ``graph.Stage.places`` name."""
        if self.device is None:
            return self.namespace
        if self.action is Action.DRIVER:
            return f"{self.namespace}/{self.device}:driver"
        return f"{self.namespace}/{self.device}"


@dataclass(frozen=True, slots=True)
class Walk:
    """Everything that happened to one injected packet (and the answers it caused);
    ``delivered_in``: the (host, namespace) it was delivered in, if it was."""

    disposition: Disposition
    reason: str
    events: tuple[Event, ...]
    delivered_in: tuple[str, str] | None = None
