"""The Builder: the one way netvirt changes the kernel, with ownership recorded first.

Contract: ``with Builder(names) as build:`` holds the deployment's record lock. Every method that
creates a kernel object (namespace, link, nftables table, iptables chain) records it in the
ownership journal *before* creating it, then converges it (``ensure`` semantics: re-running a
build from any partial state — including one killed mid-way — ends in the same state). Methods
that only configure (addresses, routes, neighbours, FDB, sysctls, MTU, up) act only on
namespaces or links this deployment owns; anything else raises ``NotOwned``. Links may live in
a namespace netvirt does not own only if their name carries the link prefix, so ``cleanup`` can
recognise them. Errors from the kernel say which namespace and link they concern.
"""

from collections.abc import Iterable
from ipaddress import IPv4Interface, IPv6Interface
from pathlib import Path

from pyroute2 import IPRoute

from netvirt.dataplane.kernel import iptables, links, netns, nftables
from netvirt.dataplane.kernel.cleanup import remove_pins
from netvirt.dataplane.kernel.links import LinkError, VxlanSpec
from netvirt.dataplane.kernel.naming import Names, check_link_name
from netvirt.dataplane.kernel.ownership import (
    OwnedBpfPins,
    STATE_DIR,
    OwnedIptChain,
    OwnedIptTable,
    OwnedLink,
    OwnedNamespace,
    OwnedNftTable,
    Record,
)
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.graph.host import Neighbour, Route
from netvirt.graph.values import IPAddress


class NotOwned(RuntimeError):
    """A change to a namespace or link that this deployment does not own."""


