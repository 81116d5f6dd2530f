"""Path MTU in the kernel: a router between a 1450-byte overlay and a 1300-byte one drops a DF
packet that does not fit and answers with ICMP fragmentation-needed carrying the next-hop MTU."""

import pytest
from linux_network import bring_up, tear_down
from linux_testbed import ping
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.capture import Capture
from netvirt.management.spec import loads

SPEC = loads("""
version: 1
name: mtu
hosts:
  - {name: h1, underlay: 192.0.2.1/24}
  - {name: h2, underlay: 192.0.2.2/24}
networks:
  - {name: wide, subnet: 10.1.0.0/24}
  - {name: narrow, subnet: 10.2.0.0/24, mtu: 1300}
routers:
  - {name: r, networks: [wide, narrow]}
endpoints:
  - {name: a, host: h1, network: wide}
  - {name: b, host: h2, network: narrow}
""", "mtu.yaml")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    net = bring_up(SPEC, tmp_path_factory.mktemp("state"))
    try:
        yield net
    finally:
        tear_down(net)


def test_df_packet_above_the_path_mtu_gets_fragmentation_needed(network):
    a, b = network.namespace("a"), network.namespace("b")
    b_address, gateway = network.addresses("b")[0], str(SPEC.network("wide").gateway)
    assert ping(a, b_address)  # the path works for small packets
    with Capture([(a, "eth0"), (b, "eth0")]) as capture:
        big = netns.run(a, ["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1372", b_address], check=False)
        answer = capture.wait_for(lambda f: f.namespace == a and not f.outgoing and ICMP in Ether(f.data)
                                  and Ether(f.data)[ICMP].type == 3)
    assert big.returncode != 0
    icmp = Ether(answer.data)[ICMP]
    assert (icmp.type, icmp.code, icmp.nexthopmtu) == (3, 4, 1300)  # fragmentation needed, MTU 1300
    assert Ether(answer.data)[IP].src == gateway
    quoted = Ether(answer.data)[ICMP].payload
    assert quoted.dst == b_address and quoted.flags.DF and quoted.len == 1400
    assert not [f for f in capture.frames() if f.namespace == b and len(f.data) > 1300]  # never arrived
    # what fits the narrow network still passes, with DF set
    assert netns.run(a, ["ping", "-n", "-c", "1", "-W", "1", "-M", "do", "-s", "1272", b_address],
                     check=False).returncode == 0
