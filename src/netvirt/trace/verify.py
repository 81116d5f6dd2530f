"""Predict vs observe: the simulator's trace of a flow, checked against the real kernel.

Contract: ``Verifier(network, observer)`` is used as a context manager around a network that a
backend has built, observed through that backend's ``Observer`` (``dataplane.api``; the kernel
backends' is ``dataplane.kernel.observe.KernelObserver``). Inside it, a capture runs on every
veth, NIC and VXLAN device of every host, and a server listens on every socket device of the
graph (TCP accepts, UDP answers; both reply with their namespace's name). ``verify(flow)`` then:

1. predicts: ``Tracer(network).trace(flow)`` — disposition, the observable places of the request
   (veth, NIC and VXLAN devices, in order; bridges forward without handing unicast frames to a
   packet socket, sockets and IP stacks have no wire), and the packet at each place;
2. observes: sends the flow for real from its namespace (TCP connect, UDP request, ICMP echo
   from a raw socket; source port / echo identifier as in the flow) and collects the request's
   frames from the capture (matched by protocol and source port or echo identifier, not by
   address: SNAT rewrites it; the ports of one run are distinct);
3. compares: disposition and where it was delivered; the places the request crossed, in order
   (the drop point is the last of them); the packet at every place: inner addresses, protocol and
   ports (so every NAT rewrite), and on the underlay the encapsulation (outer addresses, UDP
   destination port, VNI). The outer UDP source port is a flow hash in both: not compared.
4. and the same for the answer: the first packet back to the sender (SYN|ACK, TCP RST, UDP
   reply, echo reply, or an ICMP error quoting the request) — whether it got back, the places
   it crossed in order and the packet at each, so reverse NAT and the return path's tunnels are
   checked too. A request answered whose answer is lost is observed as delivered, answer dropped.

A load-balanced service may pick another backend than the simulator: the flow is sent again from
the next source ports (re-predicted each time) until both pick the same one (``SERVICE_TRIES``),
so the comparison is always like for like.
"""

import errno
import fcntl
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from ipaddress import ip_address

from netvirt.dataplane.api import Observation, Observer
from netvirt.dataplane.events import Action, Disposition, Walk
from netvirt.graph import DeviceKind, NetworkGraph, Socket
from netvirt.trace.run import Flow, Tracer
from netvirt.wire import ParseError, dissect
from netvirt.wire import checksum
from netvirt.wire.addresses import ip_to_text
from netvirt.wire.builders import arp_request

OBSERVABLE = frozenset({DeviceKind.VETH, DeviceKind.NIC, DeviceKind.VXLAN})
TIMEOUT = 5.0  # seconds a probe waits: ARP gives up after 3 tries 1 s apart, then a router answers (slack for load)
SETTLE = 0.05  # seconds for the capture thread to catch up after an answer
ORDER_TOLERANCE = 0.0002  # timestamps of one packet on adjacent places may be this much out of order
SERVICE_TRIES = 12
SIOCGIFHWADDR = 0x8927
Opener = Callable[..., socket.socket]
"""Makes a socket inside one namespace: ``opener(family, kind, proto=0)``."""


@dataclass(frozen=True, slots=True)
class Signature:
    """What a packet looks like at one place: the inner IP flow and, on the underlay, its tunnel."""

    inner: tuple[str, str, str, int, int]  # src, dst, proto, src port, dst port (0 for ICMP)
    tunnel: tuple[str, str, int, int] | None = None  # outer src, outer dst, UDP dst port, VNI

    def __str__(self) -> str:
        src, dst, proto, sport, dport = self.inner
        text = f"{proto} {src}:{sport} > {dst}:{dport}" if proto != "icmp" else f"icmp {src} > {dst}"
        if self.tunnel:
            text += f" in vxlan {self.tunnel[3]} {self.tunnel[0]} > {self.tunnel[1]}:{self.tunnel[2]}"
        return text


@dataclass(frozen=True, slots=True)
class Path:
    """Where one packet was, in order (``host:namespace/device``), with the packet at each place
    and (observed side only) when it was first seen there."""

    places: tuple[str, ...] = ()
    packets: dict[str, Signature] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> list[dict]:
        return [{"place": p, "packet": str(self.packets[p]) if p in self.packets else None} for p in self.places]


