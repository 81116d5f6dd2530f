"""Compose frames: ``build`` a stack of Reprs, ``encapsulate`` a frame in VXLAN/Geneve/NVGRE.

``flow_entropy`` picks a tunnel's UDP source port from the inner flow (RFC 7348 §5): the CRC-32
(``zlib.crc32``) of the inner flow key, folded into the dynamic port range 49152-65535 as
``49152 + crc % 16384``. The flow key is the inner IP source and destination addresses, the IP
protocol and, for TCP/UDP, both ports (packed, in that order); a non-IP or undecodable inner frame
uses its first 14 bytes (the Ethernet addresses and EtherType). Every packet of one flow takes the
same underlay path; different flows spread over ECMP paths.
"""

import zlib
from collections.abc import Sequence

from netvirt.wire import ethernet, geneve, icmpv6, ipv4, ipv6, nvgre, stack, tcp, udp, vxlan
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes
from netvirt.wire.errors import ParseError

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


_TRANSPORTS = {tcp.PROTOCOL: tcp.decode_at, udp.PROTOCOL: udp.decode_at}


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
