"""scapy as an independent oracle (test-only; GPL, never imported from src/).

Frames netvirt builds must read in scapy as the same fields with valid checksums; frames scapy
builds must dissect in netvirt to what scapy reads in them. ``scapy_layers`` renders scapy's
reading in netvirt's ``to_json`` shape so the two compare as plain data.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS,
                                ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                                IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import NoPayload, Padding, Raw

from netvirt.wire import build, dissect, encapsulate, ethernet, geneve, icmpv4, icmpv6, ipv4, tcp, to_json, udp
from wire_strategies import (ethernet_repr, inner_frame_layers, ipv4_address, ipv6_address, payload, stacks,
                             tags, u8, u16, u24, u32, whole_ipv4, whole_ipv6)

ICMPV6_WITH_ADDRESS = (ICMPv6ND_NS, ICMPv6ND_NA)


# -- scapy's reading, in netvirt's JSON shape -------------------------------------------------------


def scapy_layers(packet) -> list[dict]:
    """What scapy read, layer by layer, as netvirt's ``to_json`` would write it."""
    layers = []
    layer = packet
    while not isinstance(layer, (NoPayload, Raw, Padding)):
        layer = RENDER[_kind(layer)](layer, layers)
    return layers


def _kind(layer):
    for kind in RENDER:
        if isinstance(layer, kind):
            return kind
    raise AssertionError(f"scapy decoded a layer netvirt does not: {layer.summary()}")


def _ether(layer, layers):
    vlans, tpid, inner = [], layer.type, layer.payload
    while isinstance(inner, (Dot1Q, Dot1AD)):
        vlans.append({"vlan_id": inner.vlan, "priority": inner.prio, "drop_eligible": bool(inner.dei), "tpid": tpid})
        tpid, inner = inner.type, inner.payload
    layers.append({"layer": "ethernet", "src": layer.src, "dst": layer.dst, "ethertype": tpid, "vlans": vlans})
    return inner


def _arp(layer, layers):
    layers.append({"layer": "arp", "operation": layer.op, "sender_hardware_address": layer.hwsrc,
                   "sender_protocol_address": layer.psrc, "target_hardware_address": layer.hwdst,
                   "target_protocol_address": layer.pdst})
    return NoPayload()


def _ip(layer, layers):
    options = b"".join(bytes(option) for option in layer.options)
    layers.append({"layer": "ipv4", "src": layer.src, "dst": layer.dst, "protocol": layer.proto, "ttl": layer.ttl,
                   "identification": layer.id, "dont_fragment": bool(layer.flags.DF),
                   "more_fragments": bool(layer.flags.MF), "fragment_offset": layer.frag, "dscp": layer.tos >> 2,
                   "ecn": layer.tos & 3, "options": options.hex()})
    return NoPayload() if layer.flags.MF or layer.frag else layer.payload


def _ipv6(layer, layers):
    inner, fragment = layer.payload, None
    next_header = layer.nh
    while isinstance(inner, (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment)):
        if isinstance(inner, IPv6ExtHdrFragment):
            fragment = {"identification": inner.id, "fragment_offset": inner.offset, "more_fragments": bool(inner.m)}
        next_header, inner = inner.nh, inner.payload
    layers.append({"layer": "ipv6", "src": layer.src, "dst": layer.dst, "next_header": next_header,
                   "hop_limit": layer.hlim, "traffic_class": layer.tc, "flow_label": layer.fl, "fragment": fragment})
    if fragment and (fragment["more_fragments"] or fragment["fragment_offset"]):
        return NoPayload()
    return inner


def _udp(layer, layers):
    layers.append({"layer": "udp", "src_port": layer.sport, "dst_port": layer.dport})
    return layer.payload


def _tcp(layer, layers):
    field = layer.get_field("options")
    options = []
    for name, value in layer.options:
        if name == "EOL":
            break
        encoded = field.i2m(layer, [(name, value)])  # scapy's own encoding of what it parsed
        options.append({"kind": encoded[0], "data": "" if encoded[0] == 1 else encoded[2:encoded[1]].hex()})
    layers.append({"layer": "tcp", "src_port": layer.sport, "dst_port": layer.dport, "sequence_number": layer.seq,
                   "acknowledgment_number": layer.ack, "flags": int(layer.flags), "window": layer.window,
                   "urgent_pointer": layer.urgptr, "options": options})
    return layer.payload