@dataclass(frozen=True, slots=True)
class Side:
    """One side of the comparison: the outcome, where it ended, the request's path and the
    answer's (``answered``: ``delivered`` back to the sender, ``dropped`` on the way, or
    ``none``: nobody answered)."""

    disposition: str
    delivered_to: str | None
    request: Path
    answered: str = "none"
    answer: Path = Path()
    detail: str = ""

    @property
    def places(self) -> tuple[str, ...]:
        return self.request.places

    @property
    def packets(self) -> dict[str, Signature]:
        return self.request.packets


@dataclass(frozen=True, slots=True)
class Verification:
    """A flow, what was predicted and observed, and every disagreement (empty: they agree)."""

    flow: Flow
    predicted: Side
    observed: Side
    problems: tuple[str, ...]

    @property
    def agrees(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        def side(s: Side) -> dict:
            return {"disposition": s.disposition, "delivered_to": s.delivered_to, "detail": s.detail,
                    "places": s.request.to_json(), "answer": {"disposition": s.answered, "places": s.answer.to_json()}}

        f = self.flow
        return {"flow": {"host": f.host, "namespace": f.namespace, "src": str(f.src), "dst": str(f.dst),
                         "proto": f.proto, "src_port": f.src_port, "dst_port": f.dst_port},
                "agrees": self.agrees, "problems": list(self.problems),
                "predicted": side(self.predicted), "observed": side(self.observed)}


def signature(frame: bytes) -> Signature | None:
    """The signature of an Ethernet frame carrying IP (None for anything else)."""
    try:
        layers = dissect(frame)
    except ParseError:
        return None
    tunnel = None
    layers = _unquoted(layers)
    ips = [i for i, layer in enumerate(layers) if layer.layer in ("ipv4", "ipv6")]
    if not ips:
        return None
    vxlan = next((i for i, layer in enumerate(layers) if layer.layer == "vxlan"), None)
    if vxlan is not None and len(ips) > 1:
        outer = layers[ips[0]]
        tunnel = (ip_to_text(outer.src), ip_to_text(outer.dst), layers[ips[0] + 1].dst_port, layers[vxlan].vni)
    ip = layers[ips[-1]]
    rest = layers[ips[-1] + 1] if ips[-1] + 1 < len(layers) else None
    proto = rest.layer if rest is not None else "ip"
    if proto in ("tcp", "udp"):
        ports = (rest.src_port, rest.dst_port)
    else:
        proto, ports = ("icmp", (0, 0)) if proto in ("icmpv4", "icmpv6") else (proto, (0, 0))
    return Signature((ip_to_text(ip.src), ip_to_text(ip.dst), proto, *ports), tunnel)


def request_key(frame: bytes) -> tuple[str, str, int] | None:
    """(source address, proto, source port or echo identifier) when ``frame`` (possibly
    encapsulated) is the first packet of a flow: a TCP SYN, a UDP datagram or an echo request."""
    try:
        layers = _unquoted(dissect(frame))
    except ParseError:
        return None
    ips = [i for i, layer in enumerate(layers) if layer.layer in ("ipv4", "ipv6")]
    if not ips or ips[-1] + 1 >= len(layers):
        return None
    source, rest = ip_to_text(layers[ips[-1]].src), layers[ips[-1] + 1]
    if rest.layer == "tcp" and rest.flags & 0x12 == 0x02:
        return (source, "tcp", rest.src_port)
    if rest.layer == "udp" and not (vxlan_port(layers, ips[-1])):
        return (source, "udp", rest.src_port)
    if rest.layer in ("icmpv4", "icmpv6") and rest.type in (8, 128):
        return (source, "icmp", rest.identifier)
    return None


def answer_key(frame: bytes) -> tuple[str, int, bool] | None:
    """(proto, the sender's port or echo identifier, whether an ICMP error) when ``frame``
    (possibly encapsulated) is the first answer of a flow: a TCP SYN|ACK or RST, a UDP datagram,
    an echo reply, or an ICMP error quoting the flow's first packet. Addresses are left out: NAT
    rewrites them."""
    try:
        layers = dissect(frame)
    except ParseError:
        return None
    outer = _unquoted(layers)
    ips = [i for i, layer in enumerate(outer) if layer.layer in ("ipv4", "ipv6")]
    if not ips or ips[-1] + 1 >= len(outer):
        return None
    rest = outer[ips[-1] + 1]
    if rest.layer == "tcp" and (rest.flags & 0x12 == 0x12 or rest.flags & 0x04):
        return ("tcp", rest.dst_port, False)
    if rest.layer == "udp" and not vxlan_port(outer, ips[-1]):
        return ("udp", rest.dst_port, False)
    if rest.layer in ("icmpv4", "icmpv6") and rest.type in (0, 129):
        return ("icmp", rest.identifier, False)
    if len(outer) < len(layers) and len(layers) > len(outer) + 1:  # an ICMP error and its quote
        quoted = layers[len(outer) + 1]
        if quoted.layer in ("tcp", "udp"):
            return (quoted.layer, quoted.src_port, True)
        if quoted.layer in ("icmpv4", "icmpv6") and quoted.type in (8, 128):
            return ("icmp", quoted.identifier, True)
    return None


def _unquoted(layers: list) -> list:
    """``layers`` up to an ICMP error, without the datagram it quotes."""
    for index, layer in enumerate(layers):
        if layer.layer in ("icmpv4", "icmpv6") and layer.is_error:
            return layers[:index + 1]
    return layers


def vxlan_port(layers: list, ip_index: int) -> bool:
    """Whether the UDP after layer ``ip_index`` carries a tunnel (it is no flow of its own)."""
    return ip_index + 2 < len(layers) and layers[ip_index + 2].layer == "vxlan"


class Verifier:
    """Captures and servers for a built network; ``verify`` checks one flow (see the module)."""

    def __init__(self, network: NetworkGraph, observer: Observer, *, view: Callable[[Walk], Walk] | None = None,
                 exists: Callable[[tuple[str, str, str]], bool] | None = None) -> None:
        """``view``: how the backend shows its hops (``Tracer(view=)``); hops it marks ``bypass``
        happen outside the kernel, where no capture sees them, and are not expected. ``exists``:
        whether a graph place is a kernel device there (default: every one)."""
        self.network, self.observer = network, observer
        self.tracer = Tracer(network, view=view)
        self.kinds = {(g.host, d.namespace, d.name): d.kind for g in network.hosts for d in g.devices
                      if exists is None or exists((g.host, d.namespace, d.name))}
        self.points = [place for place, kind in self.kinds.items() if kind in OBSERVABLE]
        self._observed = set(self.points)
        self._servers: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._keys: dict[int, tuple] = {}  # (request key, answer key) by frame; frames stay alive in the capture
        self._lock = threading.Lock()

    def __enter__(self) -> "Verifier":
        self._announce()
        self.observer.start(self.points)
        try:
            self._serve()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self._servers:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)
        self.observer.stop()

    def _announce(self) -> None:
        """Every addressed device sends a gratuitous ARP, as the simulator's warm state assumes
        (``Simulator.announce``): afterwards every bridge has learned every MAC, so a unicast
        frame is forwarded, not flooded, as in a network that has been running."""
        for graph in self.network.hosts:
            for dev in graph.devices:
                address = next((a.ip for a in dev.addresses if a.version == 4), None)
                if address is None or (graph.host, dev.namespace, dev.name) not in self._observed:
                    continue
                with self.observer.open_socket(graph.host, dev.namespace, socket.AF_PACKET, socket.SOCK_RAW) as sock:
                    sock.bind((dev.name, 0))
                    mac = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", dev.name.encode()))[18:24]
                    sock.send(arp_request(mac, address.packed, address.packed))
        time.sleep(SETTLE)

    def _serve(self) -> None:
        for graph in self.network.hosts:
            for dev in graph.devices:
                if not isinstance(dev.config, Socket):
                    continue
                name = f"{graph.host}:{dev.namespace}".encode()
                for family, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                    kind = socket.SOCK_STREAM if dev.config.proto.value == "tcp" else socket.SOCK_DGRAM
                    sock = self.observer.open_socket(graph.host, dev.namespace, family, kind)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    address = str(dev.config.address) if dev.config.address is not None else anywhere
                    try:
                        sock.bind((address, dev.config.port))
                    except OSError:  # an address of the other family
                        sock.close()
                        continue
                    if kind == socket.SOCK_STREAM:
                        sock.listen(64)
                    thread = threading.Thread(target=_answer, args=(sock, name), daemon=True)
                    thread.start()
                    self._servers.append(sock)
                    self._threads.append(thread)

    # --- one flow -------------------------------------------------------------------------------

    def verify(self, flow: Flow) -> Verification:
        """Predict, observe and compare ``flow`` (see the module docstring)."""
        for attempt in range(SERVICE_TRIES):
            tried = replace(flow, src_port=(flow.src_port + attempt * 7919 - 1024) % 64000 + 1024)
            predicted = self.predict(tried)
            observed = self.observe(tried)
            if not _other_backend(predicted, observed):
                break
        return Verification(tried, predicted, observed, tuple(compare(predicted, observed)))

    def verify_all(self, flows: list[Flow], workers: int = 16,
                   progress: Callable[[int, int], None] | None = None) -> list[Verification]:
        """``verify`` for every flow: predictions one by one (the simulator is not shared), the
        real probes ``workers`` at a time (distinct source ports keep them apart); ``progress(done,
        total)`` after each probe (from the probing threads)."""
        predicted = [self.predict(flow) for flow in flows]
        done = [0]

        def observed_one(flow: Flow) -> Side:
            side = self.observe(flow)
            if progress is not None:
                with self._lock:
                    done[0] += 1
                    progress(done[0], len(flows))
            return side

        with ThreadPoolExecutor(max_workers=workers) as pool:
            observed = list(pool.map(observed_one, flows))
        return [
            self.verify(flow) if _other_backend(want, got) else Verification(flow, want, got, tuple(compare(want, got)))
            for flow, want, got in zip(flows, predicted, observed, strict=True)
        ]

    def predict(self, flow: Flow) -> Side:
        trace = self.tracer.trace(flow, anomalies=False)
        delivered = next((hop.namespace for hop in trace.hops if hop.action is Action.DELIVER and not hop.reply),
                         None) if trace.disposition is Disposition.DELIVERED else None
        request = self._path([hop for hop in trace.hops if not hop.reply], lambda packet: (  # any address: SNAT
            (key := request_key(packet)) is not None and key[1] == flow.proto
            and (flow.proto == "icmp" or key[2] == flow.src_port)))
        def back(packet: bytes) -> bool:  # the simulator's echo identifier is not the flow's port
            key = answer_key(packet)
            return key is not None and key[0] == flow.proto and (flow.proto == "icmp" or key[1] == flow.src_port)

        if trace.answer is not None:
            answer = self._path(trace.answer.hops, back)
            answered = trace.answer.disposition.value
        else:
            replies = [hop for hop in trace.hops if hop.reply]
            answer = self._path(replies, back)
            answered = "none" if not replies else "delivered" if trace.disposition is Disposition.REJECTED \
                else "dropped"
        return Side(trace.disposition.value, delivered, request, answered, answer, trace.reason)

    def _path(self, hops, wanted) -> Path:
        """The observable places of ``hops`` whose packet is ``wanted``, with the first packet at each."""
        places: list[str] = []
        packets: dict[str, Signature] = {}
        for hop in hops:
            host, _, namespace = hop.namespace.partition(":")
            kind = self.kinds.get((host, namespace, hop.device)) if hop.device is not None else None
            if hop.bypass or kind not in OBSERVABLE or not wanted(hop.packet):  # not ARP, not the other direction
                continue
            place = f"{hop.namespace}/{hop.device}"
            if not places or places[-1] != place:
                places.append(place)
            if place not in packets and (found := signature(hop.packet)) is not None:
                if kind is DeviceKind.VXLAN:
                    found = Signature(found.inner)  # a packet socket on a tunnel sees the inner frame
                packets[place] = found
        return Path(tuple(places), packets)

    def observe(self, flow: Flow) -> Side:
        echo_id = flow.src_port & 0xFFFF
        started = time.time()
        disposition, answered_by, detail = _send(self._opener(flow), flow, echo_id)
        time.sleep(SETTLE)
        seen: dict[str, tuple[float, Signature]] = {}
        back: dict[str, tuple[float, Signature]] = {}
        error = False  # the answer is an ICMP error
        wanted = (flow.proto, echo_id if flow.proto == "icmp" else flow.src_port)  # any source address: SNAT
        answer = (flow.proto, _client_port(flow))
        for frame in self.observer.frames():
            if frame.timestamp < started - 0.01:
                continue
            request, reply = self._keys_of(frame)
            found = seen if request is not None and request[1:] == wanted else \
                back if reply is not None and reply[:2] == answer else None
            if found is None:
                continue
            if found is back:
                error = error or reply[2]  # type: ignore[index]
            place = frame.place
            if place not in found and (packet := signature(frame.data)) is not None:
                found[place] = (frame.timestamp, packet)
        order = sorted(seen, key=lambda p: seen[p][0])
        returned = sorted(back, key=lambda p: back[p][0])
        if disposition == "unreachable":
            disposition = "rejected" if order else "dropped"  # the network said so, or the sender's own stack
        if disposition in ("delivered", "rejected"):
            answered = "delivered"
        else:
            answered = "dropped" if returned else "none"
        if disposition == "dropped" and returned and not error:
            disposition, answered_by = "delivered", returned[0].rpartition("/")[0]  # answered, the answer lost
            detail += f"; the destination answered, the answer was last seen at {returned[-1]}"
        if answered_by is None and disposition == "delivered" and order:
            answered_by = order[-1].rpartition("/")[0]  # an echo: answered by the last namespace it reached
        return Side(disposition, answered_by, _path_of(seen, order), answered, _path_of(back, returned), detail)

    def _opener(self, flow: Flow) -> "Opener":
        """Opens sockets in the flow's namespace."""
        return lambda family, kind, proto=0: self.observer.open_socket(flow.host, flow.namespace, family, kind, proto)

    def _keys_of(self, frame: Observation) -> tuple[tuple[str, str, int] | None, tuple[str, int, bool] | None]:
        with self._lock:
            if id(frame) not in self._keys:
                self._keys[id(frame)] = (request_key(frame.data), answer_key(frame.data))
            return self._keys[id(frame)]


