"""The ``userspace`` backend: one host's datapath done by a poll-mode switch process.

Contract: ``UserspaceBackend(host, network=..., deployment=..., mode=..., batched=...)`` implements
``dataplane.api.Backend``. It needs the whole ``network`` (the slow path walks the simulator over
it: remote tunnel endpoints and their MACs come from the other hosts' graphs); ``apply(graph)``
puts ``graph`` in place of this host's graph in it.

- The host's *switch namespaces* (``oracle.switch_namespaces``: its own and its routers') are
  done by the switch: their bridges, tunnel endpoints (VXLAN, Geneve with options, NVGRE), the
  distributed router's stack, its neighbours, routes, filter and NAT chains. In the kernel
  (``kernel_graph``) only their *ports* exist — the NIC into the underlay segment and the host
  ends of the endpoints' veths, without addresses or master — and the endpoints' namespaces,
  whole, with their own addresses, routes and rules; the Linux backend builds that part
  (namespaces, links, ownership records and cleanup are its).
- Then every port's peer gets its transmit offloads turned off (``offloads``), and the switch
  process is (re)started under its supervisor (``process``) with the full network
  (``batched=False``: the per-packet baseline of ``switch``, for the benchmark).
- ``teardown()`` stops the switch first (exactly the processes recorded, never another), then
  removes the kernel part. ``counters()`` is the switch's ``status`` line.
"""

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from netvirt.dataplane.api import ApplyReport, Capabilities, Encapsulation, Observer, plan
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.observe import KernelObserver
from netvirt.dataplane.linux import readback
from netvirt.dataplane.linux.backend import LinuxBackend, without_sockets, segments_of
from netvirt.dataplane.kernel.naming import PRODUCTION_PREFIX
from netvirt.dataplane.kernel.ownership import STATE_DIR
from netvirt.dataplane.userspace import offloads, process
from netvirt.dataplane.userspace.labels import trace_view
from netvirt.dataplane.userspace.oracle import switch_namespaces
from netvirt.dataplane.userspace.switch import MODES
from netvirt.graph import DeviceKind, HostGraph, NetworkGraph, Problem, Veth

DEVICE_KINDS = frozenset({DeviceKind.NIC, DeviceKind.VETH, DeviceKind.BRIDGE, DeviceKind.VXLAN, DeviceKind.GENEVE,
                          DeviceKind.NVGRE, DeviceKind.SOCKET})


def ports(graph: HostGraph, owned: set[str]) -> list[tuple[str, str]]:
    """(namespace, device) of every port of the switch: a NIC, or a veth leading out of ``owned``."""
    found = []
    for dev in graph.devices:
        if dev.namespace not in owned:
            continue
        if dev.kind is DeviceKind.NIC or (
                dev.kind is DeviceKind.VETH and isinstance(dev.config, Veth) and dev.config.peer_namespace not in owned):
            found.append((dev.namespace, dev.name))
    return found


def kernel_graph(graph: HostGraph, owned: set[str]) -> HostGraph:
    """The part of ``graph`` that exists as kernel objects under the userspace switch."""
    kept_ports = set(ports(graph, owned))
    devices = []
    for dev in graph.devices:
        if dev.namespace not in owned:
            devices.append(dev)
        elif (dev.namespace, dev.name) in kept_ports:
            devices.append(replace(dev, addresses=(), master=None, parent=None))
    names = {(dev.namespace, dev.name) for dev in devices}
    namespaces = []
    for ns in graph.namespaces:
        if ns.name not in owned:
            namespaces.append(ns)
        elif any(dev.namespace == ns.name for dev in devices):
            namespaces.append(replace(ns, routes=(), neighbours=(), ip_forward=False, ipv6_forward=False,
                                      filter=(), nat=()))
    links = tuple(link for link in graph.links
                  if (link.a.namespace, link.a.device) in names and (link.b.namespace, link.b.device) in names)
    return replace(graph, namespaces=tuple(namespaces), devices=tuple(devices), links=links, stages=())


def verification(network: NetworkGraph, hosts: Iterable[str]) -> dict:
    """The ``trace.verify.Verifier`` options for a network whose ``hosts`` run the userspace
    switch: its trace view (what the switch does is not seen by a capture, except frames arriving
    at its ports) and which graph places are kernel devices (the ports, not the switch's inside)."""
    hosts = set(hosts)
    inside = {(g.host, dev.namespace, dev.name) for g in network.hosts if g.host in hosts
              for owned in [switch_namespaces(network, g.host)] for dev in g.devices
              if dev.namespace in owned and (dev.namespace, dev.name) not in set(ports(g, owned))}
    return {"view": trace_view(network, hosts), "exists": lambda place: place not in inside}


