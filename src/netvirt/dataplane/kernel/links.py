"""Netlink primitives for one namespace: links, addresses, routes, neighbours, FDB entries.

Contract: every function takes a pyroute2 ``IPRoute`` opened in the namespace (``netns.netlink``)
and kernel link names. ``ensure_*`` functions converge: from any partial state (missing, half
made, wrong kind or settings) they end in exactly the requested state and do nothing when it
already holds, so re-running them is cheap and safe. Devices whose settings cannot be changed in
place (a VXLAN's VNI, a veth's peer) are deleted and re-created. ``ensure_routes``,
``ensure_neighbours`` and ``ensure_vxlan_fdb`` manage the complete set of *netvirt's* entries:
routes carry the protocol number ``RTPROT_NETVIRT``; only permanent neighbours and static FDB
entries on the given device are touched.
"""

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_address, ip_network

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netvirt.dataplane.kernel import netns
from netvirt.graph.devices import FLOOD_MAC
from netvirt.graph.host import Neighbour, Route, RouteType
from netvirt.graph.rules import PortRange
from netvirt.graph.values import IPAddress

RTPROT_NETVIRT = 77
RT_SCOPE_LINK = 253  # marks netvirt's routes (iproute2 shows "proto 77")
IFA_F_NODAD = 0x02
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NTF_SELF = 0x02
_ENODEV = 19