def _client_port(flow: Flow) -> int:
    """The sender's port of ``flow`` (its echo identifier for ICMP): what the answer goes back to."""
    return flow.src_port & 0xFFFF


def _path_of(seen: dict[str, tuple[float, Signature]], order: list[str]) -> Path:
    return Path(tuple(order), {p: seen[p][1] for p in order}, {p: seen[p][0] for p in order})


def _other_backend(predicted: Side, observed: Side) -> bool:
    """Both delivered, to different places: a load balancer chose differently."""
    return (predicted.disposition == observed.disposition == "delivered"
            and predicted.delivered_to != observed.delivered_to)


def compare(predicted: Side, observed: Side) -> list[str]:
    """Every way ``observed`` differs from ``predicted``: the request, then the answer."""
    problems = []
    if predicted.disposition != observed.disposition:
        problems.append(f"disposition: predicted {predicted.disposition}, observed {observed.disposition}")
    elif predicted.delivered_to != observed.delivered_to:
        problems.append(f"delivered to: predicted {predicted.delivered_to}, observed {observed.delivered_to}")
    problems += _compare_paths("", predicted.request, observed.request)
    if predicted.answered != observed.answered:
        problems.append(f"answer: predicted {predicted.answered}, observed {observed.answered}")
    problems += _compare_paths("answer ", predicted.answer, observed.answer)
    return problems


