"""The ``linux`` backend: one host's device graph realised in the real kernel.

Contract: ``LinuxBackend(host, deployment=...)`` implements ``dataplane.api.Backend``.

- ``capabilities()``: what this kernel can create (``probe``) among the device kinds this backend
  builds (nic, veth, bridge, vxlan, socket), with filtering and NAT through nftables or iptables.
- ``check(graph)``: ``plan`` plus what only this backend refuses (names the kernel cannot take,
  rules nftables/iptables cannot express, links between model devices); ``apply`` refuses a graph
  with any problem whole, before touching the kernel.
- ``apply(graph)``: converges (``Builder``, ownership recorded first) to exactly ``graph``: every
  graph namespace is a kernel namespace (``Names.graph_namespace``: ``nv-DEPLOYMENT-HOST`` for the
  host's own, ``nv-DEPLOYMENT-HOST.NS`` for the others); a ``nic`` is a veth into its underlay
  segment's namespace (``nv-DEPLOYMENT-_SEGMENT``), where a bridge joins the NICs of every host
  on that segment; bridges, veth pairs, VXLAN devices with their static FDB, addresses (IPv6
  only where the graph gives one), routes, permanent neighbours, forwarding and rp_filter
  sysctls, and the namespace's filter and NAT chains through nftables (default) or iptables.
  Namespaces and links of this host that the graph no longer has are removed. Kernel errors come
  back as ``ApplyReport.errors``; the next ``apply`` converges from wherever it stopped.
  After a successful ``apply(old)``, ``apply(new)`` is incremental: it trusts that the kernel
  still holds ``old`` and converges only what ``diff(old, new)`` names (and what re-creating a
  device disturbs). The first apply, one after a failed apply or ``teardown``, and one after
  ``forget()`` converge everything (the kernel state is unknown; this also repairs drift).
- ``realized()``: the host's graph read back from the kernel (``readback``). While the trust of
  incremental applies holds, it reads again only the namespaces they touched since the last
  ``realized()`` and takes the rest from that read-back; otherwise (first read, after a full or
  failed apply, ``forget()``, ``teardown``) it reads everything, as ``read(graph)`` always does.
  ``drift(graph)`` lists what the graph model cannot show (foreign links, re-ordered or foreign
  rules), always from the kernel.
- ``teardown()``: removes this host's namespaces (and with them everything inside), its ports on
  the underlay segments, and a segment nobody uses any more — exactly what the record lists.

A socket device is an application's: the backend creates nothing for it, and ``realized`` shows
it while something listens on its port in its namespace.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

from netvirt.dataplane.api import ApplyReport, Capabilities, Encapsulation, Observer, plan
from netvirt.dataplane.kernel import netns, nftables, targets
from netvirt.dataplane.linux import readback
from netvirt.dataplane.kernel.build import Builder, NotOwned
from netvirt.dataplane.kernel.cleanup import cleanup, remove_pins
from netvirt.dataplane.kernel.links import LinkError, VxlanSpec
from netvirt.dataplane.kernel.naming import PRODUCTION_PREFIX, NameError_, Names, check_link_name
from netvirt.dataplane.kernel.ownership import (
    STATE_DIR,
    CleanupReport,
    Owned,
    OwnedLink,
    OwnedNamespace,
    RecordError,
)
from netvirt.dataplane.kernel.observe import KernelObserver
from netvirt.dataplane.kernel.probe import probe
from netvirt.dataplane.kernel.rulesets import Ruleset, RulesetError
from netvirt.dataplane.kernel.targets import RuleTarget
from netvirt.graph import (
    DROP_LIST_PROGRAM,
    FLOOD_MAC,
    Bridge,
    Device,
    DeviceKind,
    HookKind,
    HostGraph,
    NetworkGraph,
    ObjectKind,
    Op,
    Problem,
    RpFilter,
    Segment,
    Tunnel,
    Veth,
    diff,
    drop_list,
)

Filter = Literal["nftables", "iptables"]
FILTERS: tuple[Filter, ...] = ("nftables", "iptables")
DEFAULT_DEPLOYMENT = "netvirt"
SEGMENT_BRIDGE = "segment"
VXLAN_HEADERS = 8 + 8 + 14  # UDP, VXLAN and the inner Ethernet header around the inner IP packet
# device kinds this backend builds (the kernel may support more; see capabilities())
BUILT_KINDS = frozenset({DeviceKind.NIC, DeviceKind.VETH, DeviceKind.BRIDGE, DeviceKind.VXLAN, DeviceKind.SOCKET})
RP_FILTER = {RpFilter.OFF: 0, RpFilter.STRICT: 1, RpFilter.LOOSE: 2}
BUILD_LOCK_TIMEOUT = 600.0  # hosts of one deployment build one after the other (one record)
Progress = Callable[[str, str], None]
"""Called with (host, what is being done now) while ``apply``/``teardown`` run."""


def segments_of(network: NetworkGraph) -> dict[tuple[str, str, str], Segment]:
    """(host, namespace, device) -> the underlay segment that NIC plugs into."""
    return {
        (attachment.host, attachment.namespace, attachment.device): segment
        for segment in network.segments
        for attachment in segment.attachments
    }


class LinuxBackend:
    """One host's kernel data plane (see the module docstring)."""

    name: ClassVar[str] = "linux"

    def __init__(
        self,
        host: str,
        *,
        deployment: str = DEFAULT_DEPLOYMENT,
        filter: Filter = "nftables",
        segments: Mapping[tuple[str, str, str], Segment] | None = None,
        prefix: str = PRODUCTION_PREFIX,
        state_dir: Path = STATE_DIR,
        progress: Progress | None = None,
    ) -> None:
        if filter not in FILTERS:
            raise ValueError(f"filter backend {filter!r}: choose one of {', '.join(FILTERS)}")
        self.host = host
        self.names = Names(deployment, prefix)
        self.target: RuleTarget = targets.TARGETS[filter]
        self.segments = dict(segments or {})
        self.state_dir = Path(state_dir)
        self.progress = progress or (lambda host, what: None)
        self._applied: HostGraph | None = None
        # (graph, rule target name) of the last successful apply, which the next one trusts (see apply)
        self._trusted: tuple[HostGraph, str] | None = None
        # the last realized() read-back, and the graph namespaces incremental applies have touched
        # since: while the trust holds, the next realized() reads only those again
        self._read_back: HostGraph | None = None
        self._touched: set[str] = set()
        self.last_report: ApplyReport | None = None
        self.last_teardown: list[CleanupReport] = []

    # --- plan -----------------------------------------------------------------------------------

    @classmethod
    def declared(cls) -> Capabilities:
        """What this backend builds where the kernel has everything: nic, veth, bridge, VXLAN and
        socket devices, filter and NAT rules (through a rule target), and one device hook: a NIC's
        drop list (the XDP hook ``DROP_LIST_PROGRAM``, realised as an nftables netdev ingress drop)."""
        return Capabilities(backend=cls.name, device_kinds=BUILT_KINDS, encapsulations=frozenset({Encapsulation.VXLAN}),
                            hooks=frozenset({HookKind.XDP}), netfilter=True, nat=True)

    def capabilities(self) -> Capabilities:
        """``declared()`` narrowed to what this kernel can create (``probe``)."""
        findings = probe()
        found, declared = findings.for_plan(self.name), self.declared()
        reasons = dict(found.reasons)
        if not findings.nftables:
            reasons[HookKind.XDP.value] = "drop lists need nftables (netdev ingress), which does not work here"
        for kind in found.device_kinds - declared.device_kinds:
            reasons[kind.value] = f"netvirt's linux backend does not build {kind.value} devices"
        kinds = found.device_kinds & declared.device_kinds
        return Capabilities(
            backend=self.name,
            device_kinds=kinds,
            encapsulations=frozenset(e for e in found.encapsulations if DeviceKind(e.value) in kinds),
            hooks=declared.hooks if findings.nftables else frozenset(),
            netfilter=found.netfilter,
            nat=found.nat,
            where=found.where,
            reasons=reasons,
        )

    @classmethod
    def observer(cls, deployment: str, *, prefix: str = PRODUCTION_PREFIX) -> Observer:
        """Capture and probes in the kernel namespaces of ``deployment`` (for ``verify``)."""
        return KernelObserver(Names(deployment, prefix))

    def check(self, graph: HostGraph) -> list[Problem]:
        """Every reason this backend cannot realise ``graph`` (empty: it can)."""
        problems = plan(graph, self.capabilities())
        if graph.host != self.host:
            problems.insert(0, Problem(graph.host, f"graph is for host {graph.host!r}, this backend is {self.host!r}"))
        return problems + self._kernel_problems(graph)

    def _kernel_problems(self, graph: HostGraph) -> list[Problem]:
        problems: list[Problem] = []
        host = graph.host
        if self.target.problem() is not None:
            problems.append(Problem(host, f"filter backend {self.target.name} does not work here; choose the other one"))
        for ns in graph.namespaces:
            try:
                self.names.graph_namespace(host, ns.name)
            except NameError_ as error:
                problems.append(Problem(f"{host}:{ns.name}", str(error)))
            try:
                ruleset = Ruleset(filter=ns.filter, nat=ns.nat)
            except RulesetError as error:
                problems.append(Problem(f"{host}:{ns.name}", f"rules the kernel cannot realise: {error}"))
                continue
            problem = ruleset.netfilter_problem() if self.rule_target(ruleset).name in FILTERS else None
            if problem is not None:
                problems.append(Problem(f"{host}:{ns.name}", f"rules the kernel cannot realise: {problem}"))
        for dev in graph.devices:
            where = f"{host}:{dev.namespace}/{dev.name}"
            if dev.kind is DeviceKind.SOCKET:
                continue
            try:
                check_link_name(dev.name)
            except NameError_ as error:
                problems.append(Problem(where, f"{error}; rename the device in the graph"))
            for hook in dev.hooks:
                if hook.kind is HookKind.XDP and (hook.program != DROP_LIST_PROGRAM or dev.kind is not DeviceKind.NIC):
                    problems.append(Problem(where, f"XDP program '{hook.program}' cannot be realised by backend "
                                            f"'{self.name}' (only a NIC's {DROP_LIST_PROGRAM} list); backends that can: sim"))
            if isinstance(dev.config, Bridge) and not dev.config.learning:
                problems.append(Problem(where, "bridge learning off is not realised by the linux backend; "
                                        "backends that can: sim"))
            if isinstance(dev.config, Tunnel):
                if dev.config.local is None:
                    problems.append(Problem(where, "a kernel VXLAN device needs its local underlay address"))
                if any(entry.remote is None for entry in dev.config.fdb):
                    problems.append(Problem(where, "tunnel FDB entries need a remote underlay address"))
                problems.extend(_tunnel_mtu_problems(graph, dev, where))
            if dev.kind is DeviceKind.NIC:
                try:
                    self.names.segment_namespace(self._segment(dev).name)
                except NameError_ as error:
                    problems.append(Problem(where, str(error)))
        for link in graph.links:
            problems.append(Problem(f"{host}:{link.a}<->{link.b}", "wires between model devices cannot be realised "
                                    "by backend 'linux'; backends that can: sim"))
        return problems

    def rule_target(self, ruleset: Ruleset) -> RuleTarget:
        """The rule target that realises ``ruleset`` (here: the one chosen by ``filter``)."""
        return self.target

    def device_hooks(self, build: Builder, namespace: str, dev: Device) -> None:
        """Realise the hooks of NIC ``dev`` in kernel ``namespace``: its drop list as an nftables
        netdev ingress chain (none: no chain). An XDP drop list the ``ebpf`` backend left (the host
        switched backends) is detached and unpinned."""
        xdp = self.names.xdp_pins(namespace, dev.name)
        if xdp.exists():
            netns.run(namespace, ["ip", "link", "set", "dev", dev.name, "xdp", "off"])
            remove_pins(xdp)
        build.drop_list(namespace, dev.name, drop_list(dev))

    def hooks_in_place(self, namespace: str, dev: Device) -> bool:
        """Whether NIC ``dev``'s hooks are realised in kernel ``namespace``."""
        return nftables.drop_list_in_place(namespace, nftables.drop_list_table(self.names.nft_table, dev.name))

    def _segment(self, nic: Device) -> Segment:
        """The segment ``nic`` plugs into: as given, else one per NIC name shared by all hosts
        (every host's eth0 on segment "eth0")."""
        return self.segments.get((self.host, nic.namespace, nic.name)) or Segment(name=nic.name, mtu=nic.mtu)

    # --- apply ----------------------------------------------------------------------------------

    def apply(self, graph: HostGraph) -> ApplyReport:
        self.last_report = self._apply(graph)
        return self.last_report

    def _apply(self, graph: HostGraph) -> ApplyReport:
        problems = self.check(graph)
        if problems:
            return ApplyReport(errors=tuple(problems))  # nothing touched: the trust still holds
        trusted, self._trusted = self._trusted, None  # until this apply has succeeded
        if trusted is not None and trusted[1] == self.target.name and self._namespaces_exist(trusted[0]):
            before, scope = trusted[0], _Scope.changed(trusted[0], graph)
            self._touched |= scope.touched
        else:
            before, scope = self._read(graph), _Scope.everything(graph)
            self._read_back = None
        self._applied = graph
        try:
            with Builder(self.names, self.state_dir, BUILD_LOCK_TIMEOUT) as build:
                _Realisation(self, build, graph, scope).run()
        except (LinkError, NotOwned, RecordError, RulesetError, netns.CommandFailed, OSError) as error:
            return ApplyReport(errors=(Problem(graph.host, f"kernel: {error}"),))
        self._trusted = (graph, self.target.name)
        # sockets are the applications' (not made here): counted neither before nor after
        return ApplyReport.from_diff(diff(without_sockets(before), without_sockets(graph)))

    def forget(self) -> None:
        """Stop trusting the last apply: the next ``apply`` converges everything from what the
        kernel holds (a full resync, which also repairs drift) instead of only what changed."""
        self._trusted = None

    def _namespaces_exist(self, graph: HostGraph) -> bool:
        """Whether every kernel namespace of ``graph`` still exists (one directory listing): a
        cheap guard against a teardown from elsewhere, not a drift check."""
        return {self.names.graph_namespace(graph.host, ns.name) for ns in graph.namespaces} <= set(netns.names())

    # --- read back ------------------------------------------------------------------------------

    def realized(self) -> HostGraph:
        """The host's graph read back from the kernel, described with the last applied graph.
        Trusts what the last apply trusts: after incremental applies, namespaces none of them
        touched since the last ``realized()`` are taken from that read-back, not read again."""
        previous = self._read_back if self._trusted is not None else None
        self._read_back = self._with_hooks(readback.read_host(self.names, self.host, self._applied, self.segments,
                                                              previous=previous, stale=self._touched), self._applied)
        self._touched = set()
        return self._read_back

    def read(self, reference: HostGraph) -> HostGraph:
        """The host's graph read back from the kernel, described (levels, techniques, origins,
        rules by digest) with the help of ``reference``, usually the desired graph."""
        return self._read(reference)

    def _read(self, reference: HostGraph | None) -> HostGraph:
        return self._with_hooks(readback.read_host(self.names, self.host, reference, self.segments), reference)

    def _with_hooks(self, found: HostGraph, reference: HostGraph | None) -> HostGraph:
        """``found`` with the hooks of ``reference``'s NICs that are in place (read-back cannot
        tell a drop list's program from its rules: the reference's are shown when one is there)."""
        if reference is None:
            return found
        wanted = {dev.key: dev.hooks for dev in reference.devices if dev.hooks}
        if not wanted:
            return found
        devices = tuple(
            replace(dev, hooks=wanted[dev.key])
            if dev.key in wanted and self.hooks_in_place(self.names.graph_namespace(self.host, dev.namespace), dev)
            else dev
            for dev in found.devices
        )
        return replace(found, devices=devices)

    def drift(self, graph: HostGraph) -> list[str]:
        """What differs from ``graph`` that the graph model cannot show: links netvirt did not
        make in the host's namespaces, and rule-level differences (missing, extra, foreign or
        re-ordered rules, a missing table or chain)."""
        found = []
        existing = set(netns.names())
        for ns in graph.namespaces:
            name = self.names.graph_namespace(graph.host, ns.name)
            if name not in existing:
                continue
            ruleset = Ruleset(filter=ns.filter, nat=ns.nat)
            if ruleset.chains():
                target = targets.in_use(self.names, name) or self.target
                found += target.drift(self.names, name, ruleset)
            wanted = {dev.name for dev in graph.devices_in(ns.name) if dev.kind is not DeviceKind.SOCKET}
            found += [f"{name}: link {link} is not in the graph" for link in readback.link_names(name)
                      if link not in wanted | {"lo"}]
        return found

    def rules_in_use(self, namespace: str) -> str | None:
        """The name of the rule target whose rules graph namespace ``namespace`` holds (None: none)."""
        target = targets.in_use(self.names, self.names.graph_namespace(self.host, namespace))
        return None if target is None else target.name

    # --- teardown -------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove this host's kernel objects, and underlay segments no host uses any more."""
        self.progress(self.host, "tearing down")
        self._trusted = None
        self.last_teardown = [
            cleanup(self.names, self.state_dir, select=self._host_objects),
            cleanup(self.names, self.state_dir, select=self._unused_segments),
        ]
        self._applied = None

    def _host_objects(self, recorded: Sequence[Owned]) -> list[Owned]:
        """A cleanup selector: this host's namespaces, what is in them, and its segment ports."""
        mine = set(self.names.host_namespaces(self.host, [o.name for o in recorded if isinstance(o, OwnedNamespace)]))
        ports = _expected_ports(self.names, [o for o in recorded if _where(o) in mine], recorded)
        return [obj for obj in recorded if _where(obj) in mine or _port_key(obj) in ports]

    def _unused_segments(self, recorded: Sequence[Owned]) -> list[Owned]:
        """A cleanup selector: segment namespaces none of whose recorded ports has a host left."""
        expected = _expected_ports(self.names, recorded, recorded)
        used = {obj.namespace for obj in recorded if _port_key(obj) in expected}
        return [obj for obj in recorded if readback.is_segment(self.names, _where(obj)) and _where(obj) not in used]


