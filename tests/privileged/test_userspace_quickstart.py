"""examples/quickstart.yaml with the userspace switch on every host, and mixed (host-a on the
Linux kernel, host-b on the userspace switch, talking VXLAN to each other): every flow of the
reach matrix — policies, tenant isolation, routing, the service VIP — gets what the spec says,
exactly as with the Linux backend (tests/privileged/test_linux_quickstart.py), and ``verify
--all``'s probes agree with the simulator.

A flow's first packets take the switches' slow path; on a loaded machine a concurrent probe can
time out there (0.6 s), so a flow that got something else than the spec says is probed once more,
alone; the second answer must be right, and only a few flows may need it."""

import random

import pytest
from linux_network import Servers, flows, probe, run_probes
from test_linux_quickstart import SPEC, VIP, expected, normalised
from userspace_network import Mixed

from netvirt.dataplane import registry
from netvirt.dataplane.kernel.naming import TEST_PREFIX
from netvirt.dataplane.userspace.backend import verification
from netvirt.trace.plan import verify_probes
from netvirt.trace.verify import Verifier


@pytest.fixture(scope="module", params=["all-userspace", "mixed"])
def network(request, tmp_path_factory):
    network = Mixed(SPEC, tmp_path_factory.mktemp("state"), None if request.param == "all-userspace" else {"host-b"})
    network.up()
    try:
        yield network
    finally:
        network.down()


def test_reach_matrix_is_the_spec_s(network):
    with Servers(network):
        wanted = flows(network, extra_targets=(VIP,))
        matrix = {flow: normalised(outcome, flow[1]) for flow, outcome in run_probes(network, wanted).items()}
        again = [flow for flow, outcome in matrix.items() if outcome != expected(*flow)]
        for flow in again:
            matrix[flow] = normalised(probe(network.namespace(flow[0]), flow[1], flow[2], flow[3]), flow[1])
    assert len(again) <= len(matrix) // 20, f"{len(again)} flows needed a second probe: {again}"
    wrong = {flow: (outcome, expected(*flow)) for flow, outcome in matrix.items() if outcome != expected(*flow)}
    assert wrong == {}, "flow: (observed, expected)"
    assert len(matrix) > 200 and {o for o in matrix.values()} >= {"ok", "ok:web", "blocked", "refused"}


def test_verify_all_agrees_with_the_simulator(network):
    observer = registry.observer("userspace", network.names.deployment, prefix=TEST_PREFIX)
    # the Mixed helper builds the spec's hosts only, not the outside world `netvirt up` adds
    probes = [p for p in verify_probes(SPEC, random.randrange(20000, 50000)) if p.target != "external"]
    with Verifier(network.graph, observer, **verification(network.graph, network.userspace)) as verifier:
        results = verifier.verify_all([p.flow for p in probes])
    disagree = [(p.source, p.target, r.problems) for p, r in zip(probes, results) if not r.agrees]
    assert disagree == [] and len(results) > 30
