"""Specs and a reference rule evaluator shared by the compiler and engine tests."""

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from netvirt.graph import Chain, CtState, Match, Proto, Rule

# Two tenants with overlapping subnets, a dual-stack network, a distributed router with SNAT, a
# host endpoint, policies in both directions (with log, reject, selectors, names) and a service.
SPEC = """\
version: 1
name: compile-test
hosts:
  - {name: host-a, underlay: 192.0.2.10/24, mtu: 1500}
  - {name: host-b, underlay: 192.0.2.11/24, mtu: 9000}
  - {name: host-c, underlay: 198.51.100.12/24}
networks:
  - {name: blue, tenant: acme, encap: vxlan, subnet: 10.10.0.0/24, subnet6: "fd00:10::/64"}
  - {name: green, tenant: acme, encap: vxlan, subnet: 10.20.0.0/24}
  - {name: red, tenant: globex, encap: vxlan, subnet: 10.10.0.0/24}
routers:
  - {name: edge, networks: [blue, green], snat: true, routes: [{to: 203.0.113.0/24, via: 10.20.0.254}]}
endpoints:
  - {name: web-1, kind: pod, host: host-a, network: blue, ip: 10.10.0.11, labels: {app: web}, listen: [tcp/80]}
  - {name: web-2, kind: container, host: host-b, network: blue, ip: 10.10.0.12, labels: {app: web}, listen: [tcp/80]}
  - {name: db-1, kind: vm, host: host-b, network: green, ip: 10.20.0.21, labels: {app: db}, listen: [tcp/5432]}
  - {name: client-1, kind: container, host: host-a, network: blue, ip: 10.10.0.31}
  - {name: red-1, kind: container, host: host-a, network: red, ip: 10.10.0.11}
  - {name: red-2, kind: container, host: host-c, network: red, ip: 10.10.0.12}
  - {name: node-c, kind: host, host: host-c, network: green, ip: 10.20.0.3}
policies:
  - name: blue-in
    network: blue
    default: drop
    rules:
      - {action: log, proto: tcp, from: app=web}
      - {action: allow, proto: tcp, dst_port: 80, to: app=web}
      - {action: allow, proto: icmp, icmp_type: 8}
      - {action: reject, from: 10.20.0.0/24}
  - name: green-out
    network: green
    direction: egress
    default: allow
    rules:
      - {action: drop, proto: udp, to: web-1}
services:
  - {name: web, vip: 10.96.0.10, port: tcp/80, target_port: 80, backends: [web-1, web-2], affinity: client-ip}
"""


@dataclass(frozen=True)
class Packet:
    """What a rule can look at, for the reference evaluator."""

    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    proto: Proto
    dst_port: int | None = None
    src_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    ct_state: CtState = CtState.NEW
    in_iface: str | None = None
    out_iface: str | None = None

    @classmethod
    def of(cls, src: str, dst: str, proto: Proto, **fields) -> "Packet":
        return cls(ip_address(src), ip_address(dst), proto, **fields)


def matches(match: Match, packet: Packet) -> bool:
    """Whether ``match`` holds for ``packet`` (every given field must hold)."""
    checks = [
        match.src is None or (match.src.version == packet.src.version and packet.src in match.src),
        match.dst is None or (match.dst.version == packet.dst.version and packet.dst in match.dst),
        match.proto is None or match.proto is packet.proto,
        match.src_ports is None or (packet.src_port is not None and packet.src_port in match.src_ports),
        match.dst_ports is None or (packet.dst_port is not None and packet.dst_port in match.dst_ports),
        match.icmp_type is None or match.icmp_type == packet.icmp_type,
        match.icmp_code is None or match.icmp_code == packet.icmp_code,
        match.ct_states is None or packet.ct_state in match.ct_states,
        match.in_iface is None or match.in_iface == packet.in_iface,
        match.out_iface is None or match.out_iface == packet.out_iface,
    ]
    return all(checks)


def first_match(rules: tuple[Rule, ...], packet: Packet) -> Rule | None:
    return next((rule for rule in rules if matches(rule.match, packet)), None)


def verdict(chain: Chain | None, packet: Packet) -> str:
    """accept / drop / reject:<reply> for ``packet`` through ``chain`` (no chain: accept)."""
    rule = first_match(chain.rules, packet) if chain is not None else None
    if rule is None:
        return "accept" if chain is None else chain.policy.value
    action = rule.action
    return f"reject:{action.reply}" if action.tag == "reject" else action.tag  # type: ignore[union-attr]
