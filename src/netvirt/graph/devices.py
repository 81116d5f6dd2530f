"""Devices: the network objects of a host — what exists and where.

Contract: a ``Device`` lives in one namespace and is identified by ``(namespace, name)``. Its
``kind`` fixes which ``config`` class it carries (``KINDS[kind].config``; ``None`` = no config).
Every device declares ``mode``, ``level`` and ``technique``; ``Device.of`` takes them from the one
table ``KINDS`` so callers state only what differs. Which backend can realise which kind is each
backend's own declaration (``dataplane.registry``), not the graph's: the graph is data only.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from netvirt.graph.rules import PortRange, Proto, Rule, Verdict
from netvirt.graph.values import (
    GraphError,
    IPAddress,
    IPInterface,
    check_mac,
    check_name,
    check_range,
    copier,
    freeze_collections,
)
from netvirt.wire import vxlan


class Mode(StrEnum):
    """Where a device's work happens (the notes' "Mode" column)."""

    HARDWARE = "Hardware"
    KERNEL = "Kernel"
    USER = "User"
    KERNEL_USER = "Kernel/User"


class DeviceKind(StrEnum):
    """The closed set of device kinds; see ``KINDS`` for each one's defaults."""

    NIC = "nic"
    VETH = "veth"
    BRIDGE = "bridge"
    VXLAN = "vxlan"
    GENEVE = "geneve"
    NVGRE = "nvgre"
    TAP = "tap"
    MACVLAN = "macvlan"
    SOCKET = "socket"
    HYPERVISOR_SWITCH = "hypervisor_switch"
    VIRTIO_NIC = "virtio_nic"
    NDIS_FILTER = "ndis_filter"
    WSL2_GATEWAY = "wsl2_gateway"
    SRIOV_VF = "sriov_vf"
    NIC_ESWITCH = "nic_eswitch"
    DPDK_PMD = "dpdk_pmd"
    AF_XDP_SOCKET = "af_xdp_socket"


TUNNEL_KINDS = frozenset({DeviceKind.VXLAN, DeviceKind.GENEVE, DeviceKind.NVGRE})
SWITCH_KINDS = frozenset({DeviceKind.BRIDGE, DeviceKind.HYPERVISOR_SWITCH, DeviceKind.NIC_ESWITCH})
FLOOD_MAC = "00:00:00:00:00:00"  # no station has it: the kernel keys a VXLAN's flood entries by it


class HookKind(StrEnum):
    """Programs attached to a device: XDP (driver level, ingress) and tc (ingress or egress)."""

    XDP = "xdp"
    TC_INGRESS = "tc_ingress"
    TC_EGRESS = "tc_egress"


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """A forwarding-database entry: frames to ``mac`` leave by ``device`` (a bridge port) or,
    on a tunnel, go to the underlay address ``remote``. Where a tunnel's broadcast and unknown
    frames go is its ``flood`` list, not an entry."""

    mac: str
    device: str | None = None
    remote: IPAddress | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mac", check_mac(self.mac, "fdb entry"))
        if (self.device is None) == (self.remote is None):
            raise GraphError(f"fdb entry {self.mac}: give exactly one of device (bridge) or remote (tunnel)")


@dataclass(frozen=True, slots=True)
class Veth:
    """One end of a veth pair; the other end is device ``peer`` in namespace ``peer_namespace``."""

    peer: str
    peer_namespace: str
    tag: ClassVar[str] = "veth"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bridge:
    """An L2 switch: learns source MACs when ``learning``; ``fdb`` holds static entries."""

    learning: bool = True
    ageing_time: int = 300
    fdb: tuple[FdbEntry, ...] = ()
    tag: ClassVar[str] = "bridge"

    def __post_init__(self) -> None:
        freeze_collections(self)


GENEVE_OPTION_DATA_MAX = 124  # 5-bit option length in 4-byte words (RFC 8926 section 3.5)
GENEVE_OPTIONS_MAX = 252  # 6-bit Opt Len in 4-byte words (RFC 8926 section 3.4)


