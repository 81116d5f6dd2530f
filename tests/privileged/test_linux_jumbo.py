"""Jumbo and mixed-MTU underlays in the kernel: two 9000-byte hosts and a 1500-byte one come up
(NICs get their MTU before the tunnels on them), a DF packet of exactly the MTU netvirt derived
crosses — predicted and observed — and one byte more is dropped with the ICMP error."""

import pytest
from linux_network import deployed
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.capture import Capture
from netvirt.control.compile import compile_network
from netvirt.trace.plan import plan_trace
from netvirt.management.spec import loads

SPEC = loads("""
version: 1
name: jumbo
hosts:
  - {name: h1, underlay: 192.0.2.21/24}
  - {name: h2, underlay: 192.0.2.22/24, mtu: 9000}
  - {name: h3, underlay: 192.0.2.23/24, mtu: 9000}
networks:
  - {name: web, subnet: 10.31.0.0/24}
  - {name: bulk, subnet: 10.32.0.0/24}
routers:
  - {name: r, networks: [web, bulk]}
endpoints:
  - {name: w1, host: h1, network: web}
  - {name: w2, host: h2, network: web}
  - {name: b2, host: h2, network: bulk}
  - {name: b3, host: h3, network: bulk}
""", "jumbo.yaml")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with deployed(SPEC, tmp_path_factory.mktemp("state")) as net:
        yield net


def df_ping(network, source: str, target: str, size: int) -> bool:
    """Whether a DF echo of ``size`` IP bytes from ``source`` to ``target`` is answered."""
    address = network.addresses(target)[0]
    done = netns.run(network.namespace(source), ["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s",
                                                 str(size - 28), address], check=False)
    return done.returncode == 0


def predicted(source: str, target: str, size: int) -> str:
    tracer, flow, skip = plan_trace(SPEC, source, target, "icmp", None, 40000, None, size, compile=compile_network)
    return tracer.trace(flow, skip=skip).disposition.value


def test_derived_mtus():
    assert (SPEC.network("web").mtu, SPEC.network("bulk").mtu) == (1450, 8950)


@pytest.mark.parametrize(("source", "target", "size"), [
    ("b2", "b3", 8950),  # jumbo host to jumbo host over the jumbo underlay
    ("w1", "b3", 1450),  # through h1's router copy, whose bulk leg is clamped to what h1 carries
    ("b3", "w1", 1450),  # routed on h3 into web, tunnelled to the 1500-byte host
])
def test_a_df_packet_of_exactly_the_derived_mtu_crosses(network, source, target, size):
    assert predicted(source, target, size) == "delivered"
    assert df_ping(network, source, target, size)


def test_one_byte_more_is_dropped_with_fragmentation_needed(network):
    b3 = network.namespace("b3")
    assert predicted("b3", "w1", 1451) == "rejected"
    with Capture([(b3, "eth0")]) as capture:
        assert not df_ping(network, "b3", "w1", 1451)
        answer = capture.wait_for(lambda f: not f.outgoing and ICMP in Ether(f.data) and Ether(f.data)[ICMP].type == 3)
    assert answer is not None
    icmp = Ether(answer.data)[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, 1450)
    assert Ether(answer.data)[IP].src == str(SPEC.network("bulk").gateway)
    assert predicted("b2", "b3", 8951) == "dropped"  # the sender's own stack refuses it (EMSGSIZE)
    assert not df_ping(network, "b2", "b3", 8951)
