"""Compose frames: ``build`` a stack of Reprs, ``encapsulate`` a frame in VXLAN/Geneve/NVGRE, and
what a client sends first (``probe``, ``arp_request``, ``neighbor_solicitation``), for the
simulator and the real probes of ``verify`` alike.

``flow_entropy`` picks a tunnel's UDP source port from the inner flow (RFC 7348 §5): the CRC-32
(``zlib.crc32``) of the inner flow key, folded into the dynamic port range 49152-65535 as
``49152 + crc % 16384``. The flow key is the inner IP source and destination addresses, the IP
protocol and, for TCP/UDP, both ports (packed, in that order); a non-IP or undecodable inner frame
uses its first 14 bytes (the Ethernet addresses and EtherType). Every packet of one flow takes the
same underlay path; different flows spread over ECMP paths.
"""

import zlib
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from netvirt.wire import arp, ethernet, geneve, icmpv4, icmpv6, ipv4, ipv6, nvgre, stack, tcp, udp, vxlan
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes
from netvirt.wire.errors import ParseError
from netvirt.wire.ipv4 import ICMP, ICMPV6, TCP, UDP

DYNAMIC_PORTS_START = 49152
_PSEUDO_HEADER_LAYERS = (udp.Repr, tcp.Repr, icmpv6.Repr)
_IP_LAYERS = (ipv4.Repr, ipv6.Repr)
_UDP_TUNNELS = (vxlan.Repr, geneve.Repr)


def build(layers: Sequence, payload=b"") -> bytes:
    """Emit ``layers`` (outer first) around ``payload``, inner-most first.

    Lengths and checksums are derived; UDP, TCP and ICMPv6 take their pseudo-header from the
    nearest enclosing IPv4/IPv6 layer. UDP carrying VXLAN or Geneve over IPv4 is sent with a zero
    checksum (RFC 7348 §5, RFC 8926 §3.3; Linux's default), over IPv6 with a full one.
    """
    data = bytes(payload)
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        if isinstance(layer, _PSEUDO_HEADER_LAYERS):
            ip = _enclosing_ip(layers, index)
            if isinstance(layer, udp.Repr):
                tunnel = index + 1 < len(layers) and isinstance(layers[index + 1], _UDP_TUNNELS)
                zero = tunnel and isinstance(ip, ipv4.Repr)
                data = layer.emit(data, src=ip.src, dst=ip.dst, zero_checksum=zero)
            else:
                data = layer.emit(data, src=ip.src, dst=ip.dst)
        else:
            data = layer.emit(data)
    return data


def _enclosing_ip(layers: Sequence, index: int):
    for outer in range(index - 1, -1, -1):
        if isinstance(layers[outer], _IP_LAYERS):
            return layers[outer]
    raise ValueError(f"{layers[index].layer} at position {index} needs an enclosing ipv4/ipv6 layer "
                     f"for its checksum pseudo-header")


def flow_entropy(inner_frame) -> int:
    """The UDP source port (49152-65535) for ``inner_frame``'s flow; see the module docstring."""
    return DYNAMIC_PORTS_START + zlib.crc32(_flow_key(bytes(inner_frame))) % 16384


_TRANSPORTS = {TCP: tcp.decode_at, UDP: udp.decode_at}


def _flow_key(data: bytes) -> bytes:
    """The flow key of the module docstring. Only the headers up to TCP/UDP are decoded: what
    they carry (a tunnel, say) is payload and never changes the key."""
    try:
        _, start, end, ethertype = ethernet.decode_at(data, 0, len(data))
        decode_ip = stack.BY_ETHERTYPE.get(ethertype)
        if decode_ip not in (ipv4.decode_at, ipv6.decode_at):
            return data[:14]
        ip, start, end, protocol = decode_ip(data, start, end)
        key = ip.src + ip.dst + bytes((ip.protocol if isinstance(ip, ipv4.Repr) else ip.next_header,))
        decode_transport = _TRANSPORTS.get(protocol)  # protocol is None for a fragment
        if decode_transport is not None:
            transport = decode_transport(data, start, end)[0]
            key += transport.src_port.to_bytes(2, "big") + transport.dst_port.to_bytes(2, "big")
        return key
    except ParseError:
        return data[:14]


