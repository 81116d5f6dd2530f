"""Whole frames: ``dissect`` into layer Reprs, and render them (``to_json``, ``summary``).

The dispatch tables — EtherType, IP protocol and UDP port to decoder — live here and only here.
Every decoder has the signature ``decode_at(data, start, end, quoted) -> (Repr, start, end, next)``
where ``data`` is ``bytes`` (Reprs slice their variable fields out of it), offsets are absolute in it,
and ``next`` is looked up in the decoder's table to find the decoder of the payload.
"""

from netvirt.wire import arp, ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, nvgre, tcp, udp, vxlan
from netvirt.wire.addresses import ip_to_text
from netvirt.wire.errors import Truncated


def _gre_or_nvgre(data, start: int, end: int, quoted: bool = False):
    """NVGRE when the GRE header has exactly NVGRE's shape (RFC 7637), else plain GRE."""
    if data[start:start + 4] == nvgre.FIRST_WORD:
        return nvgre.decode_at(data, start, end, quoted)
    return gre.decode_at(data, start, end, quoted)


BY_ETHERTYPE = {
    ethernet.IPV4: ipv4.decode_at,
    ethernet.IPV6: ipv6.decode_at,
    ethernet.ARP: arp.decode_at,
}
# Geneve's Protocol Type and GRE's Protocol Type are EtherTypes, plus Ethernet itself.
BY_TUNNEL_PROTOCOL = {**BY_ETHERTYPE, ethernet.TRANSPARENT_ETHERNET_BRIDGING: ethernet.decode_at}
BY_IP_PROTOCOL = {
    ipv4.ICMP: icmpv4.decode_at,
    ipv4.TCP: tcp.decode_at,
    ipv4.UDP: udp.decode_at,
    ipv4.GRE: _gre_or_nvgre,
    ipv4.ICMPV6: icmpv6.decode_at,
    ipv4.IPV4_IN_IP: ipv4.decode_at,
    ipv4.IPV6_IN_IP: ipv6.decode_at,
}
BY_UDP_DESTINATION_PORT = {
    vxlan.PORT: vxlan.decode_at,
    geneve.PORT: geneve.decode_at,
}

BY_ICMPV4_TYPE = dict.fromkeys(icmpv4.ERROR_TYPES, ipv4.decode_at)  # errors quote a datagram
BY_ICMPV6_TYPE = dict.fromkeys(icmpv6.ERROR_TYPES, ipv6.decode_at)
NOTHING: dict = {}

# decoder -> the table its ``next`` value is looked up in
_NEXT = {
    ethernet.decode_at: BY_ETHERTYPE,
    arp.decode_at: NOTHING,
    ipv4.decode_at: BY_IP_PROTOCOL,
    ipv6.decode_at: BY_IP_PROTOCOL,
    udp.decode_at: BY_UDP_DESTINATION_PORT,
    tcp.decode_at: NOTHING,
    icmpv4.decode_at: BY_ICMPV4_TYPE,
    icmpv6.decode_at: BY_ICMPV6_TYPE,
    vxlan.decode_at: BY_TUNNEL_PROTOCOL,
    geneve.decode_at: BY_TUNNEL_PROTOCOL,
    _gre_or_nvgre: BY_TUNNEL_PROTOCOL,
}


def _compile_steps() -> dict:
    """The tables as one graph for ``dissect``, one dict lookup per layer: each table becomes
    ``next -> (decoder, the steps after that decoder, quoted)``. Every table is there twice,
    outside and inside an ICMP error's quote (where every later layer is quoted too)."""
    tables = {id(table): table for table in _NEXT.values()}  # dicts are not hashable: key by id
    steps = {(key, quoted): {} for key in tables for quoted in (False, True)}
    for (key, quoted), compiled in steps.items():
        table = tables[key]
        inner = quoted or table is BY_ICMPV4_TYPE or table is BY_ICMPV6_TYPE
        for selector, decoder in table.items():
            compiled[selector] = (decoder, steps[id(_NEXT[decoder]), inner], inner)
    return steps[id(BY_ETHERTYPE), False]


_AFTER_ETHERNET = _compile_steps()


def dissect(frame) -> list:
    """Decode an Ethernet frame into its layers, outer first, following encapsulations.

    UDP destination port 4789 -> VXLAN -> Ethernet; 6081 -> Geneve -> its protocol; IP protocol
    47 -> NVGRE or GRE -> its protocol; IP-in-IP. Fragments stop at the IP layer. The layers after
    an ICMP error are its quoted datagram: there lengths may exceed the quote, checksums are not
    checked and a header cut short ends the list. Payload after the last header is not a layer.
    UDP/TCP/ICMPv6 checksums are not verified (captures on the sending host carry offloaded,
    partial ones); the IPv4 header, ICMPv4 and GRE checksums are. Raises only ``ParseError``,
    with offsets absolute in ``frame``.
    """
    data = frame if type(frame) is bytes else bytes(frame)
    layers = []
    decode, steps, quoted = ethernet.decode_at, _AFTER_ETHERNET, False
    start, end = 0, len(data)
    while True:
        try:
            layer, start, end, selector = decode(data, start, end, quoted)
        except Truncated:
            if quoted:
                return layers
            raise
        layers.append(layer)
        step = steps.get(selector)
        if step is None:
            return layers
        decode, steps, quoted = step


_ICMP_REPRS = (icmpv4.Repr, icmpv6.Repr)


def to_json(layers) -> list[dict]:
    """JSON-ready dicts, one per layer: ``{"layer": name, <fields named as in the Repr>}``."""
    return [layer.to_dict() for layer in layers]


