"""Diagrams of a compiled network, optionally with one traced packet's path drawn over it.

Contract: ``Diagram(network, trace=None)`` lays out the pictures' content once: one box per host
(its underlay address), in it the host's underlay NIC, each network's bridge and tunnel (encap and
VNI), each router and each endpoint namespace (kind and addresses); the underlay segments outside
the boxes. Gray lines are the topology (veth, bridge port, tunnel over its NIC, NIC on a segment).
With a trace, its hops become a numbered path (1, 2, ... in the order the packet went) in blue:
a step that encapsulates is labelled with the encapsulation and VNI, the place the packet died is
red with the trace's reason, the place it was delivered green. ``dot()`` is Graphviz source,
``mermaid()`` a Mermaid flowchart (GitHub renders it), ``render(fmt)`` SVG or PNG bytes through
Graphviz (the ``graphviz`` binding runs ``dot``). Deterministic: hosts in natural order (host-2 before host-10), then their parts.
"""

import re
from dataclasses import dataclass, field

from netvirt.graph import Bridge, Device, DeviceKind, HostGraph, NetworkGraph, NamespaceKind, Tunnel, Veth
from netvirt.trace.model import Trace

PATH_COLOUR, DROP_COLOUR, DELIVER_COLOUR, TOPOLOGY_COLOUR = "#1f6feb", "#d1242f", "#1a7f37", "#8c959f"
TUNNELS = {DeviceKind.VXLAN: "VXLAN", DeviceKind.GENEVE: "Geneve", DeviceKind.NVGRE: "NVGRE"}
DROPS = ("filter_drop", "filter_reject", "drop")


@dataclass
class Node:
    key: str
    label: str
    shape: str
    host: str | None  # None: outside every host (an underlay segment)


