"""The state of one walk up a stack, shared by the layer families (hosts, hypervisors, kubernetes,
workloads, apps).

Contract: a ``StackWalk`` holds the graph being built (``b``), where the outside's traffic is aimed
(``target``, ``port``), what the app listens on and the port forwards still waiting for the outside
port; each layer family's function takes the walk and the ``Level`` below and returns the level it
builds. ``StackError`` says which stack, which layer and how to fix it.
"""

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, ip_interface, ip_network

from netvirt.environments.builder import GraphBuilder, StackError
from netvirt.graph import Device, Dnat, Match, NatTarget, NetworkGraph, PortRange, Proto, Rule
from netvirt.management.spec import AppLayer, HostLayer, KubernetesLayer, Spec, Stack

DEFAULT_LAN = ip_interface("192.168.1.10/24")


@dataclass(frozen=True, slots=True)
class StackGraph:
    """A stack as a graph, and the walkthrough it stands for: the outside client in namespace
    ``client`` sends ``proto`` to ``target``:``port`` and the app listening on ``app_port`` in
    ``app_namespace`` should get it. ``host`` names the graph's one host."""

    name: str
    network: NetworkGraph
    host: str
    client: str
    client_address: IPv4Address
    target: IPv4Address
    proto: str
    port: int
    app_namespace: str
    app_port: int


@dataclass
class Level:
    """Where packets arrive at the current layer: namespace, its ingress device and address."""

    ns: str
    ingress: str
    address: IPv4Interface
    context: str  # "host", "vm", "wsl2", "node", "pod", "container"
    os: str


class StackWalk:
    """See the module docstring."""

    def __init__(self, spec: Spec, stack: Stack) -> None:
        self.spec = spec
        self.stack = stack
        self.layers = stack.layers
        self.b = GraphBuilder(host=stack.name)
        self.windows = isinstance(self.layers[0], HostLayer) and self.layers[0].os == "windows"
        app = next((layer for layer in self.layers if isinstance(layer, AppLayer)), None)
        if app is None:
            raise StackError(f"stack {stack.name}: a stack needs an app layer on top")
        self.app = app
        self.proto, self.app_port = self._listen(app)
        self.port = self.app_port  # the port the outside uses; a NodePort once kubernetes exposes the app
        self.k8s: KubernetesLayer | None = None
        self.node: Level | None = None  # the kubernetes node, once there is one
        self.ebpf_proxy = False  # the node's service proxy is eBPF (a kube-proxy replacement)
        self.lan = DEFAULT_LAN  # the host's LAN (set by the host layer)
        self.client_address: IPv4Address = DEFAULT_LAN.ip
        self.target: IPv4Address = DEFAULT_LAN.ip
        self.app_namespace = ""
        self.pending_dnat: list[tuple[str, IPv4Interface, IPv4Interface, str]] = []

    def name(self, windows: str, linux: str) -> str:
        """A step's name in the notes' walkthrough (Windows host) or path (Linux host) vocabulary."""
        return windows if self.windows else linux

    def _listen(self, app: AppLayer) -> tuple[str, int]:
        listen = app.listen
        if listen is None and app.endpoint is not None:
            endpoint = self.spec.index["endpoints"].get(app.endpoint)
            if endpoint is not None and endpoint.listen:
                listen = endpoint.listen[0]
        if listen is None:
            return "tcp", 8080
        return str(listen.proto), int(listen.port)

    def tied(self, name: str | None, within=None) -> IPv4Interface | None:
        """The IPv4 address (with its network's prefix) of spec endpoint ``name``, if it has one
        (and it lies in ``within``)."""
        endpoint = self.spec.index["endpoints"].get(name) if name else None
        if endpoint is None or endpoint.attachments[0].ip is None:
            return None
        network = self.spec.index["networks"].get(endpoint.attachments[0].network)
        prefix = network.subnet.prefixlen if network is not None and network.subnet is not None else 24
        address = ip_interface(f"{endpoint.attachments[0].ip}/{prefix}")
        return address if within is None or address.ip in within else None

    def workload_address(self, name: str | None, default: str, per_node: bool) -> tuple[IPv4Interface, IPv4Interface]:
        """A pod's or container's address and its gateway on the node (with prefix). A tied
        endpoint keeps its spec address and gateway; with ``per_node`` a network wider than /24
        gives the node the /24 around the address, as flannel gives each node a /24."""
        address = self.tied(name) or ip_interface(default)
        endpoint = self.spec.index["endpoints"].get(name) if name else None
        network = self.spec.index["networks"].get(endpoint.attachments[0].network) if endpoint else None
        subnet = address.network
        if per_node and subnet.prefixlen < 24:
            subnet = ip_network(f"{address.ip}/24", strict=False)
        gateway = network.gateway if network is not None and network.gateway in subnet else subnet.network_address + 1
        if gateway == address.ip:
            gateway = subnet.broadcast_address - 1
        return ip_interface(f"{address.ip}/{subnet.prefixlen}"), ip_interface(f"{gateway}/{subnet.prefixlen}")

    def service_of(self, endpoint: str | None):
        """The spec service that balances over ``endpoint`` (first by name), if any."""
        return next((service for service in sorted(self.spec.services, key=lambda s: s.name)
                     if endpoint is not None and endpoint in service.backends), None)

    def device(self, namespace: str, name: str) -> Device:
        return next(d for d in self.b.devices if d.namespace == namespace and d.name == name)

    def forward_port(self, ns: str, outside: IPv4Interface, inside: IPv4Interface, comment: str) -> None:
        """DNAT the outside port to ``inside``; the port is filled in once the app layer is known."""
        self.pending_dnat.append((ns, outside, inside, comment))

    def apply_port_forwards(self) -> None:
        """The port forwards of NAT layers, now that the outside port is known (same port inside)."""
        proto = Proto(self.proto)
        for ns, outside, inside, comment in self.pending_dnat:
            self.b.namespaces[ns].nat.setdefault("prerouting", []).append(
                Rule(match=Match(dst=ip_network(f"{outside.ip}/32"), proto=proto, dst_ports=PortRange.single(self.port)),
                     action=Dnat(targets=(NatTarget(inside.ip, self.port),)), comment=comment))

    def finish(self) -> StackGraph:
        network = self.b.finish()
        return StackGraph(self.stack.name, network, self.b.host, "outside", self.client_address,
                          self.target, self.proto, self.port, self.app_namespace, self.app_port)