def _icmp(layer, layers):
    fields = {"layer": "icmpv4", "type": layer.type, "code": layer.code}
    if layer.type in (0, 8):
        fields.update(identifier=layer.id, sequence_number=layer.seq)
    elif layer.type == 3:
        fields.update(next_hop_mtu=layer.nexthopmtu)
    else:
        fields.update(rest_of_header=int.from_bytes(bytes(layer)[4:8], "big"))
    layers.append(fields)
    return layer.payload if layer.type in icmpv4.ERROR_TYPES else NoPayload()


def _icmpv6(layer, layers):
    fields = {"layer": "icmpv6", "type": layer.type, "code": layer.code}
    if isinstance(layer, (ICMPv6EchoRequest, ICMPv6EchoReply)):
        fields.update(identifier=layer.id, sequence_number=layer.seq)
    elif isinstance(layer, ICMPv6PacketTooBig):
        fields.update(mtu=layer.mtu)
    elif isinstance(layer, ICMPV6_WITH_ADDRESS):
        advertisement = isinstance(layer, ICMPv6ND_NA)
        option = layer.payload
        address = option.lladdr if isinstance(option, (ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr)) else ""
        fields.update(target_address=layer.tgt, router=advertisement and bool(layer.R),
                      solicited=advertisement and bool(layer.S), override=advertisement and bool(layer.O),
                      link_layer_address=address)
        layers.append(fields)
        return NoPayload()
    else:
        fields.update(rest_of_header=int.from_bytes(bytes(layer)[4:8], "big"))
    layers.append(fields)
    return layer.payload if layer.type in icmpv6.ERROR_TYPES else NoPayload()


def _vxlan(layer, layers):
    layers.append({"layer": "vxlan", "vni": layer.vni})
    return layer.payload


def _geneve(layer, layers):
    options = [{"class": option.classid, "type": option.type, "data": option.data.hex()} for option in layer.options]
    layers.append({"layer": "geneve", "vni": layer.vni, "protocol": layer.proto, "options": options,
                   "oam": bool(layer.oam)})
    return layer.payload


def _gre(layer, layers):
    if layer.key_present and layer.proto == 0x6558 and not layer.chksum_present and not layer.seqnum_present:
        layers.append({"layer": "nvgre", "vsid": layer.key >> 8, "flow_id": layer.key & 0xFF})
    else:
        layers.append({"layer": "gre", "protocol": layer.proto, "checksum_present": bool(layer.chksum_present),
                       "key": layer.key if layer.key_present else None,
                       "sequence_number": layer.sequence_number if layer.seqnum_present else None})
    return layer.payload


RENDER = {Ether: _ether, ARP: _arp, IP: _ip, IPv6: _ipv6, UDP: _udp, TCP: _tcp, ICMP: _icmp,
          ICMPv6EchoRequest: _icmpv6, ICMPv6EchoReply: _icmpv6, ICMPv6PacketTooBig: _icmpv6,
          ICMPv6ND_NS: _icmpv6, ICMPv6ND_NA: _icmpv6, ICMPv6DestUnreach: _icmpv6, ICMPv6TimeExceeded: _icmpv6,
          VXLAN: _vxlan, GENEVE: _geneve, GRE: _gre}


def scapy_recomputes_checksums(frame: bytes) -> bytes:
    """The frame with every checksum recomputed by scapy (a zero UDP checksum, "none", is kept)."""
    packet = Ether(frame)
    layer = packet
    while not isinstance(layer, NoPayload):
        if "chksum" in layer.fields and layer.chksum is not None and not (isinstance(layer, UDP) and layer.chksum == 0):
            layer.chksum = None
        layer = layer.payload
    return bytes(packet)


def body_for_scapy(layers, body: bytes) -> bytes:
    """No bytes after an ARP packet: scapy reads them as padding and leaves them out of the
    checksum of an enclosing UDP datagram (a scapy quirk; tshark agrees with netvirt)."""
    return b"" if layers[-1].layer == "arp" else body


# -- netvirt builds, scapy reads ---------------------------------------------------------------------

