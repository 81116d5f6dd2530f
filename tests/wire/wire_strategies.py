"""Hypothesis strategies for every wire Repr and for consistent nested stacks (tests only)."""

from hypothesis import strategies as st

# st.builds on a NamedTuple also draws the defaulted fields; where a Repr must leave some at their
# defaults, the strategies map st.tuples instead.

from netvirt.wire import arp, ethernet, geneve, gre, icmpv4, icmpv6, ipv4, ipv6, nvgre, tcp, udp, vxlan

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
mac = st.binary(min_size=6, max_size=6)
ipv4_address = st.binary(min_size=4, max_size=4)
ipv6_address = st.binary(min_size=16, max_size=16)
payload = st.binary(max_size=64)

tags = st.builds(ethernet.Tag, st.integers(0, 4095), st.integers(0, 7), st.booleans(),
                 st.sampled_from(sorted(ethernet.TAG_PROTOCOLS)))
ethertype = u16.filter(lambda value: value not in ethernet.TAG_PROTOCOLS)
ethernet_repr = st.builds(ethernet.Repr, mac, mac, ethertype, st.lists(tags, max_size=2).map(tuple))

arp_repr = st.builds(arp.Repr, u16, mac, ipv4_address, mac, ipv4_address)

ipv4_options = st.integers(0, 10).flatmap(lambda words: st.binary(min_size=4 * words, max_size=4 * words))
ipv4_repr = st.builds(ipv4.Repr, ipv4_address, ipv4_address, u8, u8, u16, st.booleans(), st.booleans(),
                      st.integers(0, 8191), st.integers(0, 63), st.integers(0, 3), ipv4_options)

extension_headers = {ipv6.HOP_BY_HOP, ipv6.ROUTING, ipv6.FRAGMENT, ipv6.DESTINATION_OPTIONS}
fragment = st.builds(ipv6.Fragment, u32, st.integers(0, 8191), st.booleans())
ipv6_repr = st.builds(ipv6.Repr, ipv6_address, ipv6_address, u8.filter(lambda value: value not in extension_headers),
                      u8, u8, st.integers(0, (1 << 20) - 1), st.none() | fragment)


@st.composite
def icmpv4_repr(draw):
    kind = draw(st.sampled_from([0, 3, 8, 11]) | u8)
    code = draw(u8)
    if kind in icmpv4.ECHO_TYPES:
        return icmpv4.Repr(kind, code, identifier=draw(u16), sequence_number=draw(u16))
    if kind == icmpv4.DESTINATION_UNREACHABLE:
        return icmpv4.Repr(kind, code, next_hop_mtu=draw(u16))
    return icmpv4.Repr(kind, code, rest_of_header=draw(u32))


@st.composite
def icmpv6_repr(draw):
    kind = draw(st.sampled_from([1, 2, 3, 4, 128, 129, 135, 136]) | u8)
    code = draw(u8)
    if kind in icmpv6.ECHO_TYPES:
        return icmpv6.Repr(kind, code, identifier=draw(u16), sequence_number=draw(u16))
    if kind == icmpv6.PACKET_TOO_BIG:
        return icmpv6.Repr(kind, code, mtu=draw(u32))
    if kind in icmpv6.NEIGHBOR_TYPES:
        advertisement = kind == icmpv6.NEIGHBOR_ADVERTISEMENT
        flags = draw(st.tuples(st.booleans(), st.booleans(), st.booleans())) if advertisement else (False,) * 3
        return icmpv6.Repr(kind, code, target_address=draw(ipv6_address), router=flags[0],
                           solicited=flags[1], override=flags[2],
                           link_layer_address=draw(st.just(b"") | mac))
    return icmpv6.Repr(kind, code, rest_of_header=draw(u32))


udp_repr = st.builds(udp.Repr, u16, u16)


@st.composite
def tcp_options(draw):
    options, size = [], 0
    for option in draw(st.lists(st.just(tcp.Option(tcp.NO_OPERATION))
                                | st.builds(tcp.Option, st.integers(2, 255), st.binary(max_size=10)), max_size=6)):
        length = 1 if option.kind == tcp.NO_OPERATION else 2 + len(option.data)
        if size + length > 40:
            break
        options.append(option)
        size += length
    return tuple(options)