@dataclass(frozen=True, slots=True)
class GeneveOption:
    """A Geneve TLV option (RFC 8926) sent on every packet: ``option_class`` (16 bits), ``type``
    (8 bits; 0x80 is the critical bit) and ``data`` (whole 4-byte words, at most 124 bytes; hex in
    JSON). It costs 4 bytes of option header plus its data."""

    option_class: int
    type: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_range(self.option_class, 0, 0xFFFF, "geneve option class")
        where = f"geneve option class {self.option_class:#06x}"
        check_range(self.type, 0, 0xFF, f"{where} type")
        if not isinstance(self.data, bytes):
            raise GraphError(f"{where} data: expected bytes, got {type(self.data).__name__}")
        if len(self.data) % 4 or len(self.data) > GENEVE_OPTION_DATA_MAX:
            raise GraphError(
                f"{where} data: {len(self.data)} bytes; expected whole 4-byte words, at most {GENEVE_OPTION_DATA_MAX}"
            )

    @property
    def length(self) -> int:
        """Bytes on the wire: the 4-byte option header plus the data."""
        return 4 + len(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tunnel:
    """A VXLAN / Geneve / NVGRE endpoint. ``vni`` is the VNI (VXLAN, Geneve) or VSID (NVGRE).

    ``local`` is the underlay source address; ``remote`` a fixed peer (point-to-point), else the
    static ``fdb`` (from the control plane, no multicast learning) says where each MAC lives and
    broadcast, multicast and unknown-unicast frames are copied to every address in ``flood``
    (head-end replication; EVPN's type-3 routes, where ``fdb`` is its type-2). Two fields, not
    one list, so that hosts share them: every host without members on a network holds the same
    ``fdb`` object, and a host's ``flood`` does not change when a port comes or goes.
    ``dst_port`` is the UDP port (4789 VXLAN, 6081 Geneve; ignored for NVGRE, which is GRE);
    the UDP source port is a flow hash in ``src_ports`` (entropy for the underlay's ECMP).
    ``options`` are the Geneve options sent on every packet (Geneve devices only; at most 252
    bytes in all).
    """

    vni: int
    local: IPAddress | None = None
    remote: IPAddress | None = None
    dst_port: int = vxlan.PORT
    src_ports: PortRange = PortRange(32768, 61000)
    ttl: int = 64
    udp_checksum: bool = True
    learning: bool = False
    flood: tuple[IPAddress, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    options: tuple[GeneveOption, ...] = ()
    tag: ClassVar[str] = "tunnel"

    def __post_init__(self) -> None:
        freeze_collections(self)
        check_range(self.vni, 0, 0xFFFFFF, "tunnel vni")
        check_range(self.dst_port, 1, 65535, lambda: f"tunnel vni {self.vni} dst_port")
        check_range(self.ttl, 1, 255, lambda: f"tunnel vni {self.vni} ttl")
        if self.options_length > GENEVE_OPTIONS_MAX:
            raise GraphError(
                f"tunnel vni {self.vni} options: {self.options_length} bytes; Geneve carries at most {GENEVE_OPTIONS_MAX}"
            )

    def with_fdb(self, fdb: tuple[FdbEntry, ...]) -> "Tunnel":
        """This tunnel with ``fdb`` instead. Cheap: no check of the constructor reads the FDB, and
        ``fdb`` must be a tuple of ``FdbEntry`` (each checked when it was made)."""
        if type(fdb) is not tuple:
            raise GraphError(f"tunnel vni {self.vni} fdb: expected a tuple of FdbEntry, got {type(fdb).__name__}")
        return _tunnel_with_fdb(self, fdb)

    @property
    def options_length(self) -> int:
        """Bytes the options add to every packet."""
        return sum(option.length for option in self.options)


_tunnel_with_fdb = copier(Tunnel, "fdb")


class MacvlanMode(StrEnum):
    PRIVATE = "private"
    VEPA = "vepa"
    BRIDGE = "bridge"
    PASSTHRU = "passthru"


@dataclass(frozen=True, slots=True)
class Macvlan:
    """A MAC-addressed sub-interface of its ``parent`` device; ``lower_namespace``: the namespace
    the parent is in when the macvlan was moved to another one (a container's macvlan on its host's
    or guest's NIC: Linux's IFLA_LINK_NETNSID), else the device's own."""

    mode: MacvlanMode = MacvlanMode.BRIDGE
    lower_namespace: str | None = None
    tag: ClassVar[str] = "macvlan"


@dataclass(frozen=True, slots=True, kw_only=True)
class Socket:
    """An application listening on ``proto``/``port`` (``address`` None = every local address)."""

    proto: Proto
    port: int
    address: IPAddress | None = None
    app: str = ""
    tag: ClassVar[str] = "socket"

    def __post_init__(self) -> None:
        if self.proto not in (Proto.TCP, Proto.UDP):
            raise GraphError(f"socket {self.app or ''} proto must be tcp or udp, got {self.proto}")
        check_range(self.port, 1, 65535, lambda: f"socket {self.app} port")


class Hypervisor(StrEnum):
    VIRTUALBOX = "virtualbox"
    HYPERV = "hyperv"
    VMWARE = "vmware"


class SwitchMode(StrEnum):
    """How a hypervisor attaches guests: bridged to the NIC, NAT behind the host, or internal."""

    BRIDGED = "bridged"
    NAT = "nat"
    INTERNAL = "internal"
    HOST_ONLY = "host_only"


@dataclass(frozen=True, slots=True)
class HypervisorSwitch:
    """A hypervisor's software switch (VirtualBox bridged/NAT, Hyper-V vSwitch, VMware vSwitch)."""

    hypervisor: Hypervisor
    mode: SwitchMode = SwitchMode.BRIDGED
    tag: ClassVar[str] = "hypervisor_switch"


class Wsl2Mode(StrEnum):
    NAT = "nat"
    MIRRORED = "mirrored"


@dataclass(frozen=True, slots=True)
class Wsl2Gateway:
    """The WSL2 utility VM's boundary: NAT behind the host (default) or mirrored host interfaces."""

    mode: Wsl2Mode = Wsl2Mode.NAT
    tag: ClassVar[str] = "wsl2_gateway"


@dataclass(frozen=True, slots=True)
class SriovVf:
    """An SR-IOV virtual function ``index`` of a physical NIC, optionally VLAN-tagged by the NIC."""

    index: int
    vlan: int | None = None
    tag: ClassVar[str] = "sriov_vf"

    def __post_init__(self) -> None:
        check_range(self.index, 0, 255, "sriov_vf index")
        if self.vlan is not None:
            check_range(self.vlan, 1, 4094, "sriov_vf vlan")


DeviceConfig = Veth | Bridge | Tunnel | Macvlan | Socket | HypervisorSwitch | Wsl2Gateway | SriovVf


# The XDP program of a host's ``drop_from`` list (spec hosts[].drop_from): drop rules by source
# prefix on the underlay NIC. Backends without XDP realise exactly this program another way.
DROP_LIST_PROGRAM = "drop_from"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceHook:
    """A program attached to a device. ``program`` names it (e.g. ``"xdp-ddos-guard"``); ``rules``
    say what it does, in the same vocabulary as netfilter chains (accept = pass, drop = drop)."""

    kind: HookKind
    program: str
    rules: tuple[Rule, ...] = ()
    policy: Verdict = Verdict.ACCEPT

    def __post_init__(self) -> None:
        freeze_collections(self)


@dataclass(frozen=True, slots=True)
class KindInfo:
    """Defaults of one device kind, and the config class it requires (None: no config)."""

    mode: Mode
    level: str
    technique: str
    config: type | None


# The one table of per-kind defaults. Levels and techniques follow the notes' walkthrough tables;
# environments override ``level`` (e.g. "VirtualBox", "Guest (Ubuntu)") where the stack says so.
KINDS: dict[DeviceKind, KindInfo] = {
    DeviceKind.NIC: KindInfo(Mode.HARDWARE, "NIC", "Physical Signal Reception", None),
    DeviceKind.VETH: KindInfo(Mode.KERNEL, "Namespace", "Veth Pair (Namespace crossover)", Veth),
    DeviceKind.BRIDGE: KindInfo(Mode.KERNEL, "Linux Kernel", "Linux Bridge (L2 Switching)", Bridge),
    DeviceKind.VXLAN: KindInfo(Mode.KERNEL, "Linux Kernel", "VXLAN Encapsulation", Tunnel),
    DeviceKind.GENEVE: KindInfo(Mode.KERNEL, "Linux Kernel", "Geneve Encapsulation", Tunnel),
    DeviceKind.NVGRE: KindInfo(Mode.KERNEL, "Linux Kernel", "NVGRE Encapsulation", Tunnel),
    DeviceKind.TAP: KindInfo(Mode.KERNEL_USER, "Linux Kernel", "TAP Device (Kernel/User handoff)", None),
    DeviceKind.MACVLAN: KindInfo(Mode.KERNEL, "Linux Kernel", "Macvlan Sub-interface", Macvlan),
    DeviceKind.SOCKET: KindInfo(Mode.USER, "App", "Socket API (Buffer Read)", Socket),
    DeviceKind.HYPERVISOR_SWITCH: KindInfo(
        Mode.KERNEL_USER, "Hypervisor", "Bridged Networking & Software Switching", HypervisorSwitch
    ),
    DeviceKind.VIRTIO_NIC: KindInfo(Mode.KERNEL, "Guest", "VirtIO-net Driver (Hardware Abstraction)", None),
    DeviceKind.NDIS_FILTER: KindInfo(Mode.KERNEL, "Network Stack", "NDIS Driver Interception", None),
    DeviceKind.WSL2_GATEWAY: KindInfo(
        Mode.KERNEL, "Internal Gateway", "Internal Bridge/IP Forwarding", Wsl2Gateway
    ),
    DeviceKind.SRIOV_VF: KindInfo(Mode.HARDWARE, "NIC", "SR-IOV Virtual Function", SriovVf),
    DeviceKind.NIC_ESWITCH: KindInfo(Mode.HARDWARE, "NIC", "NIC Embedded Switch (SR-IOV)", None),
    DeviceKind.DPDK_PMD: KindInfo(Mode.USER, "DPDK", "Poll Mode Driver (Kernel Bypass)", None),
    DeviceKind.AF_XDP_SOCKET: KindInfo(Mode.USER, "AF_XDP", "AF_XDP Socket (XDP redirect to user space)", None),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """A network device in ``namespace``; see the module docstring. Build with ``Device.of``.

    ``master``: the switch (bridge, hypervisor switch, eswitch) in the same namespace this device
    is a port of. ``parent``: the lower device in the same namespace (macvlan's NIC, a tunnel's
    underlay device, a VF's physical function). ``addresses`` are the interface's IPs with prefix.
    ``origin`` names the spec object the device was compiled from (informational, e.g. "endpoint/web").
    """

    name: str
    namespace: str
    kind: DeviceKind
    mode: Mode
    level: str
    technique: str
    config: DeviceConfig | None = None
    mtu: int = 1500
    mac: str | None = None
    addresses: tuple[IPInterface, ...] = ()
    master: str | None = None
    parent: str | None = None
    up: bool = True
    hooks: tuple[DeviceHook, ...] = ()
    origin: str = ""

    def __post_init__(self) -> None:
        freeze_collections(self)
        where = f"device {self.namespace}/{self.name}"
        check_name(self.name, where)
        check_name(self.namespace, lambda: f"{where} namespace")
        self._check_config(self.config)
        check_range(self.mtu, 68, 65535, lambda: f"{where} mtu")
        if self.mac is not None:
            object.__setattr__(self, "mac", check_mac(self.mac, where))

    def _check_config(self, config: DeviceConfig | None) -> None:
        wanted = KINDS[self.kind].config
        if wanted is None and config is not None:
            raise GraphError(f"device {self.namespace}/{self.name}: kind {self.kind} takes no config, got {type(config).__name__}")
        if wanted is not None and not isinstance(config, wanted):
            raise GraphError(f"device {self.namespace}/{self.name}: kind {self.kind} needs config {wanted.__name__}, got {config!r}")
        if isinstance(config, Tunnel) and config.options and self.kind is not DeviceKind.GENEVE:
            raise GraphError(
                f"device {self.namespace}/{self.name}: only geneve tunnels carry options; remove them from this {self.kind} device"
            )

    def with_config(self, config: DeviceConfig | None) -> "Device":
        """This device with ``config`` instead, checked as the constructor checks a config."""
        self._check_config(config)
        return _device_with_config(self, config)

    @classmethod
    def of(cls, kind: DeviceKind, name: str, namespace: str, **fields: object) -> "Device":
        """A device of ``kind`` with mode/level/technique from ``KINDS`` unless given."""
        info = KINDS[kind]
        fields.setdefault("mode", info.mode)
        fields.setdefault("level", info.level)
        fields.setdefault("technique", info.technique)
        return cls(kind=kind, name=name, namespace=namespace, **fields)  # type: ignore[arg-type]

    @property
    def key(self) -> tuple[str, str]:
        """The device's identity: (namespace, name)."""
        return (self.namespace, self.name)


_device_with_config = copier(Device, "config")


def drop_list(dev: "Device") -> tuple:
    """The source prefixes of ``dev``'s drop list (its ``DROP_LIST_PROGRAM`` XDP hook), in order."""
    return tuple(rule.match.src for hook in dev.hooks if hook.kind is HookKind.XDP and hook.program == DROP_LIST_PROGRAM
                 for rule in hook.rules)
