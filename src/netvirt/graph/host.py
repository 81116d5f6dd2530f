"""Namespaces, links, per-host graphs and the whole-network view.

Contract: a ``HostGraph`` is everything one physical host runs (its OS stack, VM guests,
containers, pods — each a ``Namespace``), flat: ``devices`` name their namespace, ``links`` wire
devices point to point (tap <-> virtio NIC, NIC <-> hypervisor switch, ...; veth pairs are wired by
their ``Veth`` config instead). A ``NetworkGraph`` is all hosts plus the underlay ``Segment``s their
NICs attach to — what a simulator needs to walk a packet from host to host. Identities: namespaces
by name, devices by (namespace, name), links by their unordered pair of ends, hosts and segments
by name. Each namespace implicitly has a loopback ``lo`` (127.0.0.1/8, ::1/128), as in Linux.
A graph's ``namespaces`` and ``devices`` are tuples or, in compiled graphs, ``Chunks`` (one chunk
per part, shared with the previous graph where the part did not change): read them as sequences.
"""

from dataclasses import dataclass
from enum import StrEnum

from netvirt.graph.devices import Device, Mode
from netvirt.graph.rules import Chain
from netvirt.graph.values import (
    GraphError,
    IPAddress,
    IPNetwork,
    check_mac,
    check_name,
    check_range,
    freeze_collections,
)


class NamespaceKind(StrEnum):
    """What a namespace stands for: a physical host's OS, a VM guest, a container, a pod, a router,
    a gateway (e.g. the WSL2 utility VM's boundary) or the outside world."""

    HOST = "host"
    VM = "vm"
    CONTAINER = "container"
    POD = "pod"
    ROUTER = "router"
    GATEWAY = "gateway"
    EXTERNAL = "external"


class RouteType(StrEnum):
    UNICAST = "unicast"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"


class RpFilter(StrEnum):
    """Reverse-path filtering (net.ipv4.conf.*.rp_filter): off, strict (1) or loose (2)."""

    OFF = "off"
    STRICT = "strict"
    LOOSE = "loose"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """``dst`` is reached via gateway ``via`` and/or out of device ``dev``; lowest metric wins
    among equal prefixes, longest prefix first. ``src`` is the preferred source address."""

    dst: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    metric: int = 0
    kind: RouteType = RouteType.UNICAST
    src: IPAddress | None = None

    def __post_init__(self) -> None:
        check_range(self.metric, 0, 0xFFFFFFFF, lambda: f"route {self.dst} metric")
        if self.kind is RouteType.UNICAST and self.via is None and self.dev is None:
            raise GraphError(f"route {self.dst}: a unicast route needs via or dev")
        for address in (self.via, self.src):
            if address is not None and address.version != self.dst.version:
                raise GraphError(f"route {self.dst}: {address} is not an IPv{self.dst.version} address")


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A static ARP / NDP entry: ``address`` on device ``dev`` is at ``mac``."""

    address: IPAddress
    mac: str
    dev: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", check_mac(self.mac, lambda: f"neighbour {self.address}"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    """A network stack. Its interfaces are the devices naming it (``HostGraph.devices_in``).

    ``filter`` and ``nat`` hold at most one ``Chain`` per hook each (validate checks it);
    ``conntrack_zone`` separates the connection tables of tenants with overlapping addresses.
    """

    name: str
    kind: NamespaceKind
    routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    ip_forward: bool = False
    ipv6_forward: bool = False
    rp_filter: RpFilter = RpFilter.OFF
    filter: tuple[Chain, ...] = ()
    nat: tuple[Chain, ...] = ()
    conntrack_zone: int = 0
    origin: str = ""

    def __post_init__(self) -> None:
        freeze_collections(self)
        check_name(self.name, "namespace")
        check_range(self.conntrack_zone, 0, 65535, lambda: f"namespace {self.name} conntrack_zone")

    def chain(self, table: str, hook: str) -> Chain | None:
        """The chain of ``table`` ("filter" or "nat") at ``hook``, if there is one."""
        chains = self.filter if table == "filter" else self.nat
        return next((c for c in chains if c.hook == hook), None)


@dataclass(frozen=True, slots=True, order=True)
class DeviceRef:
    """A device named by (namespace, device), e.g. one end of a link."""

    namespace: str
    device: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.device}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A point-to-point wire between two devices of one host (order of ends does not matter).

    ``technique`` says what the wire is when it is more than a cable, e.g. "VM NIC emulation".
    """

    a: DeviceRef
    b: DeviceRef
    technique: str = ""

    @property
    def key(self) -> tuple[DeviceRef, DeviceRef]:
        """The link's identity: its two ends, sorted."""
        return (self.a, self.b) if self.a <= self.b else (self.b, self.a)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """One row of a walkthrough table (the notes' Step | Mode | System Level | Technique): the
    trace hops at ``places`` are shown together under ``name``. A place is ``"NS"`` (the IP stack
    of namespace NS: routing, netfilter, local delivery), ``"NS/DEV"`` (every hop at device DEV)
    or ``"NS/DEV:driver"`` (the kernel driver part of a NIC's receive, else counted with NS/DEV).
    Presentation only: no data plane reads it, and ``diff`` ignores it."""

    name: str
    mode: Mode
    level: str
    technique: str
    places: tuple[str, ...]

    def __post_init__(self) -> None:
        freeze_collections(self)
        if not self.name or not self.places:
            raise GraphError(f"stage {self.name!r}: needs a name and at least one place")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostGraph:
    """Everything one physical host runs. See the module docstring. ``stages`` group trace hops
    into walkthrough rows (environments set them; compiled hosts usually have none)."""

    host: str
    namespaces: tuple[Namespace, ...] = ()
    devices: tuple[Device, ...] = ()
    links: tuple[Link, ...] = ()
    stages: tuple[Stage, ...] = ()

    def __post_init__(self) -> None:
        freeze_collections(self)
        check_name(self.host, "host graph")

    def namespace(self, name: str) -> Namespace:
        """The namespace called ``name``; KeyError naming the host if there is none."""
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        raise KeyError(f"host {self.host} has no namespace {name!r}")

    def device(self, namespace: str, name: str) -> Device:
        """The device ``name`` in ``namespace``; KeyError if there is none."""
        for dev in self.devices:
            if dev.name == name and dev.namespace == namespace:
                return dev
        raise KeyError(f"host {self.host} has no device {namespace}/{name}")

    def devices_in(self, namespace: str) -> tuple[Device, ...]:
        """The devices (interfaces) of ``namespace``, in graph order."""
        return tuple(dev for dev in self.devices if dev.namespace == namespace)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A host's device plugged into an underlay segment."""

    host: str
    namespace: str
    device: str

    def __str__(self) -> str:
        return f"{self.host}:{self.namespace}/{self.device}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """An underlay L2 network (a physical switch, a cable, the internet edge) joining host NICs."""

    name: str
    attachments: tuple[Attachment, ...] = ()
    mtu: int = 1500

    def __post_init__(self) -> None:
        freeze_collections(self)
        check_name(self.name, "segment")
        check_range(self.mtu, 68, 65535, lambda: f"segment {self.name} mtu")


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkGraph:
    """All hosts and the underlay segments between them."""

    hosts: tuple[HostGraph, ...] = ()
    segments: tuple[Segment, ...] = ()

    def __post_init__(self) -> None:
        freeze_collections(self)

    def host(self, name: str) -> HostGraph:
        """The graph of host ``name``; KeyError if there is none."""
        for graph in self.hosts:
            if graph.host == name:
                return graph
        raise KeyError(f"network has no host {name!r}")