# scapy decodes 802.1Q/802.1ad tags (not 0x9100), and IPv4 options are kept to ones it re-encodes as read.
scapy_tags = tags.filter(lambda tag: tag.tpid in (ethernet.VLAN, ethernet.SERVICE_VLAN))
scapy_options = st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x07\x07\x04" + bytes(5)])
# scapy reads VXLAN after any of these UDP ports, source or destination; netvirt after destination
# port 4789 only (RFC 7348 §5: the source port is flow entropy).
SCAPY_VXLAN_PORTS = frozenset((4789, 4790, 6633, 8472, 48879))


def scapy_compatible(layers, data):
    """Tune generated stacks to what scapy decodes the same way (see the strategies above)."""
    out = []
    for layer in layers:
        if isinstance(layer, ethernet.Repr) and layer.vlans:
            layer = layer._replace(vlans=tuple(data.draw(st.lists(scapy_tags, max_size=2))))
        elif isinstance(layer, ipv4.Repr):
            layer = layer._replace(options=data.draw(scapy_options))
        elif isinstance(layer, tcp.Repr):
            layer = layer._replace(options=data.draw(scapy_tcp_options))
        elif isinstance(layer, udp.Repr) and layer.dst_port != udp.VXLAN_PORT:
            layer = layer._replace(src_port=_not_vxlan_in_scapy(layer.src_port),
                                   dst_port=_not_vxlan_in_scapy(layer.dst_port))
        out.append(layer)
    return out


scapy_plain_port = u16.filter(lambda port: port not in SCAPY_VXLAN_PORTS and port != udp.GENEVE_PORT)


def _not_vxlan_in_scapy(port: int) -> int:
    return port ^ 1 if port in SCAPY_VXLAN_PORTS else port  # no port ^ 1 is in the set


scapy_tcp_options = st.lists(st.sampled_from([
    tcp.Option(tcp.NO_OPERATION), tcp.Option(tcp.MAXIMUM_SEGMENT_SIZE, b"\x05\xb4"), tcp.Option(tcp.WINDOW_SCALE, b"\x07"),
    tcp.Option(tcp.SACK_PERMITTED), tcp.Option(tcp.TIMESTAMPS, bytes(range(8))), tcp.Option(tcp.SACK, bytes(range(8))),
    tcp.Option(200, b"\x01\x02\x03")]), max_size=3).map(tuple)


@settings(max_examples=120, deadline=None)
@given(stacks(), payload, st.data())
def test_netvirt_stacks_read_the_same_in_scapy(layers, body, data):
    layers = scapy_compatible(layers, data)
    frame = build(layers, body_for_scapy(layers, body))
    assert scapy_layers(Ether(frame)) == to_json(layers)
    assert scapy_recomputes_checksums(frame) == frame


@st.composite
def icmp_frames(draw):
    """[Ethernet, IP, ICMP] for every supported message, errors quoting a whole UDP datagram."""
    family = draw(st.sampled_from([4, 6]))
    quoted_ip = draw(whole_ipv4 if family == 4 else whole_ipv6)
    quoted_ip = quoted_ip._replace(protocol=17) if family == 4 else quoted_ip._replace(next_header=17)
    quoted = [quoted_ip, udp.Repr(draw(u16), draw(u16.filter(lambda port: port not in (4789, 6081))))]
    if family == 4:
        kind = draw(st.sampled_from([0, 8, 3, 11]))
        if kind in icmpv4.ECHO_TYPES:
            message = icmpv4.Repr(kind, 0, draw(u16), draw(u16))
        elif kind == 3:
            message = icmpv4.Repr(kind, draw(st.integers(0, 15)), next_hop_mtu=draw(u16))
        else:
            message = icmpv4.Repr(kind, draw(st.integers(0, 1)))
        ip = draw(whole_ipv4)._replace(protocol=ipv4.ICMP, options=b"")
    else:
        kind = draw(st.sampled_from([1, 2, 3, 128, 129, 135, 136]))
        if kind in icmpv6.ECHO_TYPES:
            message = icmpv6.Repr(kind, 0, draw(u16), draw(u16))
        elif kind == icmpv6.PACKET_TOO_BIG:
            message = icmpv6.Repr(kind, 0, mtu=draw(u32))
        elif kind in icmpv6.NEIGHBOR_TYPES:
            flags = draw(st.tuples(st.booleans(), st.booleans(), st.booleans())) if kind == 136 else (False,) * 3
            message = icmpv6.Repr(kind, 0, target_address=draw(ipv6_address), router=flags[0], solicited=flags[1],
                                  override=flags[2], link_layer_address=draw(st.just(b"") | st.binary(min_size=6, max_size=6)))
        else:
            message = icmpv6.Repr(kind, draw(st.integers(0, 6)))
        ip = draw(whole_ipv6)._replace(next_header=ipv4.ICMPV6)
    frame_layers = [draw(ethernet_repr)._replace(ethertype=ethernet.IPV4 if family == 4 else ethernet.IPV6, vlans=()),
                    ip, message]
    if message.is_error:
        quoted_ip = quoted_ip._replace(options=b"") if family == 4 else quoted_ip._replace(fragment=None)
        quoted = [quoted_ip, quoted[1]]
        return frame_layers + quoted, b""
    if kind in icmpv6.NEIGHBOR_TYPES and family == 6:
        return frame_layers, b""
    return frame_layers, draw(payload)


