"""A containerlab topology (``*.clab.yml``) as a netvirt spec, so a lab can be traced and verified.

Contract: ``from_containerlab(text, filename) -> (data, notes)``: the spec's data (``dump_data``
writes it; it validates with ``loads``) and one line per decision worth telling (which interface
became which attachment), or ``SpecError`` with every problem located in the topology file
(``FILE:LINE:COL: error: topology.nodes.r1.kind: ...``) — nothing is half-converted.

The mapping (``docs/spec.md``, *Importing a containerlab topology*):

- the lab runs on one machine: one netvirt host, named like the lab (its MTU the largest link
  MTU); every network is ``encap: none`` (one machine: nothing to tunnel);
- the management network (``mgmt.ipv4-subnet``, containerlab's default ``172.20.20.0/24``) is
  network ``mgmt``; every node is attached to it first, as containerlab's ``eth0`` is (its
  ``mgmt-ipv4`` kept);
- a node is an endpoint: container NOSes and ``linux`` are ``container``, VM-based kinds
  (``vr-*``, ``cisco_xrv9k``, ...) ``vm``, kind ``host`` a ``host`` endpoint; ``bridge`` and
  ``ovs-bridge`` nodes are networks (an L2 switch), not endpoints;
- a link between two nodes is a network of its own (``/29`` from ``10.255.0.0/16`` in link order,
  its ``mtu`` kept); a link to a bridge node joins that bridge's network (``/24`` from
  ``10.254.0.0/16``). Each node's data interfaces become its attachments after ``mgmt``, in
  the order its links name them;
- what cannot be mapped is a problem at its place: unknown kinds, ``ext-container``,
  ``k8s-kind``, ``network-mode``, links of type ``macvlan``/``host``/``mgmt-net``/``vxlan``/
  ``dummy`` or to ``host:``/``macvlan:``/``mgmt-net:``, a link to an unknown node, an interface
  used twice. Keys that do not change the network (image, startup-config, binds, env, exec, ...)
  are ignored.
"""

import ipaddress
import re
from typing import Any

from netvirt.management.spec.problems import Path, Problem, SpecError
from netvirt.management.spec.source import merge, not_a_mapping_as, parse_document

MGMT_SUBNET = "172.20.20.0/24"
LINK_POOL = ipaddress.ip_network("10.255.0.0/16")
BRIDGE_POOL = ipaddress.ip_network("10.254.0.0/16")
HOST_UNDERLAY = "192.0.2.1/24"
BRIDGES = {"bridge", "ovs-bridge"}
CONTAINERS = {
    "linux", "nokia_srlinux", "srl", "arista_ceos", "ceos", "juniper_crpd", "crpd", "sonic-vs", "cvx", "cumulus_cvx",
    "cisco_xrd", "xrd", "rare", "keysight_ixia-c-one", "ixia-c-one", "nokia_srsim", "juniper_cjunosevolved",
}
VMS_PREFIXES = ("vr-", "vr_")
VMS = {
    "cisco_xrv9k", "cisco_xrv", "cisco_csr1000v", "cisco_c8000v", "cisco_n9kv", "cisco_nxos", "cisco_cat9kv",
    "juniper_vmx", "juniper_vsrx", "juniper_vqfx", "juniper_vjunosswitch", "juniper_vjunosrouter", "nokia_sros",
    "arista_veos", "mikrotik_ros", "fortinet_fortigate", "paloalto_panos", "ipinfusion_ocnos", "checkpoint_cloudguard",
    "openbsd", "generic_vm", "sonic-vm", "huawei_vrp", "dell_sonic",
}
UNSUPPORTED_KINDS = {"ext-container": "an external container netvirt does not start", "k8s-kind": "a kind cluster"}
SPECIAL_ENDPOINTS = {"host": "the machine's own namespace", "macvlan": "a macvlan on a host interface",
                     "mgmt-net": "the management bridge itself"}


def kind_of(kind: str) -> str | None:
    """The netvirt endpoint kind of a containerlab kind (None: unknown)."""
    if kind in BRIDGES:
        return "network"
    if kind == "host":
        return "host"
    if kind in VMS or kind.startswith(VMS_PREFIXES):
        return "vm"
    if kind in CONTAINERS:
        return "container"
    return None


