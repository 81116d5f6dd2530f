"""Hypothesis strategies for graph objects, and one hand-written consistent example graph."""

import string
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface, ip_network

from hypothesis import strategies as st

from netvirt.graph import (
    ACCEPT,
    DROP,
    KINDS,
    Affinity,
    Attachment,
    Bridge,
    Chain,
    CtState,
    Device,
    DeviceHook,
    DeviceKind,
    DeviceRef,
    Dnat,
    FdbEntry,
    GeneveOption,
    HookKind,
    HostGraph,
    Hypervisor,
    HypervisorSwitch,
    Link,
    Macvlan,
    MacvlanMode,
    Masquerade,
    Match,
    Mode,
    Namespace,
    NamespaceKind,
    NatTarget,
    Neighbour,
    NetfilterHook,
    NetworkGraph,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Route,
    RouteType,
    RpFilter,
    Rule,
    Segment,
    Snat,
    Socket,
    Stage,
    SriovVf,
    SwitchMode,
    Tunnel,
    Verdict,
    Veth,
    Wsl2Gateway,
    Wsl2Mode,
)

names = st.text(alphabet=string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=15)
texts = st.text(max_size=20)  # free text: levels, techniques, comments (any unicode)
ipv4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
addresses = st.one_of(ipv4, ipv6)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b))


FAMILY_ADDRESSES = {4: ipv4, 6: ipv6}
FAMILY_NETWORKS = {
    family: address.flatmap(lambda a: st.integers(0, a.max_prefixlen).map(lambda n: ip_network((a, n), strict=False)))
    for family, address in FAMILY_ADDRESSES.items()
}
networks = FAMILY_NETWORKS[4] | FAMILY_NETWORKS[6]
interfaces = addresses.flatmap(lambda a: st.integers(0, a.max_prefixlen).map(lambda n: ip_interface((a, n))))
ports = st.integers(0, 65535)
port_ranges = ports.flatmap(lambda first: st.integers(first, 65535).map(lambda last: PortRange(first, last)))
ct_sets = st.none() | st.frozensets(st.sampled_from(CtState), min_size=1)


@st.composite
def matches(draw):
    family = draw(st.sampled_from([4, 6]))
    net = FAMILY_NETWORKS[family]
    proto = draw(st.none() | st.sampled_from([Proto.TCP, Proto.UDP, Proto.GRE, Proto.ICMP if family == 4 else Proto.ICMPV6]))
    with_ports = proto in (Proto.TCP, Proto.UDP)
    with_icmp = proto in (Proto.ICMP, Proto.ICMPV6)
    icmp_type = draw(st.none() | st.integers(0, 255)) if with_icmp else None
    return Match(
        src=draw(st.none() | net),
        dst=draw(st.none() | net),
        proto=proto,
        src_ports=draw(st.none() | port_ranges) if with_ports else None,
        dst_ports=draw(st.none() | port_ranges) if with_ports else None,
        icmp_type=icmp_type,
        icmp_code=draw(st.none() | st.integers(0, 255)) if icmp_type is not None else None,
        ct_states=draw(ct_sets),
        in_iface=draw(st.none() | names),
        out_iface=draw(st.none() | names),
        mark=draw(st.none() | st.integers(0, 2**32 - 1)),
    )


nat_targets = st.builds(NatTarget, ipv4, st.none() | st.integers(1, 65535))
actions = st.one_of(
    st.just(ACCEPT),
    st.just(DROP),
    st.builds(Reject, st.sampled_from(RejectWith)),
    st.builds(
        Dnat,
        targets=st.lists(nat_targets, min_size=1, max_size=3).map(tuple),
        affinity=st.sampled_from(Affinity),
        affinity_timeout=st.integers(1, 86400),
    ),
    st.builds(Snat, addresses, st.none() | port_ranges),
    st.builds(Masquerade, st.none() | port_ranges),
)
rules = st.builds(
    Rule,
    match=matches(),
    action=actions,
    log=st.none() | texts,
    set_mark=st.none() | st.integers(0, 2**32 - 1),
    comment=texts,
)
chains = st.builds(
    Chain,
    hook=st.sampled_from(NetfilterHook),
    rules=st.lists(rules, max_size=3).map(tuple),
    policy=st.sampled_from(Verdict),
)
fdb_entries = st.one_of(st.builds(FdbEntry, macs, device=names), st.builds(FdbEntry, macs, remote=addresses))