def _compare_paths(what: str, predicted: Path, observed: Path) -> list[str]:
    """The places crossed (as sets, then in order) and the packet at each place."""
    problems = []
    if set(predicted.places) != set(observed.places):
        missing = [p for p in predicted.places if p not in observed.places]
        extra = [p for p in observed.places if p not in predicted.places]
        if missing:
            problems.append(f"{what}path: never seen at {', '.join(missing)} (predicted)")
        if extra:
            problems.append(f"{what}path: seen at {', '.join(extra)} (not predicted)")
    elif predicted.places != observed.places and not _consistent(predicted.places, observed.times):
        problems.append(f"{what}path order: predicted {' -> '.join(predicted.places)}, "
                        f"observed {' -> '.join(observed.places)}")
    for place in predicted.places:
        want, got = predicted.packets.get(place), observed.packets.get(place)
        if want is None or got is None:
            continue
        if want.inner != got.inner:
            problems.append(f"{what}packet at {place}: predicted {want}, observed {got}")
        elif (want.tunnel is None) != (got.tunnel is None) or want.tunnel and want.tunnel != got.tunnel:
            problems.append(f"{what}encapsulation at {place}: predicted {want}, observed {got}")
    return problems


def _consistent(order: tuple[str, ...], times: dict[str, float]) -> bool:
    """Whether the timestamps allow ``order`` (adjacent places within ``ORDER_TOLERANCE``)."""
    return all(times[b] >= times[a] - ORDER_TOLERANCE for a, b in zip(order, order[1:]))