class Builder:
    """Creates and configures one deployment's kernel objects (see the module docstring)."""

    def __init__(self, names: Names, state_dir: Path = STATE_DIR, lock_timeout: float = 30.0):
        """``lock_timeout``: seconds to wait for another process (or thread) building the same
        deployment before ``RecordError``."""
        self.names = names
        self.record = Record(names, state_dir, lock_timeout)
        self._netlink: dict[str, IPRoute] = {}

    def __enter__(self) -> "Builder":
        self.record.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for ipr in self._netlink.values():
            ipr.close()
        self._netlink.clear()
        self.record.__exit__(*exc)

    # --- ownership --------------------------------------------------------------------------

    def owns_namespace(self, namespace: str) -> bool:
        return OwnedNamespace(namespace) in self.record.objects

    def _owned_link(self, namespace: str, name: str) -> bool:
        return self.owns_namespace(namespace) or any(
            isinstance(obj, OwnedLink) and (obj.namespace, obj.name) == (namespace, name)
            for obj in self.record.objects
        )

    def _require_namespace(self, namespace: str) -> None:
        if not self.owns_namespace(namespace):
            raise NotOwned(f"namespace {namespace} is not netvirt's ({self.names.deployment}); "
                           "create it with Builder.namespace")

    def _require_link(self, namespace: str, name: str) -> None:
        if not self._owned_link(namespace, name):
            raise NotOwned(f"link {name} in namespace {namespace} is not netvirt's ({self.names.deployment})")

    def _link_name(self, namespace: str, name: str) -> str:
        check_link_name(name)
        if not self.owns_namespace(namespace) and not self.names.owns_link(name):
            raise NotOwned(
                f"link {name} in namespace {namespace}, which netvirt does not own, must carry the "
                f"link prefix '{self.names.prefix}-' (use Names.link) so cleanup can recognise it"
            )
        return name

    def netlink(self, namespace: str) -> IPRoute:
        """The (cached) netlink handle of ``namespace``, for the calling thread."""
        if namespace not in self._netlink:
            self._netlink[namespace] = netns.netlink(namespace)
        return self._netlink[namespace]

    def _do(self, namespace: str, action, *args, **kwargs):
        try:
            return action(self.netlink(namespace), *args, **kwargs)
        except LinkError as error:
            raise LinkError(f"namespace {namespace}: {error}") from error

    # --- objects ----------------------------------------------------------------------------

    def namespace(self, local: str) -> str:
        """Ensure the namespace for ``local`` and return its full name. Loopback is up, and IPv6
        duplicate address detection is off: the control plane assigns every address, and DAD
        would leave new addresses (link-local ones too) unusable for a second or more."""
        return self.named_namespace(self.names.namespace(local))

    def named_namespace(self, name: str) -> str:
        """``namespace`` for a full name made by ``self.names`` (``graph_namespace``,
        ``segment_namespace``)."""
        if not self.names.owns_namespace(name):
            raise NotOwned(f"namespace {name} is not named like deployment {self.names.deployment}'s")
        self.record.add(OwnedNamespace(name))
        netns.ensure(name)
        netns.sysctls(name, {f"net.ipv6.conf.{scope}.accept_dad": 0 for scope in ("all", "default")})
        self._do(name, links.set_link, "lo", up=True)
        return name

    def bridge(self, namespace: str, name: str, *, mtu: int | None = None, ageing_time: int = 300) -> None:
        """Ensure bridge ``name`` in ``namespace`` (up)."""
        self.record.add(OwnedLink(namespace, self._link_name(namespace, name), "bridge"))
        self._do(namespace, links.ensure_bridge, name, ageing_time=ageing_time)
        self._do(namespace, links.set_link, name, mtu=mtu, up=True)

    def veth(
        self,
        namespace: str,
        name: str,
        peer_namespace: str,
        peer: str,
        *,
        mtu: int | None = None,
        mac: str | None = None,
        peer_mac: str | None = None,
    ) -> None:
        """Ensure the veth pair ``namespace/name`` <-> ``peer_namespace/peer`` (both ends up)."""
        self.record.add(
            OwnedLink(namespace, self._link_name(namespace, name), "veth"),
            OwnedLink(peer_namespace, self._link_name(peer_namespace, peer), "veth"),
        )
        try:
            links.ensure_veth(self.netlink(namespace), name, self.netlink(peer_namespace), peer_namespace, peer)
        except LinkError as error:
            raise LinkError(f"namespace {namespace}: {error}") from error
        self._do(namespace, links.set_link, name, mtu=mtu, mac=mac, up=True)
        self._do(peer_namespace, links.set_link, peer, mtu=mtu, mac=peer_mac, up=True)

    def vxlan(self, namespace: str, name: str, spec: VxlanSpec, *, mtu: int | None = None) -> None:
        """Ensure VXLAN device ``name`` in ``namespace`` exactly as ``spec`` (up)."""
        self.record.add(OwnedLink(namespace, self._link_name(namespace, name), "vxlan"))
        self._do(namespace, links.ensure_vxlan, name, spec)
        self._do(namespace, links.set_link, name, mtu=mtu, up=True)

    def remove_namespace(self, namespace: str) -> None:
        """Remove owned ``namespace`` (with everything inside) and drop it from the record."""
        self._require_namespace(namespace)
        ipr = self._netlink.pop(namespace, None)
        if ipr is not None:
            ipr.close()
        netns.remove(namespace)
        for obj in self.record.objects:  # bpffs is global: pins outlive their namespace
            if isinstance(obj, OwnedBpfPins) and obj.namespace == namespace:
                remove_pins(Path(obj.path))
        self.record.discard(
            obj for obj in self.record.objects
            if obj == OwnedNamespace(namespace) or getattr(obj, "namespace", None) == namespace
        )

    def prune_links(self, namespace: str, keep: Iterable[str]) -> list[str]:
        """Delete every link of owned ``namespace`` except loopback and ``keep``; their names."""
        self._require_namespace(namespace)
        wanted = set(keep) | {"lo"}
        ipr = self.netlink(namespace)
        extra = [msg.get("IFLA_IFNAME") for msg in ipr.get_links() if msg.get("IFLA_IFNAME") not in wanted]
        for name in extra:
            links.delete(ipr, name)
        return extra

    def nftables(self, namespace: str, ruleset: Ruleset) -> bool:
        """Ensure this deployment's nftables table in ``namespace`` holds exactly ``ruleset``;
        True if it had to be (re)applied."""
        table = self.names.nft_table
        self.record.add(OwnedNftTable(namespace, table))
        if not nftables.drift(namespace, table, ruleset):
            return False
        nftables.apply(namespace, table, ruleset)
        return True

    def iptables(self, namespace: str, ruleset: Ruleset) -> bool:
        """Ensure this deployment's iptables chains in ``namespace`` hold exactly ``ruleset``;
        True if they had to be (re)applied."""
        if iptables.flavour() == "nf_tables":  # iptables-nft creates its tables on first use
            for version in (4, 6):
                existing = iptables.read(namespace, version).tables
                self.record.add(*(
                    OwnedIptTable(namespace, version, table)
                    for table in sorted({table for table, _ in ruleset.chains()} - set(existing))
                ))
        self.record.add(*(
            OwnedIptChain(namespace, version, table, self.names.ipt_chain(chain.hook), chain.hook.upper())
            for version in (4, 6)
            for table, chain in ruleset.chains()
        ))
        if not iptables.drift(namespace, self.names, ruleset):
            return False
        iptables.apply(namespace, self.names, ruleset)
        return True

    # --- configuration of owned objects -----------------------------------------------------

    def link(
        self,
        namespace: str,
        name: str,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        master: str | None = None,
        nomaster: bool = False,
    ) -> None:
        """Set state, MTU, MAC or bridge (``master``; ``nomaster`` detaches) of an owned link."""
        self._require_link(namespace, name)
        self._do(namespace, links.set_link, name, up=up, mtu=mtu, mac=mac, master=master, nomaster=nomaster)

    def addresses(self, namespace: str, name: str, interfaces: Iterable[IPv4Interface | IPv6Interface]) -> None:
        """Exactly ``interfaces`` as the global addresses of owned link ``name``."""
        self._require_link(namespace, name)
        self._do(namespace, links.ensure_addresses, name, list(interfaces))

    def routes(self, namespace: str, routes: Iterable[Route]) -> None:
        """Exactly ``routes`` as netvirt's routes in owned ``namespace`` (kernel link names)."""
        self._require_namespace(namespace)
        self._do(namespace, links.ensure_routes, list(routes))

    def neighbours(self, namespace: str, name: str, entries: Iterable[Neighbour]) -> None:
        """Exactly ``entries`` as the permanent neighbours of owned link ``name``."""
        self._require_link(namespace, name)
        self._do(namespace, links.ensure_neighbours, name, list(entries))

    def namespace_neighbours(self, namespace: str, devices: Iterable[str], entries: Iterable[Neighbour]) -> None:
        """Exactly ``entries`` as the permanent neighbours of the links ``devices`` of owned
        ``namespace`` (each entry names its device)."""
        self._require_namespace(namespace)
        self._do(namespace, links.ensure_namespace_neighbours, list(devices), list(entries))

    def vxlan_fdb(self, namespace: str, name: str, entries: Iterable[tuple[str, IPAddress]]) -> None:
        """Exactly ``entries`` (MAC, remote VTEP) as the static FDB of owned VXLAN ``name``."""
        self._require_link(namespace, name)
        self._do(namespace, links.ensure_vxlan_fdb, name, list(entries))

    def sysctl(self, namespace: str, key: str, value: str | int) -> None:
        """Set a net.* sysctl inside owned ``namespace``."""
        self._require_namespace(namespace)
        netns.sysctl(namespace, key, value)

    def sysctls(self, namespace: str, values: dict[str, str | int]) -> None:
        """Set several net.* sysctls inside owned ``namespace`` (those that differ)."""
        self._require_namespace(namespace)
        netns.sysctls(namespace, values)

    def bridge_fdb(self, namespace: str, bridge: str, entries: Iterable[tuple[str, str]]) -> None:
        """Exactly ``entries`` (MAC, port) as the static, sticky FDB of owned bridge ``bridge``."""
        self._require_link(namespace, bridge)
        self._do(namespace, links.ensure_bridge_fdb, bridge, list(entries))

    def drop_list(self, namespace: str, device: str, prefixes) -> None:
        """Exactly ``prefixes`` dropped at the netdev ingress of owned ``device`` (an nftables
        netdev table of its own); no prefixes: no table."""
        self._require_link(namespace, device)
        table = nftables.drop_list_table(self.names.nft_table, device)
        if not prefixes:
            if OwnedNftTable(namespace, table, nftables.DROP_LIST_FAMILY) in self.record.objects:
                nftables.delete_table(namespace, table, nftables.DROP_LIST_FAMILY)
            return
        self.record.add(OwnedNftTable(namespace, table, nftables.DROP_LIST_FAMILY))
        nftables.apply_drop_list(namespace, table, device, prefixes)

    def bpf_pins(self, namespace: str) -> Path:
        """The bpffs directory for the eBPF programs and maps of owned ``namespace``, recorded
        before anything is pinned there (created if missing)."""
        self._require_namespace(namespace)
        path = self.names.bpf_pins(namespace)
        self.record.add(OwnedBpfPins(namespace, str(path)))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def no_nftables(self, namespace: str) -> None:
        """Remove this deployment's nftables table from ``namespace`` if it was ever recorded
        there (a namespace whose graph has no rules, or that switched to iptables)."""
        self._require_namespace(namespace)
        if OwnedNftTable(namespace, self.names.nft_table) in self.record.objects:
            nftables.delete_table(namespace, self.names.nft_table)

    def no_iptables(self, namespace: str) -> None:
        """Remove this deployment's iptables chains (and the jumps to them) from ``namespace`` if
        any were ever recorded there."""
        self._require_namespace(namespace)
        if not any(isinstance(obj, OwnedIptChain) and obj.namespace == namespace for obj in self.record.objects):
            return
        for version in (4, 6):
            saved = iptables.read(namespace, version)
            for table in saved.tables:
                for chain in sorted(saved.chains(table)):
                    if chain.startswith(self.names.ipt_chain_prefix):
                        iptables.remove_chain(namespace, version, table, chain)

    def forwarding(self, namespace: str, *, ipv4: bool, ipv6: bool) -> None:
        """Turn IPv4 / IPv6 forwarding on or off in owned ``namespace``."""
        self.sysctl(namespace, "net.ipv4.ip_forward", int(ipv4))
        self.sysctl(namespace, "net.ipv6.conf.all.forwarding", int(ipv6))