class UserspaceBackend:
    """See the module docstring."""

    name: ClassVar[str] = "userspace"

    def __init__(self, host: str, *, network: NetworkGraph | None = None, deployment: str = "default",
                 mode: str = "adaptive", batched: bool = True, prefix: str = PRODUCTION_PREFIX,
                 state_dir: Path = STATE_DIR, **kernel_options) -> None:
        if mode not in MODES:
            raise ValueError(f"poll mode {mode!r}: choose one of {', '.join(MODES)}")
        if network is None:
            raise ValueError("the userspace backend needs the whole network (its slow path simulates the other "
                             "hosts' tunnel endpoints): use `netvirt up --backend userspace`; an agent that "
                             "knows only its own host's graph cannot run it yet")
        self.host = host
        self.network = network
        self.mode = mode
        self.batched = batched
        self.kernel = LinuxBackend(host, deployment=deployment, segments=segments_of(network), prefix=prefix,
                                   state_dir=state_dir, **kernel_options)
        self.names = self.kernel.names
        self.run_dir = process.run_dir(state_dir, self.names.prefix, self.names.deployment)
        self.last_report: ApplyReport | None = None
        self._applied: HostGraph | None = None

    @classmethod
    def declared(cls) -> Capabilities:
        """nic, veth, bridge, VXLAN, Geneve, NVGRE and socket devices, filter and NAT rules (in the
        switch namespaces by the switch, in the endpoints' by their kernel), no device hooks."""
        return Capabilities(backend=cls.name, device_kinds=DEVICE_KINDS, encapsulations=frozenset(Encapsulation),
                            hooks=frozenset(), netfilter=True, nat=True)

    def capabilities(self) -> Capabilities:
        """``declared()``: the switch needs nothing from the kernel but AF_PACKET and veths."""
        return replace(self.declared(), where="in user space (AF_PACKET rings)")

    @classmethod
    def for_network(cls, network: NetworkGraph, **options) -> dict[str, "UserspaceBackend"]:
        """One backend per host of ``network`` (each needs the whole network for its slow path)."""
        return {graph.host: cls(graph.host, network=network, **options) for graph in network.hosts}

    @classmethod
    def observer(cls, deployment: str, *, prefix: str = PRODUCTION_PREFIX) -> Observer:
        """Capture and probes in the kernel namespaces of ``deployment``: the endpoints' veths and
        the underlay exist as kernel devices under the switch (for ``verify``)."""
        return KernelObserver(Names(deployment, prefix))

    def check(self, graph: HostGraph) -> list[Problem]:
        """Every reason this backend cannot realise ``graph`` (empty: it can)."""
        problems = plan(graph, self.capabilities())
        if graph.host != self.host:
            problems.insert(0, Problem(graph.host, f"graph is for host {graph.host!r}, this backend is {self.host!r}"))
        if problems:
            return problems
        owned = switch_namespaces(self._network(graph), self.host)
        return self.kernel.check(kernel_graph(graph, owned))

    def _network(self, graph: HostGraph) -> NetworkGraph:
        hosts = tuple(graph if g.host == graph.host else g for g in self.network.hosts)
        return replace(self.network, hosts=hosts)

    def apply(self, graph: HostGraph) -> ApplyReport:
        problems = self.check(graph)
        if problems:
            self.last_report = ApplyReport(errors=tuple(problems))
            return self.last_report
        network = self._network(graph)
        owned = switch_namespaces(network, self.host)
        report = self.kernel.apply(kernel_graph(graph, owned))
        if not report.ok:
            self.last_report = report
            return report
        self.network = network
        self._applied = None
        try:
            for namespace, device in ports(graph, owned):
                dev = graph.device(namespace, device)
                peer = self._peer(graph, namespace, device)
                if peer is not None:
                    offloads.complete_frames(*peer)
                elif dev.kind is DeviceKind.NIC:
                    segment = self.kernel._segment(dev)
                    offloads.complete_frames(self.names.segment_namespace(segment.name),
                                             readback.segment_port(self.names, self.host, namespace, device))
            host_namespace = self.names.graph_namespace(self.host, self._host_namespace(graph))
            process.start(self.run_dir, self.host, host_namespace, network, self.mode, self.batched)
            self._applied = graph
        except (OSError, process.SwitchError) as error:
            report = ApplyReport(errors=(Problem(self.host, f"userspace switch: {error}"),))
        self.last_report = report
        return report

    def _host_namespace(self, graph: HostGraph) -> str:
        return next(ns.name for ns in graph.namespaces if ns.name == graph.host or ns.kind.value == "host")

    def _peer(self, graph: HostGraph, namespace: str, device: str) -> tuple[str, str] | None:
        """(kernel namespace, link name) of the other end of a veth port."""
        dev = graph.device(namespace, device)
        if not isinstance(dev.config, Veth):
            return None
        return self.names.graph_namespace(self.host, dev.config.peer_namespace), dev.config.peer

    def realized(self) -> HostGraph:
        """The applied graph while its kernel part reads back exactly and its switch runs with it;
        otherwise what the kernel holds (the switch's part shows as missing)."""
        kernel = self.kernel.realized()
        applied = self._applied
        if applied is None:
            return kernel
        owned = switch_namespaces(self.network, self.host)
        if without_sockets(kernel) == without_sockets(kernel_graph(applied, owned)) and self.counters() is not None:
            sockets = tuple(dev for dev in kernel.devices if dev.kind is DeviceKind.SOCKET)
            return replace(applied, devices=without_sockets(applied).devices + sockets)
        return kernel

    def forget(self) -> None:
        self.kernel.forget()

    def counters(self) -> dict | None:
        return process.counters(self.run_dir, self.host)

    def teardown(self) -> None:
        process.stop(self.run_dir, self.host)
        self.kernel.teardown()
        self._applied = None
