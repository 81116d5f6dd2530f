"""Capability probe: what this kernel (and its tools) can build, found by trying.

Contract: ``probe()`` creates one device of each kind in ``LINK_KINDS`` — and an nftables table and
an iptables chain — inside a throwaway unnamed namespace that vanishes with the probing thread
(nothing to clean up, even after kill -9), and reports what worked and, for what did not, the
kernel's reason. The result is cached per process. Plans consult it before building:
``require_device_kind`` raises ``Unsupported`` naming the kind, the reason, and the backends that
can realise it instead — never a silent substitution.
"""

import functools
import shutil
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from netvirt.dataplane.api import Capabilities, Encapsulation
from netvirt.dataplane.kernel import netns
from netvirt.graph import DeviceKind

# kernel link kind -> creation arguments (a parent link "probe0" exists when they run)
LINK_KINDS: dict[str, dict] = {
    "veth": {"peer": "probe0p"},
    "bridge": {},
    "vxlan": {"vxlan_id": 42, "vxlan_port": 4789},
    "geneve": {"geneve_id": 42, "geneve_remote": "192.0.2.1"},
    "gretap": {"gre_ikey": 42, "gre_okey": 42, "gre_iflags": 0x2000, "gre_oflags": 0x2000},
    "ip6gretap": {},
    "macvlan": {"link": "probe0", "macvlan_mode": "bridge"},
    "ipvlan": {"link": "probe0"},
    "dummy": {},
    "vrf": {"vrf_table": 42},
    "tuntap": {"mode": "tap"},
}
# graph device kind -> the kernel link kind that realises it (a host NIC is a veth into the
# underlay namespace; a socket is an application's, it needs no link)
DEVICE_LINK_KIND = {
    "nic": "veth",
    "veth": "veth",
    "bridge": "bridge",
    "vxlan": "vxlan",
    "geneve": "geneve",
    "nvgre": "gretap",
    "macvlan": "macvlan",
    "tap": "tuntap",
    "socket": None,
}


class Unsupported(RuntimeError):
    """The running kernel cannot realise something the plan needs."""


@dataclass(frozen=True, slots=True)
class KernelCapabilities:
    """What ``probe`` found: kernel link kinds that work, the reason for each that does not,
    and whether nftables and iptables work in a namespace (``iptables`` is its flavour)."""

    link_kinds: frozenset[str]
    missing: tuple[tuple[str, str], ...]
    nftables: bool
    iptables: str | None

    def reason(self, link_kind: str) -> str | None:
        """Why ``link_kind`` is unavailable (None when it is available)."""
        return dict(self.missing).get(link_kind)

    def require_device_kind(self, device_kind: str, alternatives: Iterable[str] = ()) -> None:
        """Unsupported unless this kernel can create devices of graph kind ``device_kind``."""
        if device_kind not in DEVICE_LINK_KIND:
            others = _others(alternatives)
            raise Unsupported(f"{device_kind} devices cannot be realised in the Linux kernel{others}")
        link_kind = DEVICE_LINK_KIND[device_kind]
        if link_kind is not None and link_kind not in self.link_kinds:
            raise Unsupported(
                f"{device_kind} devices need kernel link kind {link_kind!r}, which this kernel cannot "
                f"create ({self.reason(link_kind)}){_others(alternatives)}"
            )


    def can_realise(self, device_kind: str) -> bool:
        """Whether devices of graph kind ``device_kind`` can be created on this kernel."""
        if device_kind not in DEVICE_LINK_KIND:
            return False
        link_kind = DEVICE_LINK_KIND[device_kind]
        return link_kind is None or link_kind in self.link_kinds

    def for_plan(self, backend: str) -> Capabilities:
        """These findings as the backend-neutral ``Capabilities`` of kernel backend ``backend``
        that ``dataplane.api.plan`` uses."""
        kinds = frozenset(kind for kind in DeviceKind if self.can_realise(kind.value))
        reasons = {
            kind.value: f"the kernel cannot create link kind {DEVICE_LINK_KIND[kind.value]!r}: "
            f"{self.reason(DEVICE_LINK_KIND[kind.value])}"
            for kind in DeviceKind
            if kind.value in DEVICE_LINK_KIND and kind not in kinds
        }
        filtering = self.nftables or self.iptables is not None
        if not filtering:
            reasons["netfilter"] = reasons["nat"] = "neither nft nor iptables-restore works here"
        return Capabilities(
            backend=backend,
            device_kinds=kinds,
            encapsulations=frozenset(e for e in Encapsulation if DeviceKind(e.value) in kinds),
            hooks=frozenset(),
            netfilter=filtering,
            nat=filtering,
            where="on this kernel",
            reasons=reasons,
        )


def _others(alternatives: Iterable[str]) -> str:
    names = sorted(set(alternatives) - {"linux"})
    return f"; use a backend that can: {', '.join(names)}" if names else ""


def _try_links(ipr: IPRoute) -> tuple[set[str], dict[str, str]]:
    works, missing = set(), {}
    for kind, args in LINK_KINDS.items():
        args = dict(args)
        if "link" in args:
            found = ipr.link_lookup(ifname=args["link"])
            if not found:
                missing[kind] = "no parent link to probe with (veth unavailable)"
                continue
            args["link"] = found[0]
        name = "probe0" if kind == "veth" else f"probe-{kind}"[:15]
        try:
            ipr.link("add", ifname=name, kind=kind, **args)
            works.add(kind)
        except NetlinkError as error:
            missing[kind] = f"{error.args[1] if len(error.args) > 1 else error}"
        except OSError as error:  # tuntap goes through /dev/net/tun
            missing[kind] = error.strerror or str(error)
    return works, missing


def _try_tools() -> tuple[bool, str | None]:
    nft = shutil.which("nft") is not None and subprocess.run(
        ["nft", "add", "table", "inet", "netvirt_probe"], capture_output=True
    ).returncode == 0
    iptables = None
    if shutil.which("iptables-restore") and subprocess.run(
        ["iptables-restore", "--noflush"], input=b"*filter\n:NV-probe - [0:0]\nCOMMIT\n", capture_output=True
    ).returncode == 0:
        done = subprocess.run(["iptables", "--version"], capture_output=True)
        iptables = "legacy" if b"legacy" in done.stdout else "nf_tables"
    return nft, iptables


def _probe_here() -> KernelCapabilities:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    with IPRoute(fileno=sock.detach()) as ipr:
        works, missing = _try_links(ipr)
    nft, iptables = _try_tools()
    return KernelCapabilities(frozenset(works), tuple(sorted(missing.items())), nft, iptables)


@functools.cache
def probe() -> KernelCapabilities:
    """This kernel's capabilities (probed once per process, in a throwaway namespace)."""
    return netns.call_in_anonymous(_probe_here)