CONFIGS = {
    DeviceKind.VETH: st.builds(Veth, names, names),
    DeviceKind.BRIDGE: st.builds(
        Bridge, learning=st.booleans(), ageing_time=st.integers(0, 1000), fdb=st.lists(fdb_entries, max_size=3)
    ),
    DeviceKind.MACVLAN: st.builds(Macvlan, st.sampled_from(MacvlanMode)),
    DeviceKind.SOCKET: st.builds(
        Socket, proto=st.sampled_from([Proto.TCP, Proto.UDP]), port=st.integers(1, 65535),
        address=st.none() | addresses, app=texts,
    ),
    DeviceKind.HYPERVISOR_SWITCH: st.builds(HypervisorSwitch, st.sampled_from(Hypervisor), st.sampled_from(SwitchMode)),
    DeviceKind.WSL2_GATEWAY: st.builds(Wsl2Gateway, st.sampled_from(Wsl2Mode)),
    DeviceKind.SRIOV_VF: st.builds(SriovVf, st.integers(0, 255), st.none() | st.integers(1, 4094)),
}
geneve_options = st.builds(
    GeneveOption,
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.integers(0, 31).flatmap(lambda words: st.binary(min_size=4 * words, max_size=4 * words)),
)
for _kind in (DeviceKind.VXLAN, DeviceKind.GENEVE, DeviceKind.NVGRE):
    CONFIGS[_kind] = st.builds(
        Tunnel,
        vni=st.integers(0, 2**24 - 1),
        local=st.none() | addresses,
        remote=st.none() | addresses,
        dst_port=st.integers(1, 65535),
        src_ports=st.integers(1, 65535).flatmap(lambda first: st.integers(first, 65535).map(lambda last: PortRange(first, last))),
        ttl=st.integers(1, 255),
        udp_checksum=st.booleans(),
        learning=st.booleans(),
        flood=st.lists(addresses, max_size=3),
        fdb=st.lists(st.builds(FdbEntry, macs, remote=addresses), max_size=3),
        options=st.lists(geneve_options, max_size=2).map(tuple) if _kind is DeviceKind.GENEVE else st.just(()),
    )
assert set(CONFIGS) == {kind for kind, info in KINDS.items() if info.config is not None}

device_hooks = st.builds(
    DeviceHook,
    kind=st.sampled_from(HookKind),
    program=names,
    rules=st.lists(rules, max_size=2).map(tuple),
    policy=st.sampled_from(Verdict),
)


@st.composite
def devices(draw, namespace=names):
    kind = draw(st.sampled_from(DeviceKind))
    overrides = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "mode": st.sampled_from(Mode),
                "level": texts,
                "technique": texts,
                "mtu": st.integers(68, 65535),
                "mac": macs,
                "addresses": st.lists(interfaces, max_size=3).map(tuple),
                "master": names,
                "parent": names,
                "up": st.booleans(),
                "hooks": st.lists(device_hooks, max_size=2).map(tuple),
                "origin": texts,
            },
        )
    )
    if kind in CONFIGS:
        overrides["config"] = draw(CONFIGS[kind])
    return Device.of(kind, draw(names), draw(namespace), **overrides)


@st.composite
def routes(draw):
    dst = draw(networks)
    same = FAMILY_ADDRESSES[dst.version]
    kind = draw(st.sampled_from(RouteType))
    via = draw(st.none() | same)
    dev = draw(names) if kind is RouteType.UNICAST and via is None else draw(st.none() | names)
    return Route(dst=dst, via=via, dev=dev, metric=draw(st.integers(0, 2**32 - 1)), kind=kind, src=draw(st.none() | same))