# --- the real probes ------------------------------------------------------------------------------


def _answer(sock: socket.socket, name: bytes) -> None:
    """Serve until the socket is shut down: TCP sends ``name`` on accept, UDP answers it."""
    while True:
        try:
            if sock.type == socket.SOCK_STREAM:
                conn, _ = sock.accept()
                with conn:
                    conn.sendall(name)
            else:
                _, peer = sock.recvfrom(2048)
                if peer is None:
                    return
                sock.sendto(name, peer)
        except OSError:
            return


def _send(opener: "Opener", flow: Flow, echo_id: int) -> tuple[str, str | None, str]:
    """Send ``flow`` from sockets ``opener`` makes: (disposition, who answered, what happened)."""
    family = socket.AF_INET6 if flow.dst.version == 6 else socket.AF_INET
    try:
        if flow.proto == "icmp":
            return _echo(opener, family, flow, echo_id)
        kind = socket.SOCK_STREAM if flow.proto == "tcp" else socket.SOCK_DGRAM
        with opener(family, kind) as sock:
            sock.settimeout(TIMEOUT)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if kind == socket.SOCK_STREAM:  # close with RST: no TIME_WAIT holding the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.bind((str(flow.src), flow.src_port))
            sock.connect((str(flow.dst), flow.dst_port))
            if kind == socket.SOCK_DGRAM:
                sock.send(b"netvirt verify")
            name = sock.recv(256).decode(errors="replace")
            return "delivered", name, f"answered by {name}"
    except ConnectionRefusedError:
        return "rejected", None, "refused (TCP reset or ICMP port unreachable)"
    except TimeoutError:
        return "dropped", None, f"no answer within {TIMEOUT}s"
    except OSError as error:
        if error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM):
            return "unreachable", None, os.strerror(error.errno)
        if error.errno in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENETDOWN):  # drift: the sender's device is gone
            return "dropped", None, f"cannot send from {flow.src}: {os.strerror(error.errno)}"
        raise