def name_of(text: str) -> str:
    """A containerlab name as a netvirt name (lowercase letters, digits, '-'; at most 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:63].strip("-") or "x"


def from_containerlab(text: str, filename: str) -> tuple[dict[str, Any], list[str]]:
    """The netvirt spec data of a containerlab topology (see the module docstring)."""
    document, problems = parse_document(text, filename)
    problems = [not_a_mapping_as(problem, "a containerlab topology", "name, topology, mgmt") for problem in problems]
    source = merge([document], problems, "lab")
    if problems:
        raise SpecError(problems)
    data = source.data
    found: list[Problem] = []

    def problem(path: Path, message: str) -> None:
        found.append(source.problem(path, message))

    lab = name_of(str(data.get("name") or "lab"))
    topology = data.get("topology")
    if not isinstance(topology, dict) or not isinstance(topology.get("nodes"), dict):
        raise SpecError([source.problem(("topology",) if "topology" in data else (), "a containerlab topology needs "
                                        "topology.nodes (a mapping of node name -> node)")])
    defaults = topology.get("defaults") or {}
    mgmt = data.get("mgmt") or {}
    subnet = str(mgmt.get("ipv4-subnet") or MGMT_SUBNET) if isinstance(mgmt, dict) else MGMT_SUBNET
    networks: list[dict[str, Any]] = [{"name": "mgmt", "subnet": subnet}]
    endpoints: dict[str, dict[str, Any]] = {}
    bridges: dict[str, str] = {}  # node -> its network
    for node, spec in topology["nodes"].items():
        where: Path = ("topology", "nodes", node)
        spec = spec or {}
        kind = str(spec.get("kind") or defaults.get("kind") or "")
        if not kind:
            problem(where, "the node has no kind (and topology.defaults.kind is not set)")
            continue
        if "network-mode" in spec:
            problem((*where, "network-mode"), f"network-mode {spec['network-mode']!r} shares another stack; netvirt "
                                             "gives every endpoint its own namespace")
        mapped = kind_of(kind)
        at = (*where, "kind") if "kind" in spec else ("topology", "defaults", "kind")
        if kind in UNSUPPORTED_KINDS:
            problem(at, f"kind {kind} ({UNSUPPORTED_KINDS[kind]}) cannot be modelled")
            continue
        if mapped is None:
            problem(at, f"kind {kind!r} is not known to netvirt (containers: linux, nokia_srlinux, arista_ceos, ...; "
                        "VMs: vr-*, cisco_xrv9k, ...; bridge, ovs-bridge; host)")
            continue
        if mapped == "network":
            network = name_of(node)
            bridges[node] = network
            networks.append({"name": network, "subnet": str(list(BRIDGE_POOL.subnets(new_prefix=24))[len(bridges) - 1])})
            continue
        attachment: dict[str, Any] = {"network": "mgmt"}
        if spec.get("mgmt-ipv4"):
            attachment["ip"] = str(spec["mgmt-ipv4"])
        endpoints[node] = {"name": name_of(node), "kind": mapped, "host": lab, "attachments": [attachment]}
    notes: list[str] = []
    used: dict[tuple[str, str], Path] = {}
    links = topology.get("links") or []
    link_subnets = LINK_POOL.subnets(new_prefix=29)
    for index, link in enumerate(links if isinstance(links, list) else []):
        where = ("topology", "links", index)
        ends = _ends(link, where, problem)
        if ends is None:
            continue
        known = True
        for (node, interface), path in ends:
            if node in SPECIAL_ENDPOINTS:
                problem(path, f"{node}:{interface} is {SPECIAL_ENDPOINTS[node]}; netvirt links only nodes of the lab")
                known = False
            elif node not in endpoints and node not in bridges:
                if node in topology["nodes"]:
                    known = False  # its node was already reported
                    continue
                problem(path, f"unknown node {node!r} (nodes: {', '.join(topology['nodes'])})")
                known = False
            elif (node, interface) in used:
                problem(path, f"interface {node}:{interface} is already linked (line {source.problem(used[node, interface], '').line})")
                known = False
            else:
                used[node, interface] = path
        if not known:
            continue
        bridged = [bridges[node] for (node, _), _ in ends if node in bridges]
        if bridged:
            network = bridged[0]
            if len(set(bridged)) > 1:
                problem(where, "a link between two bridges cannot be modelled (netvirt networks do not nest)")
                continue
        else:
            (a, ia), (b, ib) = (end for end, _ in ends)
            network = name_of(f"{a}-{ia}-{b}-{ib}")
            entry: dict[str, Any] = {"name": network, "subnet": str(next(link_subnets))}
            if isinstance(link, dict) and link.get("mtu"):
                entry["mtu"] = link["mtu"]
            networks.append(entry)
        for (node, interface), _ in ends:
            if node in endpoints:
                attachments = endpoints[node]["attachments"]
                attachments.append({"network": network})
                notes.append(f"{node}:{interface} -> endpoint {endpoints[node]['name']} eth{len(attachments) - 1} on network {network}")
    if found:
        raise SpecError(found)
    mtu = max([1500] + [int(n["mtu"]) for n in networks if isinstance(n.get("mtu"), int)])
    spec = {
        "version": 1,
        "name": lab,
        "description": f"imported from containerlab topology {filename}",
        "hosts": [{"name": lab, "underlay": HOST_UNDERLAY, **({"mtu": mtu} if mtu != 1500 else {})}],
        "networks": [{**network, "encap": "none"} for network in networks],
        "endpoints": list(endpoints.values()),
    }
    return spec, notes


def _ends(link: Any, where: Path, problem) -> list[tuple[tuple[str, str], Path]] | None:
    """The two ``(node, interface)`` ends of a link (brief or extended form) with their paths."""
    if not isinstance(link, dict):
        problem(where, "a link is a mapping with endpoints: [node:interface, node:interface]")
        return None
    kind = link.get("type", "veth")
    if kind != "veth":
        problem((*where, "type"), f"link type {kind} cannot be modelled; netvirt models veth links between nodes")
        return None
    raw = link.get("endpoints")
    if not isinstance(raw, list) or len(raw) != 2:
        problem((*where, "endpoints"), "a link needs exactly two endpoints")
        return None
    ends = []
    for number, end in enumerate(raw):
        path = (*where, "endpoints", number)
        if isinstance(end, str) and end.count(":") == 1 and all(end.split(":")):
            node, interface = end.split(":")
        elif isinstance(end, dict) and isinstance(end.get("node"), str) and isinstance(end.get("interface"), str):
            node, interface = end["node"], end["interface"]
        else:
            problem(path, f"{end!r} is not node:interface")
            return None
        ends.append(((node, interface), path))
    return ends
