"""Names, MACs and link addresses the compiler gives to what the spec does not name.

Contract: every value is a pure function of spec names, so recompiling never renames anything.
Device names fit Linux (at most 15 characters, from the spec's ``[a-z0-9-]``): ``prefix + name``
when it fits, else its start plus ``-`` and 4 hex digits of SHA-256 over the full name.
"""

import hashlib
from ipaddress import IPv4Interface, IPv6Interface, ip_interface

from netvirt.management.spec.allocate import mac_text, stable_hash

LINK_NAME_MAX = 15
NIC = "eth0"  # a host's underlay NIC
UPLINK = "uplink"  # a router namespace's leg towards its host (SNAT egress)
UNDERLAY = "underlay"  # the segment every host NIC plugs into
UPLINK_SLOTS = 1 << 14  # /30 blocks in 169.254.0.0/16, /126 blocks in fd00:ffff::/112


def link_name(prefix: str, name: str) -> str:
    """``prefix + name`` if it fits in 15 characters, else a shortened form with a digest."""
    full = prefix + name
    if len(full) <= LINK_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:4]
    return f"{full[: LINK_NAME_MAX - 5]}-{digest}"


def bridge(network: str) -> str:
    return link_name("br-", network)


def tunnel(encap: str, network: str) -> str:
    """The tunnel device of a network: ``vxlan-blue``, ``geneve-blue``, ``nvgre-blue``."""
    return link_name(f"{encap}-", network)


def provider_nic(network: str) -> str:
    """The NIC that plugs an ``encap: none`` network's bridge into that network's own segment."""
    return link_name("nic-", network)


def interface(index: int) -> str:
    """An endpoint's interface for its ``index``-th attachment: eth0, eth1, ..."""
    return f"eth{index}"


def endpoint_port(endpoint: str, index: int) -> str:
    """The host-side end of an endpoint attachment's veth (a port of the network's bridge)."""
    return link_name("ve-", f"{endpoint}-{index}")


def host_interface(endpoint: str, index: int) -> str:
    """The interface of a ``kind: host`` endpoint attachment (it lives in the host namespace)."""
    return link_name("ep-", f"{endpoint}-{index}")


def router_leg(network: str) -> str:
    """A router's leg on ``network`` (the same name in the router and the host namespace)."""
    return link_name("gw-", network)


def uplink_port(router: str) -> str:
    """The host-side end of a router's SNAT uplink."""
    return link_name("up-", router)


def socket(proto: str, port: int) -> str:
    return f"{proto}-{port}"


def segment(network: str) -> str:
    """The underlay segment of an ``encap: none`` network."""
    return f"net-{network}"


def _mac(first_octet: int, *names: str) -> str:
    # Endpoint MACs start 02: (spec allocation); these start 06:, 0a:, 0e:, so they never collide.
    return mac_text((first_octet << 40) | (stable_hash(*names) & 0xFF_FFFF_FFFF))


def gateway_mac(router: str) -> str:
    """The anycast gateway MAC of a router: the same on every host and every leg (0a:...)."""
    return _mac(0x0A, "gateway", router)


def nic_mac(host: str) -> str:
    """The underlay NIC MAC of a host (0e:...)."""
    return _mac(0x0E, "nic", host)


def uplink_mac(router: str, host: str, side: str) -> str:
    """The MAC of one end (``router`` or ``host`` side) of a router's uplink on a host (06:...)."""
    return _mac(0x06, "uplink", router, host, side)


def uplink_addresses(slot: int, version: int) -> tuple[IPv4Interface | IPv6Interface, IPv4Interface | IPv6Interface]:
    """(host side, router side) addresses of the uplink in ``slot``: 169.254.0.0/16 split in /30s,
    or fd00:ffff::/112 split in /126s for hosts with an IPv6 underlay."""
    if version == 4:
        base = (169 << 24) | (254 << 16) | (slot << 2)
        return ip_interface(f"{_v4(base + 1)}/30"), ip_interface(f"{_v4(base + 2)}/30")
    return ip_interface(f"fd00:ffff::{slot << 2 | 1:x}/126"), ip_interface(f"fd00:ffff::{slot << 2 | 2:x}/126")


def uplink_range(version: int) -> str:
    """The prefix every uplink address lies in (what the host masquerades)."""
    return "169.254.0.0/16" if version == 4 else "fd00:ffff::/112"


def _v4(value: int) -> str:
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))