def _echo(opener: "Opener", family: int, flow: Flow, echo_id: int) -> tuple[str, str | None, str]:
    """One ICMP echo from a raw socket: answered, told off (an ICMP error quoting it), or nothing."""
    v6 = family == socket.AF_INET6
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    request = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, echo_id, 1) + b"netvirt verify"
    if not v6:
        request = request[:2] + struct.pack("!H", checksum.compute(request)) + request[4:]
    with opener(family, socket.SOCK_RAW, proto) as sock:
        try:
            sock.bind((str(flow.src), 0))
        except OSError as error:
            if error.errno not in (errno.EADDRNOTAVAIL, errno.ENODEV):
                raise
            return "dropped", None, f"cannot send from {flow.src}: {os.strerror(error.errno)}"
        sock.sendto(request, (str(flow.dst), 0))
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                break
            message = data if v6 else data[(data[0] & 15) * 4:]
            kind = message[0]
            if kind == (129 if v6 else 0) and struct.unpack_from("!H", message, 4)[0] == echo_id:
                return "delivered", None, f"echo reply from {peer[0]}"
            if kind in ((1, 2, 3) if v6 else (3, 11)) and _quotes(message, echo_id, v6):
                if ip_address(peer[0].split("%")[0]) == flow.src:  # from the sender's own stack
                    return "unreachable", None, f"ICMP type {kind} code {message[1]} from the sender's own stack"
                return "rejected", None, f"ICMP type {kind} code {message[1]} from {peer[0]}"
    return "dropped", None, f"no answer within {TIMEOUT}s"


def _quotes(message: bytes, echo_id: int, v6: bool) -> bool:
    """Whether an ICMP error quotes our echo request."""
    inner = message[8:]
    offset = 40 if v6 else (inner[0] & 15) * 4 if inner else 0
    quoted = inner[offset:offset + 8]
    return len(quoted) >= 6 and quoted[0] in (8, 128) and struct.unpack_from("!H", quoted, 4)[0] == echo_id
