"""Golden traces: the JSON of the notes' walkthroughs and paths and of quickstart traces.

After an intended change, regenerate and review the diff (docs/trace.md, "Goldens"):

    NETVIRT_REGEN_GOLDENS=1 .venv/bin/python -m pytest tests/trace/test_goldens.py
    git diff tests/trace/goldens
"""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
from sim_graphs import assert_valid  # noqa: E402

from netvirt.control.compile import compile_network  # noqa: E402
from netvirt.trace.plan import plan_trace  # noqa: E402
from netvirt.management.spec import load  # noqa: E402
from netvirt.trace import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = Path(__file__).with_name("goldens")
REGENERATE = os.environ.get("NETVIRT_REGEN_GOLDENS") == "1"

# golden name -> (spec, --from, --to, --proto, --dport, --size)
CASES = {
    "anomaly-1-virtualbox-k8s": ("examples/seed/anomaly-1-virtualbox-k8s.yaml", None, None, None, None, 0),
    "anomaly-2-wsl2-k8s": ("examples/seed/anomaly-2-wsl2-k8s.yaml", None, None, None, None, 0),
    "path-physical": ("examples/seed/path-physical.yaml", None, None, None, None, 0),
    "path-vm": ("examples/seed/path-vm.yaml", None, None, None, None, 0),
    "path-container": ("examples/seed/path-container.yaml", None, None, None, None, 0),
    "path-kubernetes": ("examples/seed/path-kubernetes.yaml", None, None, None, None, 0),
    "quickstart-same-host": ("examples/quickstart.yaml", "client-1", "web-1", None, None, 0),
    "quickstart-cross-host-vxlan": ("examples/quickstart.yaml", "web-1", "web-2", None, None, 0),
    "encapsulations-geneve": ("examples/encapsulations.yaml", "gen-a", "gen-b", None, None, 0),
    "quickstart-service-dnat": ("examples/quickstart.yaml", "client-1", "web", None, None, 0),
    "quickstart-policy-drop": ("examples/quickstart.yaml", "client-1", "db-1", None, None, 0),
    "quickstart-mtu-drop": ("examples/quickstart.yaml", "web-1", "web-2", None, None, 1500),
    "quickstart-tenant-isolation": ("examples/quickstart.yaml", "globex-1", "web-2", None, None, 0),
    # reply paths across a distributed router (each answer routed on the replying host)
    "distributed-router-a-b": ("examples/distributed-router.yaml", "a", "b", None, None, 0),
    "distributed-router-c-b-udp": ("examples/distributed-router.yaml", "c", "b", "udp", 53, 0),
    "distributed-router-d-a": ("examples/distributed-router.yaml", "d", "a", None, None, 0),
    "distributed-router-b-c-icmp": ("examples/distributed-router.yaml", "b", "c", "icmp", None, 0),
}


def trace_of(case: str):
    spec_path, source, target, proto, dport, size = CASES[case]
    spec = load(ROOT / spec_path)
    if target == "web-2" and source == "globex-1":  # web-2's address, seen from another tenant
        target = str(spec.endpoint("web-2").attachments[0].ip)
    tracer, flow, skip = plan_trace(spec, source, target, proto, dport, 40000, None, size, compile=compile_network)
    return tracer.trace(flow, skip=skip)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case):
    trace = trace_of(case)
    for hop in trace.hops:  # every hop's packet is a valid frame (scapy recomputes every checksum)
        assert_valid(hop.packet)
    assert trace_of(case) == trace  # deterministic
    text = render.json_text(trace)
    path = GOLDENS / f"{case}.json"
    if REGENERATE:
        GOLDENS.mkdir(exist_ok=True)
        path.write_text(text)
        (GOLDENS / f"{case}.txt").write_text(render.table(trace_of(case)))
    assert path.exists(), f"missing golden {path.name}: run with NETVIRT_REGEN_GOLDENS=1"
    assert json.loads(text) == json.loads(path.read_text()), f"{case} differs from its golden"
    assert render.table(trace_of(case)) == (GOLDENS / f"{case}.txt").read_text()


def test_goldens_say_what_the_cases_are_about():
    expectations = {
        "quickstart-policy-drop": ("dropped", "policy_drop"),
        "quickstart-mtu-drop": ("dropped", "mtu"),
        "quickstart-tenant-isolation": ("dropped", "unresolved_neighbour"),
        "anomaly-2-wsl2-k8s": ("delivered", "double_nat"),
        "anomaly-1-virtualbox-k8s": ("delivered", "vxlan_checksum_offload"),
    }
    for case, (disposition, kind) in expectations.items():
        golden = json.loads((GOLDENS / f"{case}.json").read_text())
        assert golden["disposition"] == disposition, case
        assert kind in {anomaly["kind"] for anomaly in golden["anomalies"]}, case
    service = json.loads((GOLDENS / "quickstart-service-dnat.json").read_text())
    assert any(hop["action"] == "nat" for hop in service["hops"])
    geneve = json.loads((GOLDENS / "encapsulations-geneve.json").read_text())
    assert any(layer["layer"] == "geneve" for hop in geneve["hops"] for layer in hop["packet"]["layers"])
    cross = json.loads((GOLDENS / "quickstart-cross-host-vxlan.json").read_text())
    assert [hop["action"] for hop in cross["hops"]].count("encap") == 1


def test_distributed_router_goldens_answer_on_the_replying_host():
    """Each answer is routed by the router copy on the replying host and crosses only the two
    hosts of the flow; its steps group its hops like the request's."""
    for case, replier, sender in (("distributed-router-a-b", "h2", "h1"), ("distributed-router-c-b-udp", "h2", "h3"),
                                  ("distributed-router-d-a", "h1", "h3"), ("distributed-router-b-c-icmp", "h3", "h2")):
        golden = json.loads((GOLDENS / f"{case}.json").read_text())
        answer = golden["answer"]
        assert golden["disposition"] == answer["disposition"] == "delivered", case
        assert {hop["namespace"] for hop in answer["hops"] if hop["namespace"].endswith(":r")} == {f"{replier}:r"}
        assert {hop["namespace"].split(":")[0] for hop in answer["hops"]} == {replier, sender}, case
        assert "asymmetric_return" not in {anomaly["kind"] for anomaly in golden["anomalies"]}, case
        for walk in (golden, answer):
            grouped = [index for step in walk["steps"] for index in step["hops"]]
            assert grouped == list(range(len(walk["hops"]))), case
            assert all(walk["hops"][i]["step"] == step["step"] for step in walk["steps"] for i in step["hops"])