def encapsulate(inner_frame, *, encap: str, vni: int, outer_src, outer_dst, outer_src_mac,
                outer_dst_mac, flow_id: int = 0, options: Sequence[geneve.Option] = (),
                src_port: int | None = None, ttl: int = 64) -> bytes:
    """Wrap an Ethernet frame in ``encap`` ("vxlan", "geneve" or "nvgre") over IPv4 or IPv6.

    The underlay family follows ``outer_src``/``outer_dst`` (text or packed bytes, both of one
    family); MACs are text or 6 bytes. ``vni`` is the VNI, or the VSID for NVGRE; ``flow_id`` is
    NVGRE's FlowID; ``options`` are Geneve options. The UDP source port is ``src_port`` or
    ``flow_entropy(inner_frame)``. ``ttl`` is the outer TTL / hop limit.
    """
    src = ip_to_bytes(outer_src) if isinstance(outer_src, str) else bytes(outer_src)
    dst = ip_to_bytes(outer_dst) if isinstance(outer_dst, str) else bytes(outer_dst)
    src_mac = mac_to_bytes(outer_src_mac) if isinstance(outer_src_mac, str) else bytes(outer_src_mac)
    dst_mac = mac_to_bytes(outer_dst_mac) if isinstance(outer_dst_mac, str) else bytes(outer_dst_mac)
    if len(src) != len(dst):
        raise ValueError(f"encapsulate: outer_src {outer_src!r} and outer_dst {outer_dst!r} are of different families")
    if encap not in ("vxlan", "geneve", "nvgre"):
        raise ValueError(f"encapsulate: encap must be 'vxlan', 'geneve' or 'nvgre', got {encap!r}")
    if options and encap != "geneve":
        raise ValueError(f"encapsulate: options are for geneve, not {encap}")
    if flow_id and encap != "nvgre":
        raise ValueError(f"encapsulate: flow_id is for nvgre, not {encap}")
    if encap == "nvgre":
        if src_port is not None:
            raise ValueError("encapsulate: nvgre has no UDP source port")
        tunnel = [nvgre.Repr(vni, flow_id)]
        protocol = ipv4.GRE
    else:
        port = flow_entropy(inner_frame) if src_port is None else src_port
        header = vxlan.Repr(vni) if encap == "vxlan" else geneve.Repr(vni, options=tuple(options))
        tunnel = [udp.Repr(port, vxlan.PORT if encap == "vxlan" else geneve.PORT), header]
        protocol = ipv4.UDP
    if len(src) == 4:
        outer = [ethernet.Repr(src_mac, dst_mac, ethernet.IPV4), ipv4.Repr(src, dst, protocol, ttl)]
    else:
        outer = [ethernet.Repr(src_mac, dst_mac, ethernet.IPV6), ipv6.Repr(src, dst, protocol, hop_limit=ttl)]
    return build(outer + tunnel, inner_frame)


# --- what a client sends: probes and address resolution ------------------------------------------

FIRST_SEQUENCE = 1_000_000  # probes' TCP initial sequence number (fixed: traces are deterministic)
BROADCAST = b"\xff" * 6
ZERO_MAC = bytes(6)