def without_sockets(graph: HostGraph) -> HostGraph:
    """``graph`` without its socket devices (applications', not a backend's)."""
    return replace(graph, devices=tuple(dev for dev in graph.devices if dev.kind is not DeviceKind.SOCKET))


def _where(obj: Owned) -> str:
    """The namespace an owned object is (a namespace) or lives in."""
    return obj.name if isinstance(obj, OwnedNamespace) else obj.namespace


def _port_key(obj: Owned) -> tuple[str, str] | None:
    return (obj.namespace, obj.name) if isinstance(obj, OwnedLink) else None


def _expected_ports(names: Names, host_links: Iterable[Owned], recorded: Iterable[Owned]) -> set[tuple[str, str]]:
    """(segment namespace, port) that would pair with ``host_links``, for every segment in
    ``recorded``: a NIC's segment port is named from (host, namespace, NIC) alone."""
    segments = {o.name for o in recorded if isinstance(o, OwnedNamespace) and readback.is_segment(names, o.name)}
    found = set()
    for obj in host_links:
        if isinstance(obj, OwnedLink) and (place := readback.graph_place(names, obj.namespace)) is not None:
            port = readback.segment_port(names, place[0], place[1], obj.name)
            found |= {(segment, port) for segment in segments}
    return found


@dataclass(frozen=True, slots=True)
class _Scope:
    """What one apply converges: the graph namespaces whose own state (namespace, loopback,
    links to prune, sysctls, routes, neighbours) is converged, the devices (namespace, name)
    converged, and the namespaces whose filter/NAT rules are."""

    namespaces: frozenset[str]
    devices: frozenset[tuple[str, str]]
    rules: frozenset[str]
    touched: frozenset[str]
    """The graph namespaces whose kernel state converging this scope may change (what a read-back
    must look at again): the above, and where the other ends of changed or removed veths are."""

    @classmethod
    def everything(cls, graph: HostGraph) -> "_Scope":
        """All of ``graph``: the full converge, for a kernel whose state is unknown."""
        names = frozenset(ns.name for ns in graph.namespaces)
        return cls(names, frozenset(dev.key for dev in graph.devices), names, names)

    @classmethod
    def changed(cls, old: HostGraph, new: HostGraph) -> "_Scope":
        """What differs between ``old`` (realised by the last successful apply) and ``new``, plus
        what converging it may disturb: everything a device that may be re-created takes along
        (the other end of a veth pair, ports of a bridge, a VXLAN on its underlay device, bridge
        FDB entries naming it; its namespace's routes and neighbours)."""
        namespaces: set[str] = set()
        devices: set[tuple[str, str]] = set()
        rules: set[str] = set()
        peers: set[str] = set()
        for change in diff(old, new).changes:
            if change.kind is ObjectKind.NAMESPACE and change.new is not None:
                namespaces.add(change.new.name)
                if change.op is Op.ADD or {"filter", "nat"} & set(change.fields):
                    rules.add(change.new.name)
            elif change.kind is ObjectKind.DEVICE:
                namespaces.add((change.new or change.old).namespace)  # a removed one: prune it there
                if change.new is not None:
                    devices.add(change.new.key)
                peers |= {end.config.peer_namespace for end in (change.old, change.new)
                          if end is not None and isinstance(end.config, Veth)}
        by_key = {dev.key: dev for dev in new.devices}
        before = {dev.key: dev for dev in old.devices}
        pending = list(devices)
        while pending:
            dev = by_key[pending.pop()]
            if not _may_recreate(before.get(dev.key), dev):
                continue
            more = [other.key for other in new.devices_in(dev.namespace) if _refers(other, dev.name)]
            if isinstance(dev.config, Veth):
                more.append((dev.config.peer_namespace, dev.config.peer))
            for key in more:
                if key in by_key and key not in devices:
                    devices.add(key)
                    namespaces.add(key[0])
                    pending.append(key)
        present = {ns.name for ns in new.namespaces}
        touched = namespaces | rules | {namespace for namespace, _ in devices} | peers
        return cls(frozenset(namespaces & present), frozenset(devices), frozenset(rules), frozenset(touched & present))


