"""Specs netvirt writes for you: ``generate`` (large, for scale tests) and ``starter_spec``."""

import ipaddress
import math
from typing import Any

from netvirt.management.spec.loader import build
from netvirt.management.spec.model import Spec
from netvirt.management.spec.source import Source

HOSTS_PER_NETWORK = 10
TENANTS = ("tenant-a", "tenant-b")
KINDS = ("container", "pod", "vm")


def generated(hosts: int, endpoints_per_host: int) -> dict[str, Any]:
    """The data of a valid spec with ``hosts`` hosts and ``endpoints_per_host`` endpoints on each.

    Every 10 hosts share one network; networks alternate between two tenants whose subnets overlap
    on purpose (legal across tenants); every network is dual-stack. Addresses, MACs and VNIs are
    left to the allocator. Each network has a router (one per tenant), an ingress policy and, when
    it has two listening endpoints, a service. Deterministic: same arguments, same spec.
    """
    if hosts < 1 or endpoints_per_host < 0:
        raise ValueError("generate needs at least 1 host and 0 or more endpoints per host")
    networks = math.ceil(hosts / HOSTS_PER_NETWORK)
    needed = 2 * HOSTS_PER_NETWORK * max(endpoints_per_host, 1) + 2  # twice the endpoints: few collisions
    prefix = min(24, 32 - math.ceil(math.log2(needed)))
    per_tenant = math.ceil(networks / len(TENANTS))
    if per_tenant << (32 - prefix) > 1 << 24:
        raise ValueError(f"{hosts} hosts x {endpoints_per_host} endpoints do not fit in 10.0.0.0/8")
    underlay = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544: addresses for benchmarking
    if hosts > underlay.num_addresses - 2:
        raise ValueError(f"at most {underlay.num_addresses - 2} hosts")
    data: dict[str, Any] = {
        "version": 1,
        "name": f"generated-{hosts}x{endpoints_per_host}",
        "description": f"{hosts} hosts x {endpoints_per_host} endpoints (netvirt generate)",
        "service_subnet": "172.20.0.0/16",
        "hosts": [
            {"name": f"host-{h + 1}", "underlay": f"{underlay.network_address + h + 1}/{underlay.prefixlen}"}
            for h in range(hosts)
        ],
        "networks": [],
        "routers": [],
        "endpoints": [],
        "policies": [],
        "services": [],
    }
    for k in range(networks):
        tenant, slot = TENANTS[k % len(TENANTS)], k // len(TENANTS)
        subnet = ipaddress.ip_network(f"10.0.0.0/{prefix}").network_address + (slot << (32 - prefix))
        name = f"net-{k + 1}"
        data["networks"].append(
            {
                "name": name,
                "tenant": tenant,
                "subnet": f"{subnet}/{prefix}",
                "subnet6": str(ipaddress.ip_network(f"fd00:0:{slot:x}::/64")),
            }
        )
        data["policies"].append(
            {
                "name": f"{name}-in",
                "network": name,
                "default": "drop",
                "rules": [
                    {"action": "allow", "proto": "tcp", "dst_port": 80, "to": "app=web"},
                    {"action": "allow", "proto": "icmp", "from": f"{subnet}/{prefix}"},
                ],
            }
        )
    for h in range(hosts):
        network = f"net-{h // HOSTS_PER_NETWORK + 1}"
        for e in range(endpoints_per_host):
            web = e % 2 == 0
            data["endpoints"].append(
                {
                    "name": f"h{h + 1}-e{e + 1}",
                    "kind": KINDS[e % len(KINDS)],
                    "host": f"host-{h + 1}",
                    "network": network,
                    "labels": {"app": "web" if web else "db"},
                    "listen": ["tcp/80"] if web else ["tcp/5432"],
                }
            )
    for k in range(networks):
        first = k * HOSTS_PER_NETWORK
        backends = [f"h{first + 1}-e{e + 1}" for e in range(0, min(endpoints_per_host, 4), 2)]
        if len(backends) == 2:
            data["services"].append({"name": f"web-{k + 1}", "port": "tcp/80", "backends": backends})
    for t, tenant in enumerate(TENANTS):
        joined = [f"net-{k + 1}" for k in range(t, networks, len(TENANTS))]
        if joined:
            data["routers"].append({"name": f"router-{tenant}", "networks": joined, "snat": True})
    data["stacks"] = [
        {
            "name": "k8s-node",
            "layers": [
                {"layer": "host", "os": "linux", "host": "host-1"},
                {"layer": "kubernetes", "cni": "flannel-vxlan", "proxy": "iptables"},
                {"layer": "pod"},
                {"layer": "app", "listen": "tcp/80"},
            ],
        }
    ]
    return data


def generate(hosts: int, endpoints_per_host: int) -> Spec:
    """The resolved spec of ``generated(hosts, endpoints_per_host)``."""
    return build(Source(generated(hosts, endpoints_per_host), [], "generated"))


def starter_spec() -> str:
    """A commented starter spec (``netvirt init``): it validates as is; edit it from there."""
    return STARTER


STARTER = """\
# A netvirt spec: what your virtual networks look like. `netvirt validate` checks it,
# `netvirt show` prints it with every allocated address, docs/spec.md explains every key.
version: 1
name: my-network

# Physical machines (the underlay): the overlays run between their underlay addresses.
hosts:
  - name: host-a
    underlay: 192.0.2.10/24      # address/prefix on the physical network (IPv4 or IPv6)
    mtu: 1500                    # physical MTU; overlay MTUs are derived from it
  - name: host-b
    underlay: 192.0.2.11/24

# Virtual networks (overlays). Leave out vni, gateway and mtu: netvirt picks them.
networks:
  - name: blue
    tenant: acme                 # tenants are isolated from each other
    encap: vxlan                 # vxlan | geneve | nvgre | none
    subnet: 10.10.0.0/24
    subnet6: fd00:10::/64        # optional: dual stack

# Things with a network stack: vm | container | pod | host. Leave out ip/mac to allocate them.
endpoints:
  - name: web-1
    kind: container
    host: host-a
    network: blue                # short form of attachments: [{network: blue}]
    labels: {app: web}
    listen: [tcp/80]
  - name: client-1
    kind: vm
    host: host-b
    network: blue

# Who may talk to whom: ordered rules, first match wins, then the default.
policies:
  - name: blue-in
    network: blue
    direction: ingress
    default: drop
    rules:
      - {action: allow, proto: tcp, dst_port: 80, to: app=web}
      - {action: allow, proto: icmp}

# A virtual IP balanced over backends (like a Kubernetes ClusterIP).
services:
  - name: web
    port: tcp/80                 # the vip is allocated from 10.96.0.0/16
    backends: [web-1]

# Nested environments a packet crosses, bottom to top, for `netvirt trace --stack`.
stacks:
  - name: container-on-linux
    layers:
      - {layer: host, os: linux, host: host-a}
      - {layer: container, runtime: docker, network: bridge, endpoint: web-1}
      - {layer: app, listen: tcp/80}
"""