def summary(layers) -> str:
    """One tcpdump-like line, outer to inner, segments joined by `` | ``, e.g.
    ``10.0.0.1.49152 > 10.0.0.2.4789: udp | vxlan vni 100 | 192.168.1.1.40000 > 192.168.1.2.80: tcp [S] seq 1``.
    """
    parts = []
    index = 0
    count = len(layers)
    quote_at = None  # the part that starts an ICMP error's quoted datagram
    while index < count:
        layer = layers[index]
        if quote_at is None and index and layers[index - 1].__class__ in _ICMP_REPRS and layers[index - 1].is_error:
            quote_at = len(parts)
        following = layers[index + 1] if index + 1 < count else None
        kind = layer.__class__
        if kind is ethernet.Repr:
            if layer.vlans:
                parts.append("vlan " + ",".join(str(tag.vlan_id) for tag in layer.vlans))
            if following is None or following.__class__ not in (ipv4.Repr, ipv6.Repr, arp.Repr):
                parts.append(f"{layer.src.hex(':')} > {layer.dst.hex(':')} ethertype {layer.ethertype:#06x}")
        elif kind is ipv4.Repr or kind is ipv6.Repr:
            text, consumed = _ip_summary(layer, following)
            parts.append(text)
            index += consumed
        else:
            parts.append(_SIMPLE[kind](layer))
        index += 1
    if quote_at is not None and quote_at < len(parts):
        parts[quote_at] = "quoted " + parts[quote_at]
    return " | ".join(parts)


def _ip_summary(ip, transport) -> tuple[str, int]:
    """The IP layer with the transport it carries on one segment; returns (text, extra layers used)."""
    src, dst = ip_to_text(ip.src), ip_to_text(ip.dst)
    kind = transport.__class__
    if kind is udp.Repr or kind is tcp.Repr:
        text = f"{src}.{transport.src_port} > {dst}.{transport.dst_port}: {transport.layer}"
        if kind is tcp.Repr:
            text += f" [{tcp.flag_letters(transport.flags)}] seq {transport.sequence_number}"
            if transport.flags & tcp.ACK:
                text += f" ack {transport.acknowledgment_number}"
        return text, 1
    if kind in _ICMP_REPRS:
        return f"{src} > {dst}: {_SIMPLE[kind](transport)}", 1
    if ip.__class__ is ipv4.Repr:
        text = f"{src} > {dst}: ipv4 protocol {ip.protocol} ttl {ip.ttl}"
        if ip.is_fragment:
            text += _fragment_text(ip.identification, ip.fragment_offset, ip.more_fragments)
    else:
        text = f"{src} > {dst}: ipv6 next header {ip.next_header} hop limit {ip.hop_limit}"
        if ip.fragment is not None:
            text += _fragment_text(*ip.fragment)
    return text, 0


def _fragment_text(identification: int, fragment_offset: int, more_fragments: bool) -> str:
    """tcpdump's way: the offset in bytes, ``+`` when more fragments follow."""
    return f" fragment id {identification} offset {fragment_offset * 8}" + (" +" if more_fragments else "")


def _icmpv4_text(layer) -> str:
    text = "icmp " + icmpv4.TYPE_NAMES.get(layer.type, f"type {layer.type}")
    if layer.type in icmpv4.ECHO_TYPES:
        return f"{text} id {layer.identifier} seq {layer.sequence_number}"
    if layer.type == icmpv4.DESTINATION_UNREACHABLE and layer.code == icmpv4.FRAGMENTATION_NEEDED:
        return f"{text} fragmentation needed mtu {layer.next_hop_mtu}"
    return f"{text} code {layer.code}"


def _icmpv6_text(layer) -> str:
    text = "icmpv6 " + icmpv6.TYPE_NAMES.get(layer.type, f"type {layer.type}")
    if layer.type in icmpv6.ECHO_TYPES:
        return f"{text} id {layer.identifier} seq {layer.sequence_number}"
    if layer.type == icmpv6.PACKET_TOO_BIG:
        return f"{text} mtu {layer.mtu}"
    if layer.type in icmpv6.NEIGHBOR_TYPES:
        return f"{text} target {ip_to_text(layer.target_address)}"
    return f"{text} code {layer.code}"


def _arp_text(layer) -> str:
    sender, target = ip_to_text(layer.sender_protocol_address), ip_to_text(layer.target_protocol_address)
    if layer.operation == arp.REQUEST:
        return f"arp who-has {target} tell {sender}"
    if layer.operation == arp.REPLY:
        return f"arp reply {sender} is-at {layer.sender_hardware_address.hex(':')}"
    return f"arp operation {layer.operation} {sender} > {target}"


def _gre_text(layer) -> str:
    text = f"gre protocol {layer.protocol:#06x}"
    if layer.key is not None:
        text += f" key {layer.key}"
    if layer.sequence_number is not None:
        text += f" seq {layer.sequence_number}"
    return text


_SIMPLE = {
    arp.Repr: _arp_text,
    vxlan.Repr: lambda layer: f"vxlan vni {layer.vni}",
    geneve.Repr: lambda layer: f"geneve vni {layer.vni}" + (f" options {len(layer.options)}" if layer.options else ""),
    nvgre.Repr: lambda layer: f"nvgre vsid {layer.vsid} flow_id {layer.flow_id}",
    gre.Repr: _gre_text,
    udp.Repr: lambda layer: f"udp {layer.src_port} > {layer.dst_port}",
    tcp.Repr: lambda layer: f"tcp {layer.src_port} > {layer.dst_port} [{tcp.flag_letters(layer.flags)}]",
    icmpv4.Repr: _icmpv4_text,
    icmpv6.Repr: _icmpv6_text,
}
