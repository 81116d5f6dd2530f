"""The outside world in the kernel: quickstart's routers masquerade to the `external` server
(203.0.113.10 on the underlay), and verify checks it in both directions against the simulator."""

from dataclasses import replace

import pytest
from linux_network import deployed
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from netvirt.dataplane.kernel.capture import Capture
from netvirt.dataplane.kernel.observe import KernelObserver
from netvirt.control.compile import compile_network
from netvirt.trace.plan import plan_trace, reach_network
from netvirt.management.spec import load
from netvirt.trace.verify import Verifier

SPEC = load("examples/quickstart.yaml")


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    with deployed(SPEC, tmp_path_factory.mktemp("state")) as net:
        yield net


def flow(source: str, port: int):
    _, planned, _ = plan_trace(SPEC, source, "external", None, None, port, None, compile=compile_network)
    return planned


def test_snat_to_external_is_observed_as_predicted(network):
    outside = network.names.graph_namespace("internet", "internet")
    host_a = str(SPEC.host("host-a").underlay.ip)
    with Verifier(reach_network(network.graph), KernelObserver(network.names)) as verifier:
        with Capture([(outside, "eth0")]) as capture:
            result = verifier.verify(flow("web-1", 33001))
            syn = capture.wait_for(lambda f: not f.outgoing and TCP in Ether(f.data)
                                   and Ether(f.data)[TCP].flags == "S" and Ether(f.data)[TCP].dport == 443)
        isolated = verifier.verify(replace(flow("globex-1", 33002)))
    assert result.agrees, result.problems
    assert result.observed.disposition == "delivered" and result.observed.delivered_to == "internet:internet"
    assert syn is not None and Ether(syn.data)[IP].src == host_a  # masqueraded twice: router, then host
    assert result.observed.packets["internet:internet/eth0"].inner[0] == host_a
    assert result.observed.answered == "delivered"  # un-NATed on the way back, to web-1's own address
    assert result.observed.answer.packets["host-a:web-1/eth0"].inner[1] == str(SPEC.endpoint("web-1").attachments[0].ip)
    assert isolated.agrees and isolated.observed.disposition == "dropped"  # globex has no router