@settings(max_examples=150, deadline=None)
@given(icmp_frames())
def test_netvirt_icmp_reads_the_same_in_scapy(frame_and_body):
    layers, body = frame_and_body
    frame = build(layers, body)
    assert scapy_layers(Ether(frame)) == to_json(layers)
    assert scapy_recomputes_checksums(frame) == frame
    assert dissect(frame) == layers


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["vxlan", "geneve", "nvgre"]), u24, st.sampled_from([4, 6]), inner_frame_layers(), payload,
       st.lists(st.builds(geneve.Option, u16, u8, st.sampled_from([b"", b"\0\1\2\3", bytes(range(8))])), max_size=3))
def test_encapsulate_reads_the_same_in_scapy(encap, vni, family, inner_layers, body, options):
    inner_layers = [layer._replace(options=b"") if isinstance(layer, ipv4.Repr) else layer for layer in inner_layers]
    inner_layers = [layer._replace(vlans=()) if isinstance(layer, ethernet.Repr) else layer for layer in inner_layers]
    inner_layers = [layer._replace(options=()) if isinstance(layer, tcp.Repr) else layer for layer in inner_layers]
    inner = build(inner_layers, body_for_scapy(inner_layers, body))
    outer = ("192.0.2.1", "192.0.2.2") if family == 4 else ("2001:db8::1", "2001:db8::2")
    frame = encapsulate(inner, encap=encap, vni=vni, outer_src=outer[0], outer_dst=outer[1],
                        outer_src_mac="00:00:5e:00:53:01", outer_dst_mac="00:00:5e:00:53:02",
                        options=tuple(options) if encap == "geneve" else ())
    packet = Ether(frame)
    read = scapy_layers(packet)
    assert read[1]["src"] == outer[0] and read[1]["dst"] == outer[1]
    tunnel = read[3] if encap != "nvgre" else read[2]
    if encap == "nvgre":
        assert tunnel == {"layer": "nvgre", "vsid": vni, "flow_id": 0}
    else:
        assert tunnel["vni"] == vni
        assert read[2]["dst_port"] == (4789 if encap == "vxlan" else 6081)
        assert 49152 <= read[2]["src_port"] <= 65535
        if family == 4:
            assert packet[UDP].chksum == 0  # RFC 7348 §5: SHOULD be zero over IPv4
    if encap == "geneve":
        assert tunnel["options"] == [option.to_dict() for option in options]
    assert read[-len(inner_layers):] == to_json(inner_layers)
    assert scapy_recomputes_checksums(frame) == frame


# -- scapy builds, netvirt reads ---------------------------------------------------------------------

mac_text = st.binary(min_size=6, max_size=6).map(lambda raw: raw.hex(":"))
ipv4_text = ipv4_address.map(lambda raw: ".".join(map(str, raw)))
ipv6_text = ipv6_address.map(lambda raw: str(__import__("ipaddress").IPv6Address(raw)))