namespaces = st.builds(
    Namespace,
    name=names,
    kind=st.sampled_from(NamespaceKind),
    routes=st.lists(routes(), max_size=3).map(tuple),
    neighbours=st.lists(st.builds(Neighbour, addresses, macs, names), max_size=2).map(tuple),
    ip_forward=st.booleans(),
    ipv6_forward=st.booleans(),
    rp_filter=st.sampled_from(RpFilter),
    filter=st.lists(chains, max_size=2).map(tuple),
    nat=st.lists(chains, max_size=2).map(tuple),
    conntrack_zone=st.integers(0, 65535),
    origin=texts,
)
links = st.builds(Link, a=st.builds(DeviceRef, names, names), b=st.builds(DeviceRef, names, names), technique=texts)
stages = st.builds(
    Stage,
    name=names,
    mode=st.sampled_from(Mode),
    level=texts,
    technique=texts,
    places=st.lists(names, min_size=1, max_size=3).map(tuple),
)
host_graphs = st.builds(
    HostGraph,
    host=names,
    namespaces=st.lists(namespaces, max_size=3).map(tuple),
    devices=st.lists(devices(), max_size=6).map(tuple),
    links=st.lists(links, max_size=2).map(tuple),
    stages=st.lists(stages, max_size=2).map(tuple),
)
segments = st.builds(
    Segment,
    name=names,
    attachments=st.lists(st.builds(Attachment, names, names, names), max_size=3).map(tuple),
    mtu=st.integers(68, 65535),
)
network_graphs = st.builds(
    NetworkGraph,
    hosts=st.lists(host_graphs, max_size=2).map(tuple),
    segments=st.lists(segments, max_size=2).map(tuple),
)


def example_host(host: str = "host1", underlay: str = "192.168.1.10", peer: str = "192.168.1.11") -> HostGraph:
    """A small consistent host: NIC, a bridge with a VXLAN port, one pod on a veth pair with an
    HTTP listener, a forward filter and a service DNAT."""
    a = ip_address
    return HostGraph(
        host=host,
        namespaces=(
            Namespace(
                name=host,
                kind=NamespaceKind.HOST,
                ip_forward=True,
                routes=(Route(dst=ip_network("0.0.0.0/0"), via=a("192.168.1.1"), dev="eth0"),),
                filter=(
                    Chain(
                        hook=NetfilterHook.FORWARD,
                        policy=Verdict.DROP,
                        rules=(
                            Rule(match=Match(ct_states=frozenset({CtState.ESTABLISHED, CtState.RELATED})), action=ACCEPT),
                            Rule(
                                match=Match(dst=ip_network("10.244.1.5/32"), proto=Proto.TCP, dst_ports=PortRange.single(8080)),
                                action=ACCEPT,
                                comment="policy allow-web",
                            ),
                        ),
                    ),
                ),
                nat=(
                    Chain(
                        hook=NetfilterHook.PREROUTING,
                        rules=(
                            Rule(
                                match=Match(dst=ip_network("10.96.0.10/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
                                action=Dnat(targets=(NatTarget(a("10.244.1.5"), 8080),)),
                            ),
                        ),
                    ),
                ),
            ),
            Namespace(
                name="pod1",
                kind=NamespaceKind.POD,
                routes=(Route(dst=ip_network("0.0.0.0/0"), via=a("10.244.1.1"), dev="eth0"),),
            ),
        ),
        devices=(
            Device.of(DeviceKind.NIC, "eth0", host, mac="02:00:00:00:00:01", addresses=(ip_interface(f"{underlay}/24"),)),
            Device.of(DeviceKind.BRIDGE, "cni0", host, config=Bridge(), addresses=(ip_interface("10.244.1.1/24"),)),
            Device.of(
                DeviceKind.VXLAN,
                "vxlan100",
                host,
                config=Tunnel(vni=100, local=a(underlay), flood=(a(peer),)),
                master="cni0",
                parent="eth0",
                mtu=1450,
            ),
            Device.of(DeviceKind.VETH, "veth-pod1", host, config=Veth("eth0", "pod1"), master="cni0"),
            Device.of(DeviceKind.VETH, "eth0", "pod1", config=Veth("veth-pod1", host), addresses=(ip_interface("10.244.1.5/24"),)),
            Device.of(DeviceKind.SOCKET, "http", "pod1", config=Socket(proto=Proto.TCP, port=8080, app="nginx"), level="K8s App"),
        ),
    )


def example_network() -> NetworkGraph:
    """Two example hosts joined by one underlay segment."""
    return NetworkGraph(
        hosts=(example_host("host1", "192.168.1.10", "192.168.1.11"), example_host("host2", "192.168.1.11", "192.168.1.10")),
        segments=(
            Segment(name="underlay", attachments=(Attachment("host1", "host1", "eth0"), Attachment("host2", "host2", "eth0"))),
        ),
    )