def probe(src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, proto: str, *, src_port: int = 0,
          dst_port: int = 0, size: int = 0, ttl: int = 64, dont_fragment: bool = True,
          identification: int = 1) -> bytes:
    """An IP packet a client would send: a TCP SYN, a UDP datagram or an ICMP echo request.

    ``size`` is the IP total length to reach (padded with zero payload; 0 = headers only);
    ``src_port`` is the echo identifier for ICMP. Fields are fixed so traces are deterministic.
    Built once per shape and then given its addresses through the header Views (RFC 1624
    checksum updates): the same bytes as building it whole, faster.
    """
    if src.version != dst.version:
        raise ValueError(f"probe from IPv{src.version} {src} to IPv{dst.version} {dst}: families differ")
    shape = (src.version, proto, src_port, dst_port, size, ttl, dont_fragment, identification)
    template = _TEMPLATES.get(shape)
    if template is None:
        if len(_TEMPLATES) >= 4096:
            _TEMPLATES.clear()
        unspecified = ip_address("0.0.0.0" if src.version == 4 else "::")
        template = _TEMPLATES[shape] = _probe(unspecified, unspecified, proto, src_port, dst_port, size, ttl,
                                              dont_fragment, identification)
    packet = bytearray(template)  # the same packet between these addresses: RFC 1624 updates
    view = ipv4.View(packet) if src.version == 4 else ipv6.View(packet)
    transport = None
    l4 = 20 if src.version == 4 else 40
    if proto == "tcp":
        transport = tcp.View(packet, l4)
    elif proto == "udp":
        transport = udp.View(packet, l4)
    elif src.version == 6:
        transport = icmpv6.View(packet, l4)
    for field, address in (("src", src.packed), ("dst", dst.packed)):
        old = getattr(view, field)
        setattr(view, field, address)
        if transport is not None:
            transport.update_pseudo_header(old, address)
    return bytes(packet)


_TEMPLATES: dict[tuple, bytes] = {}


def _probe(src, dst, proto: str, src_port: int, dst_port: int, size: int, ttl: int, dont_fragment: bool,
           identification: int) -> bytes:
    s, d = src.packed, dst.packed
    if proto == "tcp":
        transport = tcp.Repr(src_port, dst_port, FIRST_SEQUENCE, 0, tcp.SYN, 64240)
        header_length = 20
    elif proto == "udp":
        transport = udp.Repr(src_port, dst_port)
        header_length = 8
    elif proto == "icmp":
        if src.version == 4:
            transport = icmpv4.Repr(icmpv4.ECHO_REQUEST, 0, src_port or 1, 1)
        else:
            transport = icmpv6.Repr(icmpv6.ECHO_REQUEST, 0, src_port or 1, 1)
        header_length = 8
    else:
        raise ValueError(f"probe protocol must be tcp, udp or icmp, got {proto!r}")
    ip_length = 20 if src.version == 4 else 40
    payload = bytes(max(0, size - ip_length - header_length))
    if src.version == 4:
        ip = ipv4.Repr(s, d, {"tcp": TCP, "udp": UDP, "icmp": ICMP}[proto], ttl, identification,
                       dont_fragment=dont_fragment)
    else:
        ip = ipv6.Repr(s, d, {"tcp": TCP, "udp": UDP, "icmp": ICMPV6}[proto], hop_limit=ttl)
    return build([ip, transport], payload)


def arp_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """A broadcast ARP request from ``src_mac``/``src_ip`` for ``target_ip`` (a gratuitous one when they are equal)."""
    request = arp.Repr(arp.REQUEST, src_mac, src_ip, ZERO_MAC, target_ip)
    return build([ethernet.Repr(src_mac, BROADCAST, ethernet.ARP), request])



def solicited_node(address: bytes) -> tuple[bytes, bytes]:
    """The solicited-node multicast address of an IPv6 address, and its multicast MAC (RFC 4291)."""
    group = bytes.fromhex("ff0200000000000000000001ff") + address[13:]
    return group, b"\x33\x33" + group[12:]


def neighbor_solicitation(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    """An ICMPv6 neighbour solicitation for ``target_ip`` to its solicited-node group (RFC 4861 §4.3)."""
    group, mac = solicited_node(target_ip)
    message = icmpv6.Repr(icmpv6.NEIGHBOR_SOLICITATION, target_address=target_ip, link_layer_address=src_mac)
    return build([ethernet.Repr(src_mac, mac, ethernet.IPV6), ipv6.Repr(src_ip, group, ICMPV6, hop_limit=255),
                  message])