@st.composite
def scapy_inner(draw):
    """A scapy Ethernet frame: IPv4/IPv6 with TCP, UDP or ICMP echo, or ARP, maybe VLAN-tagged."""
    frame = Ether(src=draw(mac_text), dst=draw(mac_text))
    if draw(st.booleans()):
        frame = frame / Dot1Q(vlan=draw(st.integers(0, 4095)), prio=draw(st.integers(0, 7)), dei=draw(st.integers(0, 1)))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "arp"]))
    if kind == "arp":
        return frame / ARP(op=draw(st.integers(1, 2)), hwsrc=draw(mac_text), psrc=draw(ipv4_text),
                           hwdst=draw(mac_text), pdst=draw(ipv4_text))
    if draw(st.booleans()):
        ip = IP(src=draw(ipv4_text), dst=draw(ipv4_text), ttl=draw(u8), id=draw(u16), tos=draw(u8),
                flags=draw(st.sampled_from(["", "DF"])),
                options=draw(st.sampled_from([[], [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
                                              [IPOption_RR(routers=["10.0.0.1"])]])))
        icmp = ICMP(type=draw(st.sampled_from([0, 8])), id=draw(u16), seq=draw(u16))
    else:
        ip = IPv6(src=draw(ipv6_text), dst=draw(ipv6_text), hlim=draw(u8), tc=draw(u8), fl=draw(st.integers(0, 2**20 - 1)))
        icmp = draw(st.sampled_from([ICMPv6EchoRequest, ICMPv6EchoReply]))(id=draw(u16), seq=draw(u16))
    if kind == "tcp":
        upper = TCP(sport=draw(u16), dport=draw(u16), seq=draw(u32), ack=draw(u32), flags=draw(u8), window=draw(u16),
                    options=draw(st.sampled_from([[], [("MSS", 1460), ("NOP", None), ("WScale", 7)],
                                                  [("SAckOK", b""), ("Timestamp", (1, 2))]])))
    elif kind == "udp":
        upper = UDP(sport=draw(scapy_plain_port), dport=draw(scapy_plain_port))
    else:
        upper = icmp
    return frame / ip / upper / Raw(draw(payload))


@st.composite
def scapy_frames(draw, depth=2):
    """scapy frames: a plain frame in 0..depth tunnels (VXLAN, Geneve with options, NVGRE; IPv4 or IPv6 underlay)."""
    frame = draw(scapy_inner())
    for _ in range(draw(st.integers(0, depth))):
        outer = Ether(src=draw(mac_text), dst=draw(mac_text))
        underlay = IP(src=draw(ipv4_text), dst=draw(ipv4_text), id=draw(u16)) if draw(st.booleans()) else \
            IPv6(src=draw(ipv6_text), dst=draw(ipv6_text))
        encap = draw(st.sampled_from(["vxlan", "geneve", "nvgre"]))
        if encap == "vxlan":
            tunnel = UDP(sport=draw(u16), dport=4789) / VXLAN(vni=draw(u24), flags=0x08)
        elif encap == "geneve":
            options = draw(st.lists(st.tuples(u16, u8, st.integers(0, 3)), max_size=3))
            tunnel = UDP(sport=draw(scapy_plain_port), dport=6081) / GENEVE(vni=draw(u24), proto=0x6558, options=[
                GeneveOptions(classid=option_class, type=option_type, data=bytes(range(4 * words)))
                for option_class, option_type, words in options])
        else:
            tunnel = GRE(key_present=1, key=draw(u32), proto=0x6558)
        frame = outer / underlay / tunnel / frame
    return frame


@settings(max_examples=150, deadline=None)
@given(scapy_frames())
def test_scapy_frames_dissect_to_what_scapy_reads(packet):
    frame = bytes(packet)
    assert to_json(dissect(frame)) == scapy_layers(Ether(frame))


def test_scapy_geneve_options_and_nvgre_fields_by_value():
    inner = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    packet = (Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1234, dport=6081)
              / GENEVE(vni=0xABCDEF, proto=0x6558, options=[GeneveOptions(classid=0x0102, type=0x80, data=b"\x00\x01\x02\x03")])
              / Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(key_present=1, key=0x00138801, proto=0x6558) / inner)
    layers = to_json(dissect(bytes(packet)))
    assert layers[3] == {"layer": "geneve", "vni": 0xABCDEF, "protocol": 0x6558, "oam": False,
                         "options": [{"class": 0x0102, "type": 0x80, "data": "00010203"}]}
    assert layers[6] == {"layer": "nvgre", "vsid": 5000, "flow_id": 1}
    assert layers[8]["src"] == "10.0.0.1" and layers[9]["dst_port"] == 2