class LinkError(RuntimeError):
    """A link operation the kernel refused; says which link, in which namespace, and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VxlanSpec:
    """A VXLAN device: ``vni``, underlay source ``local``, UDP ``dst_port`` (4789), source ports
    ``src_ports`` (a flow hash picks one), ``ttl`` (0 = inherit), learning (off: the control plane
    installs FDB entries) and ``arp_proxy`` (answer ARP/ND from the neighbour table instead of
    flooding it), optionally bound to the underlay device ``underlay``; ``remote`` is a fixed
    peer (point to point) and ``udp_checksum`` whether outer UDP checksums are sent."""

    vni: int
    local: IPAddress
    dst_port: int = 4789
    src_ports: PortRange = PortRange(32768, 61000)
    ttl: int = 64
    learning: bool = False
    arp_proxy: bool = False
    underlay: str | None = None
    remote: IPAddress | None = None
    udp_checksum: bool = True


def find(ipr: IPRoute, name: str):
    """The link message of ``name``, or None when there is no such link."""
    try:
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as error:
        if error.code == _ENODEV:
            return None
        raise


def index(ipr: IPRoute, name: str) -> int:
    """The ifindex of link ``name``; LinkError if it does not exist."""
    msg = find(ipr, name)
    if msg is None:
        raise LinkError(f"no link {name!r}")
    return msg["index"]


def kind(msg) -> str | None:
    """The link kind (``veth``, ``bridge``, ``vxlan``, ...) of a link message; None for physical."""
    return msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def _kernel(action: str, name: str, call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except NetlinkError as error:
        raise LinkError(f"{action} {name}: {os.strerror(error.code)}") from error


def delete(ipr: IPRoute, name: str) -> bool:
    """Delete link ``name``; False if it did not exist."""
    msg = find(ipr, name)
    if msg is None:
        return False
    try:
        ipr.link("del", index=msg["index"])
    except NetlinkError as error:
        if error.code != _ENODEV:  # gone meanwhile (e.g. its veth peer was deleted)
            raise
    return True


def ensure_bridge(ipr: IPRoute, name: str, *, ageing_time: int = 300) -> None:
    """A bridge called ``name`` (learning bridge, STP off) with the given FDB ageing (seconds)."""
    msg = find(ipr, name)
    if msg is not None and kind(msg) != "bridge":
        delete(ipr, name)
        msg = None
    centis = ageing_time * 100
    if msg is None:
        _kernel("create bridge", name, ipr.link, "add", ifname=name, kind="bridge",
                br_ageing_time=centis, br_stp_state=0)
    elif msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_AGEING_TIME") != centis:
        ipr.link("set", index=msg["index"], kind="bridge", br_ageing_time=centis)


def ensure_veth(
    ipr: IPRoute, name: str, peer_ipr: IPRoute, peer_namespace: str, peer: str
) -> None:
    """A veth pair: ``name`` here and ``peer`` in namespace ``peer_namespace`` (whose netlink
    handle is ``peer_ipr``). Ends that exist but are not each other's peer are re-created."""
    mine, theirs = find(ipr, name), find(peer_ipr, peer)
    if (
        mine is not None and theirs is not None
        and kind(mine) == kind(theirs) == "veth"
        and mine.get("IFLA_LINK") == theirs["index"]
        and theirs.get("IFLA_LINK") == mine["index"]
    ):
        return
    delete(ipr, name)
    delete(peer_ipr, peer)
    fd = os.open(netns.path(peer_namespace), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _kernel("create veth", f"{name} <-> {peer_namespace}/{peer}", ipr.link, "add",
                ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": fd})
    finally:
        os.close(fd)


def _vxlan_attrs(spec: VxlanSpec, underlay_index: int | None) -> dict:
    attrs = {
        "vxlan_id": spec.vni,
        "vxlan_port": spec.dst_port,
        "vxlan_port_range": {"low": spec.src_ports.first, "high": spec.src_ports.last},
        "vxlan_ttl": spec.ttl,
        "vxlan_learning": int(spec.learning),
        "vxlan_proxy": int(spec.arp_proxy),
    }
    if spec.local.version == 4:
        attrs["vxlan_local"] = str(spec.local)
        attrs["vxlan_udp_csum"] = int(spec.udp_checksum)
    else:
        attrs["vxlan_local6"] = str(spec.local)
        attrs["vxlan_udp_zero_csum6_tx"] = int(not spec.udp_checksum)
    if spec.remote is not None:
        attrs["vxlan_group" if spec.remote.version == 4 else "vxlan_group6"] = str(spec.remote)
    if underlay_index is not None:
        attrs["vxlan_link"] = underlay_index
    return attrs


def ensure_vxlan(ipr: IPRoute, name: str, spec: VxlanSpec) -> None:
    """A VXLAN device ``name`` configured exactly as ``spec`` (re-created if it differs)."""
    underlay_index = index(ipr, spec.underlay) if spec.underlay else None
    want = _vxlan_attrs(spec, underlay_index)
    msg = find(ipr, name)
    if msg is not None:
        data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
        have = {
            key: data.get("IFLA_" + key.upper()) if data is not None else None for key in want
        }
        if kind(msg) == "vxlan" and have == want:
            return
        delete(ipr, name)
    _kernel("create vxlan", name, ipr.link, "add", ifname=name, kind="vxlan", **want)


def set_link(
    ipr: IPRoute,
    name: str,
    *,
    up: bool | None = None,
    mtu: int | None = None,
    mac: str | None = None,
    master: str | None = None,
    nomaster: bool = False,
) -> None:
    """Set what differs among the given attributes of link ``name`` (None = leave as is)."""
    msg = find(ipr, name)
    if msg is None:
        raise LinkError(f"no link {name!r}")
    change: dict = {}
    if mtu is not None and msg.get("IFLA_MTU") != mtu:
        change["mtu"] = mtu
    if mac is not None and msg.get("IFLA_ADDRESS") != mac.lower():
        change["address"] = mac.lower()
    if master is not None:
        master_index = index(ipr, master)
        if msg.get("IFLA_MASTER") != master_index:
            change["master"] = master_index
    elif nomaster and msg.get("IFLA_MASTER"):
        change["master"] = 0
    is_up = bool(msg["flags"] & 1)
    if up is not None and up != is_up:
        change["state"] = "up" if up else "down"
    if change:
        _kernel("configure link", name, ipr.link, "set", index=msg["index"], **change)


def ensure_addresses(ipr: IPRoute, name: str, interfaces: Iterable[IPv4Interface | IPv6Interface]) -> None:
    """Exactly ``interfaces`` as the global addresses of link ``name`` (IPv6 without DAD, so
    usable at once; link-local and host-scope addresses are left alone)."""
    link = index(ipr, name)
    want = {(str(i.ip), i.network.prefixlen) for i in interfaces}
    have = set()
    for msg in ipr.addr("dump", index=link):
        if msg["scope"] != 0:  # 0 = global (universe)
            continue
        have.add((msg.get("IFA_ADDRESS"), msg["prefixlen"]))
    for address, prefixlen in have - want:
        ipr.addr("del", index=link, address=address, prefixlen=prefixlen)
    for address, prefixlen in sorted(want - have):
        flags = IFA_F_NODAD if ip_address(address).version == 6 else 0
        _kernel(f"add address {address}/{prefixlen} to", name, ipr.addr, "add",
                index=link, address=address, prefixlen=prefixlen, flags=flags)


IPV6_DEFAULT_METRIC = 1024  # the kernel stores IPv6 metric 0 as 1024


def kernel_metric(route: Route) -> int:
    """The metric the kernel stores for ``route`` (IPv6 turns 0 into 1024)."""
    return IPV6_DEFAULT_METRIC if route.dst.version == 6 and route.metric == 0 else route.metric


def graph_metric(version: int, metric: int) -> int:
    """The graph's metric for a kernel route (IPv6 1024 reads as 0, the graph's default)."""
    return 0 if version == 6 and metric == IPV6_DEFAULT_METRIC else metric


def _route_key(dst: str, prefixlen: int, metric: int) -> tuple:
    return (str(ip_network(f"{dst}/{prefixlen}")), metric)


def ensure_routes(ipr: IPRoute, routes: Iterable[Route]) -> None:
    """Exactly ``routes`` as netvirt's routes (protocol RTPROT_NETVIRT) in the main table;
    ``dev`` fields are kernel link names. Routes of other protocols are never touched; routes
    already in place as requested are left alone (no netlink change)."""
    want = {}
    for route in routes:
        want[(str(route.dst), kernel_metric(route))] = route
    links = {msg["index"]: msg.get("IFLA_IFNAME") for msg in ipr.get_links()}
    have = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in ipr.route("dump", family=family, proto=RTPROT_NETVIRT):
            if msg["proto"] != RTPROT_NETVIRT or msg.get("RTA_TABLE", 254) != 254:
                continue
            dst = msg.get("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
            key = _route_key(dst, msg["dst_len"], msg.get("RTA_PRIORITY", 0))
            if key not in want:
                ipr.route("del", dst=f"{key[0]}", priority=key[1], proto=RTPROT_NETVIRT,
                          family=family, type=msg["type"])
                continue
            have[key] = (msg["type"], msg.get("RTA_GATEWAY"), links.get(msg.get("RTA_OIF")), msg.get("RTA_PREFSRC"))
    for key, route in want.items():
        kind = {RouteType.UNICAST: 1, RouteType.BLACKHOLE: 6, RouteType.UNREACHABLE: 7}[route.kind]
        if have.get(key) == (kind, route.via and str(route.via), route.dev, route.src and str(route.src)):
            continue
        request: dict = {"dst": str(route.dst), "proto": RTPROT_NETVIRT, "priority": kernel_metric(route),
                         "family": socket.AF_INET if route.dst.version == 4 else socket.AF_INET6}
        if route.kind is not RouteType.UNICAST:
            request["type"] = route.kind.value
        if route.via is not None:
            request["gateway"] = str(route.via)
        if route.dev is not None:
            request["oif"] = index(ipr, route.dev)
        if route.via is None and route.kind is RouteType.UNICAST:
            request["scope"] = RT_SCOPE_LINK  # on-link, as iproute2 does; gateways resolve through it
        if route.src is not None:
            request["prefsrc"] = str(route.src)
        _kernel("replace route", f"{route.dst} via {route.via or route.dev}",
                ipr.route, "replace", **request)


def ensure_neighbours(ipr: IPRoute, name: str, entries: Iterable[Neighbour]) -> None:
    """Exactly ``entries`` as the permanent neighbour (ARP/NDP) entries of link ``name``."""
    ensure_namespace_neighbours(ipr, [name], [entry for entry in entries])


def ensure_namespace_neighbours(ipr: IPRoute, devices: Iterable[str], entries: Iterable[Neighbour]) -> None:
    """Exactly ``entries`` (each naming its ``dev``) as the permanent neighbour entries of the
    links ``devices`` (one dump per address family for all of them)."""
    links = {name: index(ipr, name) for name in devices}
    want = {(links[e.dev], str(e.address)): e.mac for e in entries}
    wanted_links = set(links.values())
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in ipr.neigh("dump", family=family):
            key = (msg["ifindex"], msg.get("NDA_DST"))
            if msg["ifindex"] not in wanted_links or not msg["state"] & NUD_PERMANENT:
                continue
            if want.get(key) == msg.get("NDA_LLADDR"):
                del want[key]  # already in place
            else:
                ipr.neigh("del", ifindex=key[0], dst=key[1], family=family)
    names = {link: name for name, link in links.items()}
    for (link, address), mac in want.items():
        family = socket.AF_INET if ip_address(address).version == 4 else socket.AF_INET6
        _kernel(f"neighbour {address} -> {mac} on", names[link], ipr.neigh, "replace",
                ifindex=link, dst=address, lladdr=mac, state=NUD_PERMANENT, family=family)


def ensure_vxlan_fdb(ipr: IPRoute, name: str, entries: Iterable[tuple[str, IPAddress]]) -> None:
    """Exactly ``entries`` — (MAC, remote VTEP) pairs — as the static FDB of VXLAN ``name``.

    MAC 00:00:00:00:00:00 may appear once per remote: broadcast and unknown frames are copied
    to every such remote (head-end replication, no multicast). Other MACs go to one remote."""
    link = index(ipr, name)
    want = {(mac.lower(), str(remote)) for mac, remote in entries}
    unicast: dict[str, str] = {}
    for mac, remote in want:
        if mac != FLOOD_MAC and unicast.setdefault(mac, remote) != remote:
            raise LinkError(f"fdb of {name}: {mac} is given two remotes ({unicast[mac]}, {remote})")
    have = set()
    for msg in ipr.fdb("dump", ifindex=link):
        remote = msg.get("NDA_DST")
        if msg["ifindex"] != link or remote is None or not msg["flags"] & NTF_SELF:
            continue
        have.add((msg.get("NDA_LLADDR"), remote))
    for mac, remote in have - want:
        ipr.fdb("del", ifindex=link, lladdr=mac, dst=remote, flags=NTF_SELF)
    for mac, remote in sorted(want - have):
        _kernel(f"fdb {mac} -> {remote} on", name, ipr.fdb, "append",
                ifindex=link, lladdr=mac, dst=remote, flags=NTF_SELF, state=NUD_PERMANENT | NUD_NOARP)


NTF_MASTER = 0x04
NTF_STICKY = 0x40


def ensure_bridge_fdb(ipr: IPRoute, bridge: str, entries: Iterable[tuple[str, str]]) -> None:
    """Exactly ``entries`` — (MAC, port link name) pairs — as the static FDB of ``bridge``.
    Entries are *sticky*: learning never moves them to another port (a remote copy of an anycast
    gateway sending with the same MAC must not pull the gateway across the tunnel)."""
    bridge_index = index(ipr, bridge)
    want = {(mac.lower(), index(ipr, port)) for mac, port in entries}
    have = set()
    for msg in ipr.fdb("dump", master=bridge_index):
        if msg.get("NDA_MASTER") != bridge_index or not msg["state"] & NUD_NOARP or msg["state"] & NUD_PERMANENT:
            continue  # learned entries and the ports' own (local, permanent) addresses
        have.add((msg.get("NDA_LLADDR"), msg["ifindex"]))
    for mac, port in have - want:
        ipr.fdb("del", ifindex=port, lladdr=mac, flags=NTF_MASTER)
    for mac, port in sorted(want - have):
        _kernel(f"bridge fdb {mac} on port {port} of", bridge, ipr.fdb, "replace",
                ifindex=port, lladdr=mac, state=NUD_NOARP, flags=NTF_MASTER | NTF_STICKY)


def static_bridge_fdb(ipr: IPRoute, bridge_index: int) -> list[tuple[str, int]]:
    """(MAC, port ifindex) of the static (user-added) FDB entries of bridge ``bridge_index``."""
    return [
        (msg.get("NDA_LLADDR"), msg["ifindex"])
        for msg in ipr.fdb("dump", master=bridge_index)
        if msg.get("NDA_MASTER") == bridge_index and msg["state"] & NUD_NOARP and not msg["state"] & NUD_PERMANENT
    ]


def vxlan_fdb(ipr: IPRoute, link: int) -> list[tuple[str, str]]:
    """(MAC, remote VTEP) of the static FDB entries of VXLAN device ``link``."""
    return [
        (msg.get("NDA_LLADDR"), msg.get("NDA_DST"))
        for msg in ipr.fdb("dump", ifindex=link)
        if msg["ifindex"] == link and msg.get("NDA_DST") is not None and msg["flags"] & NTF_SELF
    ]