def _may_recreate(old: Device | None, new: Device) -> bool:
    """Whether converging ``old`` into ``new`` may delete and re-create the kernel link (which
    takes its ports, FDB entries, routes and neighbours with it)."""
    if old is None or old.kind is not new.kind or old.parent != new.parent:
        return True
    if isinstance(old.config, Tunnel) and isinstance(new.config, Tunnel):
        return replace(old.config, fdb=(), flood=()) != replace(new.config, fdb=(), flood=())
    return isinstance(new.config, Veth) and old.config != new.config


def _refers(dev: Device, name: str) -> bool:
    """Whether ``dev`` names device ``name`` of its namespace (as bridge, underlay or FDB port)."""
    return dev.master == name or dev.parent == name or (
        isinstance(dev.config, Bridge) and any(entry.device == name for entry in dev.config.fdb))


class _Realisation:
    """One ``apply``: the steps, in the order the kernel needs them, over the ``scope``."""

    def __init__(self, backend: LinuxBackend, build: Builder, graph: HostGraph, scope: _Scope) -> None:
        self.backend, self.build, self.graph, self.scope = backend, build, graph, scope
        self.names = backend.names
        self.kernel = {ns.name: self.names.graph_namespace(graph.host, ns.name) for ns in graph.namespaces}
        self.links = [dev for dev in graph.devices if dev.kind is not DeviceKind.SOCKET and dev.key in scope.devices]
        self.spaces = [ns for ns in graph.namespaces if ns.name in scope.namespaces]
        self.by_namespace: dict[str, list[Device]] = {ns.name: [] for ns in self.spaces}
        for dev in graph.devices:
            if dev.namespace in self.by_namespace and dev.kind is not DeviceKind.SOCKET:
                self.by_namespace[dev.namespace].append(dev)

    def step(self, what: str) -> None:
        self.backend.progress(self.graph.host, what)

    def run(self) -> None:
        self.step("namespaces")
        self.namespaces()
        self.step("links")
        self.devices()
        self.step("addresses")
        self.addresses()
        self.step("forwarding")
        self.forwarding()
        self.step("routes and neighbours")
        self.routes()
        self.step("device hooks")
        for dev in self.links:
            if dev.kind is DeviceKind.NIC:
                self.backend.device_hooks(self.build, self.kernel[dev.namespace], dev)
        self.step("filter and NAT rules")
        self.rules()
        self.step("done")

    def namespaces(self) -> None:
        for ns in self.spaces:
            self.build.named_namespace(self.kernel[ns.name])
        recorded = [obj.name for obj in self.build.record.objects if isinstance(obj, OwnedNamespace)]
        for name in self.names.host_namespaces(self.graph.host, recorded):
            if name not in self.kernel.values():
                self.build.remove_namespace(name)

    def devices(self) -> None:
        build, kernel = self.build, self.kernel
        for nic in (dev for dev in self.links if dev.kind is DeviceKind.NIC):
            segment = self.backend._segment(nic)
            where = build.named_namespace(self.names.segment_namespace(segment.name))
            build.bridge(where, SEGMENT_BRIDGE, mtu=segment.mtu)
            port = readback.segment_port(self.names, self.graph.host, nic.namespace, nic.name)
            # the NIC gets its MTU before any tunnel on it (a tunnel's MTU may not exceed its
            # underlay's), its segment port the same: the segment's bridge drops a frame bigger
            # than the port it leaves by, as a switch in front of a smaller NIC does
            build.veth(kernel[nic.namespace], nic.name, where, port, mtu=nic.mtu)
            build.link(where, port, master=SEGMENT_BRIDGE, mtu=nic.mtu)
        for dev in self.links:
            if isinstance(dev.config, Bridge):
                build.bridge(kernel[dev.namespace], dev.name, mtu=dev.mtu, ageing_time=dev.config.ageing_time)
        made = set()
        for dev in self.links:
            if isinstance(dev.config, Veth) and (dev.config.peer_namespace, dev.config.peer) not in made:
                build.veth(kernel[dev.namespace], dev.name, kernel[dev.config.peer_namespace], dev.config.peer)
                made.add(dev.key)
        for dev in self.links:
            if isinstance(dev.config, Tunnel):
                config = dev.config
                spec = VxlanSpec(vni=config.vni, local=config.local, dst_port=config.dst_port,  # type: ignore[arg-type]
                                 src_ports=config.src_ports, ttl=config.ttl, learning=config.learning,
                                 underlay=dev.parent, remote=config.remote, udp_checksum=config.udp_checksum)
                build.vxlan(kernel[dev.namespace], dev.name, spec, mtu=dev.mtu)
        for ns in self.spaces:
            build.prune_links(kernel[ns.name], [dev.name for dev in self.by_namespace[ns.name]])
        for dev in self.links:
            build.link(kernel[dev.namespace], dev.name, mtu=dev.mtu, mac=dev.mac, master=dev.master,
                       nomaster=dev.master is None, up=dev.up)

    def addresses(self) -> None:
        for ns in self.spaces:
            # IPv6 only where the graph gives an address: no link-local addresses, router
            # solicitations or MLD reports from bridges, ports and tunnels the model does not have
            self.build.sysctls(self.kernel[ns.name], {
                f"net/ipv6/conf/{dev.name}/disable_ipv6": int(not any(a.version == 6 for a in dev.addresses))
                for dev in self.by_namespace[ns.name]
            })
        for dev in self.links:
            self.build.addresses(self.kernel[dev.namespace], dev.name, dev.addresses)

    def forwarding(self) -> None:
        for ns in self.spaces:
            rp_filter = RP_FILTER[ns.rp_filter]
            values: dict[str, str | int] = {
                "net.ipv4.ip_forward": int(ns.ip_forward),
                "net.ipv6.conf.all.forwarding": int(ns.ipv6_forward),
                "net.ipv4.conf.all.rp_filter": rp_filter,
                "net.ipv4.conf.default.rp_filter": rp_filter,
            }
            values |= {f"net/ipv4/conf/{dev.name}/rp_filter": rp_filter for dev in self.by_namespace[ns.name]}
            self.build.sysctls(self.kernel[ns.name], values)

    def routes(self) -> None:
        for dev in self.links:
            where = self.kernel[dev.namespace]
            if isinstance(dev.config, Bridge):
                self.build.bridge_fdb(where, dev.name, [(e.mac, e.device) for e in dev.config.fdb])  # type: ignore[misc]
            if isinstance(dev.config, Tunnel):
                flood = [(FLOOD_MAC, remote) for remote in dev.config.flood]
                self.build.vxlan_fdb(where, dev.name, flood + [(e.mac, e.remote) for e in dev.config.fdb])  # type: ignore[misc]
        for ns in self.spaces:
            where = self.kernel[ns.name]
            self.build.routes(where, ns.routes)
            devices = [dev.name for dev in self.by_namespace[ns.name]]
            self.build.namespace_neighbours(where, devices, ns.neighbours)

    def rules(self) -> None:
        for ns in self.graph.namespaces:
            if ns.name not in self.scope.rules:
                continue
            where = self.kernel[ns.name]
            ruleset = Ruleset(filter=ns.filter, nat=ns.nat)
            target = self.backend.rule_target(ruleset)
            for other in targets.others(target) if ruleset.chains() else targets.TARGETS.values():
                other.delete(self.build, where)
            if ruleset.chains():
                target.apply(self.build, where, ruleset)


