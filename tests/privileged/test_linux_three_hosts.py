"""A spec nobody here wrote for the quickstart: three hosts (one with a 9000-byte underlay), a
distributed router with SNAT, an IPv6-only network, a client-IP affinity service and a policy
with a log rule. `verify --all` agrees with the simulator on every flow, in both directions, and
the log rule's records appear while it runs."""

import pytest
from linux_network import deployed

from netvirt.dataplane.kernel.nflog import Logs
from netvirt.dataplane.kernel.observe import KernelObserver
from netvirt.management.spec import loads
from netvirt.trace.plan import reach_network, verify_probes
from netvirt.trace.verify import Verifier

SPEC = loads("""
version: 1
name: three
hosts:
  - {name: h1, underlay: 192.0.2.51/24}
  - {name: h2, underlay: 192.0.2.52/24}
  - {name: h3, underlay: 192.0.2.53/24, mtu: 9000}
networks:
  - {name: web, subnet: 10.51.0.0/24}
  - {name: bulk, subnet: 10.52.0.0/24}
  - {name: six, subnet6: "fd00:53::/64"}
routers:
  - {name: r, networks: [web, bulk], snat: true}
endpoints:
  - {name: w1, host: h1, network: web, listen: [tcp/80], labels: {app: web}}
  - {name: w2, host: h2, network: web, listen: [tcp/80], labels: {app: web}}
  - {name: b3, host: h3, network: bulk, listen: [tcp/9000]}
  - {name: s1, host: h1, network: six, listen: [udp/53]}
  - {name: s3, host: h3, network: six}
policies:
  - name: web-in
    network: web
    direction: ingress
    default: drop
    rules:
      - {action: log, proto: tcp, dst_port: 80}
      - {action: allow, proto: tcp, dst_port: 80}
      - {action: allow, proto: icmp}
services:
  - {name: websvc, port: tcp/80, backends: [w1, w2], affinity: client-ip}
""", "three.yaml")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with deployed(SPEC, tmp_path_factory.mktemp("state")) as net:
        yield net


def test_verify_all_agrees_in_both_directions_and_the_log_rule_records(network):
    probes = verify_probes(SPEC, 23000)
    logged = [network.namespace("w1"), network.namespace("w2")]
    with Logs(logged) as logs, Verifier(reach_network(network.graph), KernelObserver(network.names)) as verifier:
        results = verifier.verify_all([p.flow for p in probes])
        records = logs.records()
    assert [(p.source, p.target, r.problems) for p, r in zip(probes, results) if not r.agrees] == []
    by_pair = {(p.source, p.target): r for p, r in zip(probes, results)}
    assert all(r.observed.answered == r.predicted.answered for r in results)
    assert by_pair[("s3", "s1")].observed.answered == "delivered"  # IPv6 only, across hosts, answered
    assert by_pair[("b3", "external")].observed.disposition == "delivered"  # SNAT from the jumbo host
    jumbo = by_pair[("b3", "w1")].observed.answer  # the answer from the 1500-byte host to the jumbo one
    assert "h1:h1/eth0" in jumbo.places and jumbo.packets["h1:h1/eth0"].tunnel[1] == "192.0.2.53"
    backends = {r.observed.delivered_to for (_, target), r in by_pair.items() if target == "service/websvc"}
    assert backends <= {"h1:w1", "h2:w2"}
    assert any(r.prefix.startswith("policy web-in rule 1") and r.hook == "input" for r in records), records
