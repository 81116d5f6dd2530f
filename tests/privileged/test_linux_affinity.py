"""Client-IP affinity in the kernel, with both filter backends: every client keeps its backend over
20 connections, and it is the backend the simulator predicts (the same source hash)."""

import pytest
from linux_network import Servers, deployed, probe

from netvirt.control.compile import compile_network
from netvirt.management.spec import loads
from netvirt.trace.plan import plan_trace

SPEC = loads("""
version: 1
name: affinity
hosts:
  - {name: h1, underlay: 192.0.2.31/24}
  - {name: h2, underlay: 192.0.2.32/24}
networks:
  - {name: net, subnet: 10.40.0.0/24}
endpoints:
  - {name: s1, host: h1, network: net, listen: [tcp/80]}
  - {name: s2, host: h2, network: net, listen: [tcp/80]}
  - {name: s3, host: h2, network: net, listen: [tcp/80]}
  - {name: c1, host: h1, network: net, ip: 10.40.0.101}
  - {name: c2, host: h1, network: net, ip: 10.40.0.102}
  - {name: c3, host: h2, network: net, ip: 10.40.0.103}
  - {name: c4, host: h2, network: net, ip: 10.40.0.104}
services:
  - {name: web, vip: 10.96.0.40, port: tcp/80, backends: [s1, s2, s3], affinity: client-ip}
""", "affinity.yaml")
CLIENTS = ("c1", "c2", "c3", "c4")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with deployed(SPEC, tmp_path_factory.mktemp("state")) as net, Servers(net):
        yield net


def predicted(client: str) -> str:
    tracer, flow, skip = plan_trace(SPEC, client, "web", None, None, 40000, None, compile=compile_network)
    return tracer.trace(flow, skip=skip).reason.split(" in ")[-1]


@pytest.mark.parametrize("filter", ["nftables", "iptables"])
def test_each_client_keeps_the_predicted_backend_over_20_connections(network, filter):
    network.apply(filter)
    chosen = {}
    for client in CLIENTS:
        answers = {probe(network.namespace(client), "10.96.0.40", "tcp", 80) for _ in range(20)}
        assert len(answers) == 1, (client, answers)
        chosen[client] = answers.pop().removeprefix("ok:")
        assert chosen[client] == predicted(client)
    assert len(set(chosen.values())) > 1  # the clients spread over the backends
    for graph in network.graph.hosts:  # the rules read back as applied: no drift
        assert network.backends[graph.host].drift(graph) == []
