"""Small device graphs for simulator tests, and an independent checksum oracle (scapy).

``Lab`` builds one or two hosts quickly: ``lab.ns(...)``, ``lab.pod(...)`` (a namespace on a veth
into a bridge), ``lab.network()``. ``assert_valid(frame)`` rebuilds every checksum of a frame
with scapy (the GPL oracle, tests only) and compares byte for byte.
"""

from ipaddress import ip_address, ip_interface, ip_network

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, _ICMPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import bind_layers

from netvirt.graph import (
    Attachment,
    Bridge,
    Device,
    DeviceKind,
    HostGraph,
    Namespace,
    NamespaceKind,
    NetworkGraph,
    Route,
    Segment,
    Socket,
    Veth,
)

bind_layers(UDP, VXLAN, dport=4789)


def frame_ok(raw: bytes) -> bool:
    """True when scapy, recomputing every IPv4/TCP/UDP/ICMP/ICMPv6 checksum (and length) of the
    frame, inner frames included, gets the same bytes. A zero UDP checksum over IPv4 is "none";
    inside an IP fragment only the IP header is checked (the transport checksum spans fragments),
    and the datagram an ICMP error quotes is left as quoted."""
    packet = Ether(raw)
    for layer in packet.iterpayloads():
        if isinstance(layer, IP):
            del layer.chksum, layer.len
            if layer.flags.MF or layer.frag:
                break
        elif isinstance(layer, IPv6):
            del layer.plen
        elif isinstance(layer, UDP):
            if layer.chksum != 0:
                del layer.chksum
            del layer.len
        elif isinstance(layer, (TCP, ICMP)):
            del layer.chksum
            if isinstance(layer, ICMP):
                break  # an error's quote keeps the original lengths and checksums
        elif isinstance(layer, _ICMPv6):
            del layer.cksum
            break
    return bytes(Ether(bytes(packet))) == raw


def assert_valid(raw: bytes) -> None:
    assert frame_ok(raw), f"checksums or lengths differ from scapy's: {Ether(raw).summary()}"


class Lab:
    """One host (or more) under construction; every pod hangs off the host's bridge br0."""

    def __init__(self, host: str = "h1") -> None:
        self.hosts: dict[str, dict] = {}
        self.segments: list[Segment] = []
        self.counter = 0
        self.host(host)
        self.current = host

    def host(self, name: str) -> "Lab":
        self.hosts[name] = {"namespaces": [], "devices": [], "links": []}
        self.current = name
        return self

    def mac(self) -> str:
        self.counter += 1
        return f"02:00:00:00:{self.counter // 256:02x}:{self.counter % 256:02x}"

    def ns(self, name: str, kind: NamespaceKind = NamespaceKind.HOST, **fields) -> str:
        self.hosts[self.current]["namespaces"].append(Namespace(name=name, kind=kind, **fields))
        return name

    def add(self, kind: DeviceKind, name: str, namespace: str, **fields) -> Device:
        if "mac" not in fields and kind not in (DeviceKind.SOCKET, DeviceKind.DPDK_PMD, DeviceKind.AF_XDP_SOCKET,
                                                DeviceKind.NDIS_FILTER, DeviceKind.NIC_ESWITCH):
            fields["mac"] = self.mac()
        if "addresses" in fields:
            fields["addresses"] = tuple(ip_interface(a) for a in fields["addresses"])
        device = Device.of(kind, name, namespace, **fields)
        self.hosts[self.current]["devices"].append(device)
        return device

    def bridge(self, namespace: str = "host", name: str = "br0", address: str | None = "10.0.0.1/24", *,
               mtu: int = 1500, **config) -> Device:
        return self.add(DeviceKind.BRIDGE, name, namespace, config=Bridge(**config), mtu=mtu,
                        addresses=[address] if address else [])

    def pod(self, name: str, address: str, *, gateway: str | None = "10.0.0.1", listen: tuple[str, int] | None = None,
            bridge: str = "br0", host_ns: str = "host", mtu: int = 1500, **namespace) -> Device:
        """A pod namespace on a veth pair into ``bridge``; returns the pod's eth0."""
        routes = [Route(dst=ip_network("0.0.0.0/0" if ":" not in address else "::/0"), via=ip_address(gateway))] \
            if gateway else []
        self.ns(name, NamespaceKind.POD, routes=tuple(routes), **namespace)
        self.add(DeviceKind.VETH, f"v-{name}", host_ns, config=Veth("eth0", name), master=bridge, mtu=mtu)
        eth0 = self.add(DeviceKind.VETH, "eth0", name, config=Veth(f"v-{name}", host_ns), addresses=[address], mtu=mtu)
        if listen:
            from netvirt.graph import Proto

            self.add(DeviceKind.SOCKET, f"{listen[0]}-{listen[1]}", name,
                     config=Socket(proto=Proto(listen[0]), port=listen[1], app=name))
        return eth0

    def link(self, a: Device, b: Device) -> None:
        from netvirt.graph import DeviceRef, Link

        self.hosts[self.current]["links"].append(Link(a=DeviceRef(a.namespace, a.name), b=DeviceRef(b.namespace, b.name)))

    def segment(self, name: str, *ends: tuple[str, Device], mtu: int = 1500) -> None:
        self.segments.append(Segment(name=name, mtu=mtu, attachments=tuple(
            Attachment(host, dev.namespace, dev.name) for host, dev in ends)))

    def network(self) -> NetworkGraph:
        from netvirt.graph import validate

        hosts = tuple(HostGraph(host=name, namespaces=tuple(parts["namespaces"]), devices=tuple(parts["devices"]),
                                links=tuple(parts["links"])) for name, parts in self.hosts.items())
        network = NetworkGraph(hosts=hosts, segments=tuple(self.segments))
        problems = validate(network)
        assert not problems, problems
        return network


def actions(walk) -> list[str]:
    return [event.action.value for event in walk.events]