@dataclass
class Diagram:
    network: NetworkGraph
    trace: Trace | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    path: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, label)
    visits: dict[str, list[int]] = field(default_factory=dict)  # node -> path positions
    end: tuple[str, str, str] | None = None  # (node, "drop"|"deliver", reason)

    def __post_init__(self) -> None:
        self._owner: dict[tuple[str, str, str], str] = {}  # (host, namespace, device) -> node
        for graph in sorted(self.network.hosts, key=lambda g: _natural(g.host)):
            self._host(graph)
        for segment in sorted(self.network.segments, key=lambda s: s.name):
            key = _id("segment", segment.name)
            self.nodes[key] = Node(key, f"{segment.name}\\nunderlay segment, MTU {segment.mtu}", "ellipse", None)
            for attachment in segment.attachments:
                nic = self._owner.get((attachment.host, attachment.namespace, attachment.device))
                if nic:
                    self.edges.append((nic, key))
        if self.trace is not None:
            self._overlay(self.trace)

    # --- topology ---------------------------------------------------------------------------------

    def _host(self, graph: HostGraph) -> None:
        host = graph.host
        kinds = {ns.name: ns.kind for ns in graph.namespaces}
        by_name = {(d.namespace, d.name): d for d in graph.devices}
        for ns in graph.namespaces:
            if ns.name == host:
                continue
            addresses = [str(a.ip) for d in graph.devices if d.namespace == ns.name for a in d.addresses]
            kind = "router" if ns.kind is NamespaceKind.ROUTER else str(ns.kind)
            label = f"{ns.name}\\n{kind}" + (f" {', '.join(addresses[:2])}" if addresses else "")
            key = _id(host, ns.name)
            self.nodes[key] = Node(key, label, "box3d" if ns.kind is NamespaceKind.ROUTER else "component", host)
            for device in graph.devices:
                if device.namespace == ns.name:
                    self._owner[(host, ns.name, device.name)] = key
            self._owner[(host, ns.name, "")] = key
        for device in graph.devices:
            if device.namespace != host:
                continue
            label = _device_label(device)
            if label is None:
                continue
            key = _id(host, device.name)
            self.nodes[key] = Node(key, label, "box", host)
            self._owner[(host, host, device.name)] = key
        for device in graph.devices:  # ports: a bridge port belongs to its bridge
            if device.namespace == host and (host, host, device.name) not in self._owner:
                owner = self._port_owner(host, device, by_name, kinds)
                if owner:
                    self._owner[(host, host, device.name)] = owner
        self._owner[(host, host, "")] = self._owner.get((host, host, "eth0"), "")
        for device in graph.devices:
            here = self._owner.get((host, device.namespace, device.name))
            if device.namespace == host and device.master:
                bridge = self._owner.get((host, host, device.master))
                peer = self._peer(host, device)
                if bridge and peer and peer != bridge:
                    self.edges.append((peer, bridge))
                elif bridge and here and here != bridge:
                    self.edges.append((bridge, here))  # a tunnel: drawn between its bridge and its NIC
            if isinstance(device.config, Tunnel) and device.parent:
                nic = self._owner.get((host, host, device.parent))
                if here and nic:
                    self.edges.append((here, nic))

    def _port_owner(self, host: str, device: Device, by_name: dict, kinds: dict) -> str | None:
        if device.master:
            return self._owner.get((host, host, device.master))
        return self._peer(host, device)

    def _peer(self, host: str, device: Device) -> str | None:
        if isinstance(device.config, Veth) and device.config.peer_namespace != host:
            return self._owner.get((host, device.config.peer_namespace, ""))
        return None

    # --- the packet's path -----------------------------------------------------------------------

    def _overlay(self, trace: Trace) -> None:
        stops: list[tuple[str, str]] = []  # (node, label of the step leaving it)
        for hop in trace.hops:
            host, _, namespace = hop.namespace.partition(":")
            node = self._owner.get((host, namespace, hop.device or "")) or self._owner.get((host, namespace, ""))
            if not node:
                continue
            label = ""
            if hop.action == "encap":
                device = next((d for g in self.network.hosts if g.host == host for d in g.devices
                               if d.namespace == namespace and d.name == hop.device), None)
                if device is not None and isinstance(device.config, Tunnel):
                    label = f"encap {TUNNELS.get(device.kind, device.kind)} VNI {device.config.vni}"
            if stops and stops[-1][0] == node:
                stops[-1] = (node, stops[-1][1] or label)
                continue
            if stops and self.nodes[stops[-1][0]].host != self.nodes[node].host:
                segment = next((b for a, b in self.edges if a == stops[-1][0] and b.startswith(_id("segment", ""))), None)
                if segment:
                    stops.append((segment, ""))
            stops.append((node, label))
        for position, (node, _) in enumerate(stops, start=1):
            self.visits.setdefault(node, []).append(position)
        for number, ((here, label), (there, _)) in enumerate(zip(stops, stops[1:]), start=1):
            self.path.append((here, there, f"{number}" + (f": {label}" if label else "")))
        if stops:
            last = stops[-1][0]
            dropped = trace.disposition.value != "delivered"
            self.end = (last, "drop" if dropped else "deliver", trace.reason)

    # --- output ----------------------------------------------------------------------------------

    def dot(self) -> str:
        """Graphviz source."""
        import graphviz

        graph = graphviz.Digraph("netvirt", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "fontsize": "11",
                                                         "nodesep": "0.25", "ranksep": "0.5", "newrank": "true"},
                                 node_attr={"fontname": "Helvetica", "fontsize": "10", "style": "filled",
                                            "fillcolor": "white"},
                                 edge_attr={"fontname": "Helvetica", "fontsize": "9", "arrowhead": "none",
                                            "color": TOPOLOGY_COLOUR})
        hosts = sorted({n.host for n in self.nodes.values() if n.host}, key=_natural)
        for host in hosts:
            graph_host = next(g for g in self.network.hosts if g.host == host)
            underlay = next((str(a) for d in graph_host.devices if d.namespace == host and d.name == "eth0"
                             for a in d.addresses), "")
            with graph.subgraph(name=f"cluster_{_id(host)}") as box:
                box.attr(label=f"host {host}" + (f"  (underlay {underlay})" if underlay else ""), style="rounded",
                         color="#57606a", fontsize="11")
                for node in (n for n in self.nodes.values() if n.host == host):
                    box.node(node.key, **self._node_attrs(node))
        for node in (n for n in self.nodes.values() if n.host is None):
            graph.node(node.key, **self._node_attrs(node))
        for a, b in dict.fromkeys(self.edges):
            graph.edge(a, b)
        for a, b, label in self.path:
            dropped_here = self.end is not None and self.end[1] == "drop" and b == self.end[0] and (a, b, label) == self.path[-1]
            graph.edge(a, b, label=label, color=DROP_COLOUR if dropped_here else PATH_COLOUR, fontcolor=PATH_COLOUR,
                       penwidth="2.2", arrowhead="normal", constraint="false")
        return graph.source

    def _node_attrs(self, node: Node) -> dict[str, str]:
        attrs = {"label": node.label.replace("\\n", "\n"), "shape": node.shape}
        if node.key in self.visits:
            steps = ",".join(map(str, self.visits[node.key]))
            attrs.update(color=PATH_COLOUR, penwidth="2", xlabel=f"#{steps}", fontcolor="black")
        if self.end is not None and self.end[0] == node.key:
            colour = DROP_COLOUR if self.end[1] == "drop" else DELIVER_COLOUR
            attrs.update(color=colour, fillcolor="#ffebe9" if self.end[1] == "drop" else "#dafbe1", penwidth="2.5")
            attrs["label"] += "\n" + _outcome(*self.end[1:])
        return attrs

    def mermaid(self) -> str:
        """A Mermaid flowchart (``flowchart LR``; a subgraph per host)."""
        lines = ["flowchart LR"]
        hosts = sorted({n.host for n in self.nodes.values() if n.host}, key=_natural)
        for host in hosts:
            lines.append(f'  subgraph {_id("host", host)}["host {host}"]')
            for node in (n for n in self.nodes.values() if n.host == host):
                lines.append(f"    {node.key}{self._mermaid_shape(node)}")
            lines.append("  end")
        for node in (n for n in self.nodes.values() if n.host is None):
            lines.append(f"  {node.key}{self._mermaid_shape(node)}")
        for a, b in dict.fromkeys(self.edges):
            lines.append(f"  {a} --- {b}")
        for a, b, label in self.path:
            lines.append(f'  {a} ==>|"{label}"| {b}')
        count = len(dict.fromkeys(self.edges))
        if self.path:
            lines.append(f"  linkStyle {','.join(str(count + i) for i in range(len(self.path)))} stroke:{PATH_COLOUR},stroke-width:3px")
            lines.append(f"  classDef visited stroke:{PATH_COLOUR},stroke-width:2px")
            lines.append(f"  class {','.join(self.visits)} visited")
        if self.end is not None:
            colour = DROP_COLOUR if self.end[1] == "drop" else DELIVER_COLOUR
            lines.append(f"  classDef {self.end[1]} stroke:{colour},stroke-width:3px,color:{colour}")
            lines.append(f"  class {self.end[0]} {self.end[1]}")
        return "\n".join(lines) + "\n"

    def _mermaid_shape(self, node: Node) -> str:
        label = node.label.replace("\\n", "<br/>").replace('"', "'")
        if node.key in self.visits:
            label += f"<br/>#{','.join(map(str, self.visits[node.key]))}"
        if self.end is not None and self.end[0] == node.key:
            label += "<br/>" + _outcome(*self.end[1:]).replace('"', "'")
        return f'(["{label}"])' if node.host is None else f'["{label}"]'

    def render(self, fmt: str) -> bytes:
        """SVG or PNG bytes (Graphviz ``dot``)."""
        import graphviz

        return graphviz.Source(self.dot()).pipe(format=fmt)


def _device_label(device: Device) -> str | None:
    """The label of a host-namespace device drawn as a node of its own (None: a port)."""
    if isinstance(device.config, Bridge):
        return f"{device.name}\\nbridge"
    if isinstance(device.config, Tunnel):
        return f"{device.name}\\n{TUNNELS.get(device.kind, device.kind)} VNI {device.config.vni}"
    if device.kind is DeviceKind.NIC:
        addresses = ", ".join(str(a.ip) for a in device.addresses)
        return f"{device.name}\\nNIC {addresses}".rstrip()
    return None


def _natural(name: str) -> list:
    """``host-2`` before ``host-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _id(*parts: str) -> str:
    return "n_" + "_".join(re.sub(r"[^A-Za-z0-9]", "_", part) for part in parts)


def _outcome(end: str, reason: str, width: int = 80) -> str:
    text = f"DROPPED: {reason}" if end == "drop" else reason
    return text if len(text) <= width else text[: width - 1] + "…"