tcp_repr = st.builds(tcp.Repr, u16, u16, u32, u32, u8, u16, u16, tcp_options())
vxlan_repr = st.builds(vxlan.Repr, u24)
geneve_option = st.builds(geneve.Option, u16, u8, st.integers(0, 4).flatmap(
    lambda words: st.binary(min_size=4 * words, max_size=4 * words)))
geneve_repr = st.builds(geneve.Repr, u24, u16, st.lists(geneve_option, max_size=4).map(tuple), st.booleans())
gre_repr = st.builds(gre.Repr, u16, st.booleans(), st.none() | u32, st.none() | u32)
nvgre_repr = st.builds(nvgre.Repr, u24, u8)

# -- consistent stacks: linking fields (EtherType, protocol, ports) agree with what follows ----------

TUNNEL_PORTS = {udp.VXLAN_PORT, udp.GENEVE_PORT}
plain_udp = st.builds(udp.Repr, u16, u16.filter(lambda port: port not in TUNNEL_PORTS))
echo_v4 = st.tuples(st.sampled_from(sorted(icmpv4.ECHO_TYPES)), u8, u16, u16).map(lambda fields: icmpv4.Repr(*fields))
echo_v6 = st.tuples(st.sampled_from(sorted(icmpv6.ECHO_TYPES)), u8, u16, u16).map(lambda fields: icmpv6.Repr(*fields))
whole_ipv4 = ipv4_repr.map(lambda ip: ip._replace(more_fragments=False, fragment_offset=0))
whole_ipv6 = ipv6_repr.map(lambda ip: ip if not ip.is_fragment else ip._replace(fragment=None))


@st.composite
def ip_with_transport(draw):
    """[ip, transport] with the IP protocol set to the transport's."""
    family = draw(st.sampled_from([4, 6]))
    transport = draw(st.one_of(tcp_repr, plain_udp, echo_v4 if family == 4 else echo_v6))
    protocol = {tcp.Repr: 6, udp.Repr: 17, icmpv4.Repr: 1, icmpv6.Repr: 58}[type(transport)]
    if family == 4:
        return [draw(whole_ipv4)._replace(protocol=protocol), transport]
    return [draw(whole_ipv6)._replace(next_header=protocol), transport]


def ethernet_for(inner) -> st.SearchStrategy:
    kind = ethernet.IPV4 if isinstance(inner, ipv4.Repr) else ethernet.IPV6
    return ethernet_repr.map(lambda frame: frame._replace(ethertype=kind))


@st.composite
def inner_frame_layers(draw):
    """An Ethernet frame's layers: IP + TCP/UDP/ICMP echo, or ARP."""
    if draw(st.integers(0, 5)) == 0:
        return [draw(ethernet_repr)._replace(ethertype=ethernet.ARP), draw(arp_repr)]
    upper = draw(ip_with_transport())
    return [draw(ethernet_for(upper[0])), *upper]


@st.composite
def tunnel_layers(draw, inner):
    """Outer Ethernet/IP + VXLAN, Geneve or NVGRE around the layer list ``inner`` (an Ethernet frame)."""
    family = draw(st.sampled_from([4, 6]))
    encap = draw(st.sampled_from(["vxlan", "geneve", "nvgre"]))
    if encap == "nvgre":
        tunnel, protocol = [draw(nvgre_repr)], ipv4.GRE
    else:
        port = udp.VXLAN_PORT if encap == "vxlan" else udp.GENEVE_PORT
        header = draw(vxlan_repr) if encap == "vxlan" else draw(geneve_repr)._replace(
            protocol=ethernet.TRANSPARENT_ETHERNET_BRIDGING)
        tunnel, protocol = [udp.Repr(draw(u16), port), header], ipv4.UDP
    if family == 4:
        ip = draw(whole_ipv4)._replace(protocol=protocol)
    else:
        ip = draw(whole_ipv6)._replace(next_header=protocol)
    return [draw(ethernet_for(ip)), ip, *tunnel, *inner]


@st.composite
def stacks(draw, max_depth: int = 2):
    """Layer lists: a plain frame wrapped in 0..max_depth tunnels (VXLAN in VXLAN, Geneve, NVGRE, IPv6 underlay)."""
    layers = draw(inner_frame_layers())
    for _ in range(draw(st.integers(0, max_depth))):
        layers = draw(tunnel_layers(layers))
    return layers