def _tunnel_mtu_problems(graph: HostGraph, dev: Device, where: str) -> list[Problem]:
    """A VXLAN device bigger than its underlay device can carry: the kernel refuses its MTU."""
    parent = next((d for d in graph.devices if d.namespace == dev.namespace and d.name == dev.parent), None)
    if parent is None or dev.config.local is None:  # type: ignore[union-attr]
        return []
    overhead = (20 if dev.config.local.version == 4 else 40) + VXLAN_HEADERS  # type: ignore[union-attr]
    if dev.mtu <= parent.mtu - overhead:
        return []
    return [Problem(where, f"mtu {dev.mtu} does not fit its underlay {parent.name} (mtu {parent.mtu} minus "
                    f"{overhead} bytes of VXLAN leaves {parent.mtu - overhead}): the kernel refuses it; lower the "
                    "network's mtu or raise the host's")]


def network_backends(
    network: NetworkGraph,
    deployment: str,
    filters: Mapping[str, Filter] | None = None,
    *,
    prefix: str = PRODUCTION_PREFIX,
    state_dir: Path = STATE_DIR,
    progress: Progress | None = None,
    kinds: Mapping[str, str] | None = None,
) -> dict[str, LinuxBackend]:
    """One backend per host of ``network`` (``filters``: per-host choice, default nftables;
    ``kinds``: per-host kernel backend, ``linux`` (default) or ``ebpf``), all plugging their NICs
    into the network's segments, so hosts of both kinds share one overlay."""
    from netvirt.dataplane import registry

    segments = segments_of(network)
    return {
        graph.host: registry.backend_class((kinds or {}).get(graph.host, "linux"))(
            graph.host, deployment=deployment, filter=(filters or {}).get(graph.host, "nftables"), segments=segments,
            prefix=prefix, state_dir=state_dir, progress=progress)
        for graph in network.hosts
    }


def check_network(backends: Mapping[str, LinuxBackend], network: NetworkGraph) -> list[Problem]:
    """Every problem of every host graph of ``network`` (nothing is touched)."""
    return [problem for graph in network.hosts for problem in backends[graph.host].check(graph)]
