"""The spec model: typed, immutable (frozen pydantic v2 models), unknown keys refused.

Fields typed ``X | None`` with a ``None`` default are the ones netvirt fills in when absent (VNI,
gateway, MTU, endpoint addresses and MACs, service VIP and tenant, hypervisor network). A ``Spec``
returned by ``load``/``loads`` is *resolved*: every such field is set. ``docs/spec.md`` documents
every key and the allocation rules.
"""

import ipaddress
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netvirt.management.spec.encap import GENEVE_MAX_OPTIONS, MAX_MTU, Encap
from netvirt.management.spec.values import (
    Address4,
    Address6,
    AnyAddress,
    AnyNetwork,
    FieldError,
    Interface,
    Labels,
    Mac,
    Name,
    Peers,
    PortRanges,
    ProtoPortField,
    Subnet4,
    Subnet6,
)

Mtu = Annotated[int, Field(ge=68, le=MAX_MTU)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


# --- underlay ------------------------------------------------------------------------------------


class Host(Model):
    """A physical (underlay) host: one machine that carries overlay traffic."""

    name: Name
    underlay: Interface
    """Underlay address with prefix, IPv4 or IPv6 (``192.0.2.10/24``); without prefix /24 or /64."""
    mtu: Mtu = 1500
    """Underlay (physical NIC) MTU; overlay MTUs are derived from it."""
    nic: Literal["physical", "virtio", "sriov-vf", "e1000", "vmxnet3", "netvsc"] = "physical"
    """What the host's underlay NIC is (a bare-metal NIC, or the vNIC of a VM used as a host)."""
    drop_from: list[AnyNetwork] = []
    """Source prefixes dropped on arrival at the underlay NIC, before the kernel allocates a socket
    buffer (XDP on the ``ebpf`` backend, an nftables ``netdev`` ingress chain on ``linux``)."""
    labels: Labels = {}


# --- overlays ------------------------------------------------------------------------------------


class GeneveOption(Model):
    """A Geneve TLV option (RFC 8926): class, type and data (hex, a multiple of 4 bytes)."""

    option_class: int = Field(alias="class", ge=0, le=0xFFFF)
    type: int = Field(ge=0, le=0xFF)
    data: str = ""
    """Option data as hex digits (``"0a0b0c0d"``), a multiple of 4 bytes, at most 124 bytes."""

    @field_validator("data")
    @classmethod
    def _hex_words(cls, value: str) -> str:
        text = value.lower().removeprefix("0x").replace(":", "")
        if any(c not in "0123456789abcdef" for c in text) or len(text) % 8:
            raise ValueError(f"{value!r} is not hex data in whole 4-byte words (8 hex digits each)")
        if len(text) > 248:
            raise ValueError(f"option data is {len(text) // 2} bytes; a Geneve option carries at most 124")
        return text

    @property
    def length(self) -> int:
        """Bytes on the wire: 4-byte option header + data."""
        return 4 + len(self.data) // 2


class Network(Model):
    """An overlay network (one L2 segment with IPv4 and/or IPv6 subnets) of one tenant."""

    name: Name
    tenant: Name = "default"
    """Tenants are isolated: different tenants never reach each other unless a router joins their
    networks and a policy allows it. Subnets may overlap across tenants, never inside one."""
    encap: Encap = "vxlan"
    vni: int | None = Field(default=None, ge=1, le=0xFFFFFF)
    """VXLAN/Geneve VNI or NVGRE VSID (24 bits); allocated from the network name when absent."""
    subnet: Subnet4 | None = None
    subnet6: Subnet6 | None = None
    gateway: Address4 | None = None
    """IPv4 gateway (the router's address on this network); default: the first address of the subnet."""
    gateway6: Address6 | None = None
    mtu: Mtu | None = None
    """Overlay MTU; default: the smallest underlay MTU of the hosts it spans minus the encap overhead."""
    geneve_options: tuple[GeneveOption, ...] = ()
    """Geneve TLV options sent on every packet (encap geneve only); they add to the overhead."""

    @model_validator(mode="after")
    def _consistent(self) -> "Network":
        if self.subnet is None and self.subnet6 is None:
            raise ValueError("a network needs a subnet (IPv4), a subnet6 (IPv6), or both")
        if self.geneve_options and self.encap != "geneve":
            raise FieldError("geneve_options", f"options need encap geneve (this network uses {self.encap})")
        if self.options_length > GENEVE_MAX_OPTIONS:
            raise FieldError("geneve_options", f"options take {self.options_length} bytes; Geneve allows 252")
        if self.encap == "none" and self.vni is not None:
            raise FieldError("vni", "a network with encap none has no VNI; remove it or choose an encapsulation")
        if self.encap == "nvgre" and self.vni is not None and not 0x1000 <= self.vni <= 0xFFFFFE:
            raise FieldError("vni", f"NVGRE VSID {self.vni} is reserved (RFC 7637); use 4096-16777214")
        return self

    @property
    def options_length(self) -> int:
        return sum(option.length for option in self.geneve_options)


class Route(Model):
    """A static route: destination prefix -> next hop on one of the router's networks."""

    to: AnyNetwork
    via: AnyAddress


class Router(Model):
    """A router joining networks (it owns each network's gateway address); optional SNAT egress."""

    name: Name
    networks: tuple[Name, ...] = Field(min_length=1)
    routes: tuple[Route, ...] = ()
    snat: bool = False
    """Masquerade traffic leaving the overlays behind the underlay address of the endpoint's host."""


# --- what sits on the overlays -------------------------------------------------------------------


class Attachment(Model):
    """One network interface of an endpoint."""

    network: Name
    ip: Address4 | None = None
    """IPv4 address; allocated from the network's subnet when absent (if it has one)."""
    ip6: Address6 | None = None
    mac: Mac | None = None
    """Unicast MAC; derived (locally administered, 02:...) from the spec, endpoint and network names."""


class Endpoint(Model):
    """Something with a network stack on a host: a VM, a container, a pod, or the host itself.

    The short form ``network: blue`` (with optional ``ip``, ``ip6``, ``mac`` beside it) is the same
    as ``attachments: [{network: blue, ...}]``; a loaded spec always has ``attachments``.
    """

    name: Name
    kind: Literal["vm", "container", "pod", "host"] = "container"
    host: Name
    attachments: tuple[Attachment, ...] = Field(min_length=1)
    labels: Labels = {}
    listen: tuple[ProtoPortField, ...] = ()
    """Listening sockets, e.g. ``[tcp/80, udp/53]``."""


class Rule(Model):
    """One policy rule. Omitted matches match everything."""

    action: Literal["allow", "drop", "reject", "log"]
    """``reject`` answers (TCP RST / ICMP unreachable); ``log`` records and goes on to the next rule."""
    from_: Peers = Field(default=(), alias="from")
    to: Peers = ()
    proto: Literal["tcp", "udp", "icmp", "any"] = "any"
    """``icmp`` means ICMP for IPv4 and ICMPv6 for IPv6."""
    src_port: PortRanges = ()
    dst_port: PortRanges = ()
    icmp_type: int | None = Field(default=None, ge=0, le=255)
    icmp_code: int | None = Field(default=None, ge=0, le=255)
    comment: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "Rule":
        if (self.src_port or self.dst_port) and self.proto not in ("tcp", "udp"):
            field = "dst_port" if self.dst_port else "src_port"
            raise FieldError(field, f"ports need proto tcp or udp (this rule has proto {self.proto})")
        if (self.icmp_type is not None or self.icmp_code is not None) and self.proto != "icmp":
            raise FieldError("proto", f"icmp_type/icmp_code need proto icmp (this rule has proto {self.proto})")
        if self.icmp_code is not None and self.icmp_type is None:
            raise FieldError("icmp_code", "icmp_code needs an icmp_type")
        return self


class Policy(Model):
    """Ordered rules for one network or a whole tenant, in one direction; first match wins."""

    name: Name
    network: Name | None = None
    tenant: Name | None = None
    direction: Literal["ingress", "egress"] = "ingress"
    """``ingress``: packets arriving at endpoints in scope; ``egress``: packets they send."""
    rules: tuple[Rule, ...] = ()
    default: Literal["allow", "drop", "reject"] = "drop"
    """What happens when no rule decides (like Kubernetes, a policy denies what it does not allow)."""

    @model_validator(mode="after")
    def _one_scope(self) -> "Policy":
        if (self.network is None) == (self.tenant is None):
            raise ValueError("a policy needs exactly one scope: 'network: NAME' or 'tenant: NAME'")
        return self


class Service(Model):
    """A virtual IP + port balanced over backend endpoints (like a Kubernetes ClusterIP)."""

    name: Name
    vip: AnyAddress | None = None
    """Virtual IP; allocated from the spec's service_subnet when absent."""
    port: ProtoPortField
    target_port: int | None = Field(default=None, ge=1, le=65535)
    """Port the backends listen on; default: the service port."""
    backends: tuple[Name, ...] = Field(min_length=1)
    affinity: Literal["none", "client-ip"] = "none"
    tenant: Name | None = None
    """The tenant whose endpoints reach the VIP; default (and required): the backends' tenant."""


# --- stacks: nested environments for walkthroughs ------------------------------------------------

Os = Literal["linux", "windows"]
LayerLabel = Annotated[str, Field(description="A display name for walkthroughs (e.g. 'Ubuntu 22.04'); optional.")]


class HostLayer(Model):
    """The physical machine at the bottom of a stack."""

    layer: Literal["host"]
    os: Os = "linux"
    nic: Literal["physical", "sriov"] = "physical"
    host: Name | None = None
    """Ties this layer to a spec host (its underlay address and MTU)."""
    label: LayerLabel = ""


HYPERVISOR_NETWORKS = {
    "kvm": ("nat", "bridged", "internal"),
    "virtualbox": ("nat", "bridged", "internal"),
    "vmware": ("nat", "bridged", "internal"),
    "hyperv": ("nat", "external", "internal"),
    "wsl2": ("nat", "mirrored"),
}
"""Networking modes per hypervisor; the first is the product's default."""


class HypervisorLayer(Model):
    """A hypervisor and how it connects its VMs (WSL2's utility VM is implied by ``type: wsl2``)."""

    layer: Literal["hypervisor"]
    type: Literal["kvm", "virtualbox", "hyperv", "vmware", "wsl2"]
    network: Literal["bridged", "nat", "internal", "external", "mirrored"] | None = None
    """Default: the product's default (nat for all five; Hyper-V's Default Switch is NAT)."""
    label: LayerLabel = ""

    @model_validator(mode="after")
    def _network_fits(self) -> "HypervisorLayer":
        allowed = HYPERVISOR_NETWORKS[self.type]
        if self.network is not None and self.network not in allowed:
            modes = ", ".join(allowed)
            raise FieldError("network", f"{self.network!r} is not a {self.type} networking mode; use one of {modes}")
        return self


class VmLayer(Model):
    """A guest VM on the hypervisor below."""

    layer: Literal["vm"]
    os: Os = "linux"
    vnic: Literal["virtio", "e1000", "vmxnet3", "netvsc", "sriov-vf"] = "virtio"
    endpoint: Name | None = None
    """Ties this layer to a spec endpoint of kind vm."""
    label: LayerLabel = ""


class ContainerLayer(Model):
    """A container (its own network namespace unless ``network: host``)."""

    layer: Literal["container"]
    runtime: Literal["docker", "containerd", "podman", "cri-o"] = "containerd"
    network: Literal["bridge", "host", "macvlan"] = "bridge"
    endpoint: Name | None = None
    label: LayerLabel = ""


class KubernetesLayer(Model):
    """A Kubernetes node: its CNI plugin and service proxy."""

    layer: Literal["kubernetes"]
    cni: Literal[
        "flannel-vxlan", "calico-ipip", "calico-vxlan", "cilium-ebpf", "cilium-vxlan", "cilium-geneve", "antrea-geneve"
    ] = "flannel-vxlan"
    proxy: Literal["iptables", "nftables", "ipvs", "ebpf"] = "iptables"
    xdp: bool = False
    """An XDP program on the node NIC (e.g. Cilium's XDP acceleration)."""
    label: LayerLabel = ""


class PodLayer(Model):
    """A pod: a network namespace joined to the node by the CNI (veth pair)."""

    layer: Literal["pod"]
    endpoint: Name | None = None
    label: LayerLabel = ""


class AppLayer(Model):
    """The application at the top: how it does I/O and where it listens."""

    layer: Literal["app"]
    io: Literal["socket", "dpdk", "af_xdp"] = "socket"
    listen: ProtoPortField | None = None
    endpoint: Name | None = None
    label: LayerLabel = ""


Layer = Annotated[
    HostLayer | HypervisorLayer | VmLayer | ContainerLayer | KubernetesLayer | PodLayer | AppLayer,
    Field(discriminator="layer"),
]
LAYER_TYPES: dict[str, type[Model]] = {
    cls.model_fields["layer"].annotation.__args__[0]: cls  # type: ignore[union-attr]
    for cls in (HostLayer, HypervisorLayer, VmLayer, ContainerLayer, KubernetesLayer, PodLayer, AppLayer)
}


class Stack(Model):
    """Nested environment layers, bottom (host) to top (app), for walkthroughs."""

    name: Name
    description: str = ""
    layers: tuple[Layer, ...] = Field(min_length=1)


# --- the spec ------------------------------------------------------------------------------------

KINDS = ("hosts", "networks", "routers", "endpoints", "policies", "services", "stacks")
"""The top-level lists, in dependency order; every item in them has a unique ``name``."""


class Spec(Model):
    """A whole network spec. ``load`` returns it resolved (every allocatable field set)."""

    version: Literal[1] = 1
    name: Name
    """Spec name; default: the file (or directory) name. It seeds the derived MACs."""
    description: str = ""
    service_subnet: AnyNetwork = ipaddress.ip_network("10.96.0.0/16")
    """Where service VIPs are allocated from."""
    hosts: tuple[Host, ...] = ()
    networks: tuple[Network, ...] = ()
    routers: tuple[Router, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    policies: tuple[Policy, ...] = ()
    services: tuple[Service, ...] = ()
    stacks: tuple[Stack, ...] = ()

    @cached_property
    def index(self) -> dict[str, dict[str, Any]]:
        """``index[kind][name]`` -> the object (kinds as in ``KINDS``)."""
        return {kind: {item.name: item for item in getattr(self, kind)} for kind in KINDS}

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> "Spec":
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("index", None)  # the cached index describes the original
        return copied

    def host(self, name: str) -> Host:
        return self.index["hosts"][name]

    def network(self, name: str) -> Network:
        return self.index["networks"][name]

    def router(self, name: str) -> Router:
        return self.index["routers"][name]

    def endpoint(self, name: str) -> Endpoint:
        return self.index["endpoints"][name]

    def policy(self, name: str) -> Policy:
        return self.index["policies"][name]

    def service(self, name: str) -> Service:
        return self.index["services"][name]

    def stack(self, name: str) -> Stack:
        return self.index["stacks"][name]


ITEM_TYPES: dict[str, type[Model]] = {
    "hosts": Host,
    "networks": Network,
    "routers": Router,
    "endpoints": Endpoint,
    "policies": Policy,
    "services": Service,
    "stacks": Stack,
}
