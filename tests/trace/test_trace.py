"""Traces: the JSON interface, the renderers (table, markdown, pcap read back by tshark), the flow
cache, and every hop's packet valid."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
from sim_graphs import assert_valid  # noqa: E402

from conftest import require_tool  # noqa: E402
from netvirt.dataplane.events import Action, Disposition  # noqa: E402
from netvirt.control.compile import compile_network  # noqa: E402
from netvirt.trace.plan import BadInput, plan_trace  # noqa: E402
from netvirt.management.spec import load  # noqa: E402
from netvirt.trace import Tracer, render  # noqa: E402
from netvirt.wire import dissect, to_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = load(ROOT / "examples" / "quickstart.yaml")
ANOMALY_1 = load(ROOT / "examples" / "seed" / "anomaly-1-virtualbox-k8s.yaml")
STEP_KEYS = ["step", "name", "mode", "level", "technique", "hops"]
HOP_KEYS = ["step", "mode", "level", "technique", "device", "namespace", "action", "packet", "mtu", "overhead"]


def traced(spec, source=None, target=None, **options):
    tracer, flow, skip = plan_trace(spec, source, target, options.get("proto"), options.get("dport"), 40000,
                                    options.get("stack"), options.get("size", 0), compile=compile_network)
    return tracer.trace(flow, skip=skip)


def test_json_has_exactly_the_documented_shape():
    data = json.loads(render.json_text(traced(QUICKSTART, "web-1", "web-2")))
    assert list(data) == ["disposition", "reason", "hops", "steps", "anomalies", "answer"]
    assert data["disposition"] == "delivered"
    assert list(data["answer"]) == ["disposition", "reason", "hops", "steps"]
    for walk in (data, data["answer"]):
        for step in walk["steps"]:
            assert list(step) == STEP_KEYS
            assert all(walk["hops"][i]["step"] == step["step"] for i in step["hops"])
        assert [i for step in walk["steps"] for i in step["hops"]] == list(range(len(walk["hops"])))
    table = render.table(traced(QUICKSTART, "web-1", "web-2"))
    for step in data["steps"]:  # the rows a script reads are the rows the table shows
        assert f"{step['step']}. {step['name']}" in table and step["technique"] in table
    for hop in data["hops"] + data["answer"]["hops"]:
        assert list(hop) == HOP_KEYS
        assert list(hop["packet"]) == ["summary", "layers", "bytes"]
        assert isinstance(hop["step"], int) and isinstance(hop["mtu"], int) and isinstance(hop["overhead"], int)
        assert hop["mode"] in ("Hardware", "Kernel", "User", "Kernel/User")
        assert hop["action"] in {action.value for action in Action}
        assert hop["device"] is None or isinstance(hop["device"], str)
        raw = bytes.fromhex(hop["packet"]["bytes"])
        assert hop["packet"]["layers"] == to_json(dissect(raw))  # the same shape as `netvirt pcap show`
    steps = [hop["step"] for hop in data["hops"]]
    assert steps == sorted(steps) and steps[0] == 1 and set(steps) == set(range(1, steps[-1] + 1))
    anomalies = json.loads(render.json_text(traced(ANOMALY_1)))["anomalies"]
    assert anomalies and all(list(a) == ["kind", "step", "message", "fix"] for a in anomalies)
    refused = json.loads(render.json_text(traced(QUICKSTART, "client-1", "db-1")))
    assert refused["answer"] is None  # no answer walk when the request was not delivered


def test_rows_group_hops_and_number_them():
    trace = traced(ANOMALY_1)
    assert [hop.step for row in trace.rows for hop in row.hops] == [hop.step for hop in trace.hops]
    assert all(hop.step == row.step for row in trace.rows for hop in row.hops)
    pod = next(row for row in trace.rows if row.name == "Pod Isolation")
    assert [hop.device for hop in pod.hops] == ["cni0", "cni0", "veth-pod", "eth0", None]
    assert [hop.action for hop in pod.hops][:2] == [Action.ARP, Action.FORWARD]


@pytest.mark.parametrize(("spec", "source", "target"), [
    (QUICKSTART, "web-1", "web-2"), (QUICKSTART, "client-1", "web"), (QUICKSTART, "client-1", "db-1"),
    (QUICKSTART, "web-1", "external"), (ANOMALY_1, None, None),
])
def test_every_hop_carries_a_valid_packet(spec, source, target):
    for hop in traced(spec, source, target).hops:
        assert_valid(hop.packet)


def test_table_reproduces_the_notes_layout():
    text = render.table(traced(ANOMALY_1))
    lines = text.splitlines()
    assert lines[0].split() == ["Step", "Mode", "System", "Level", "Technique"]
    assert lines[2].startswith("1. Physical Entry") and lines[2].endswith("Physical Signal Reception")
    assert "Outcome: delivered" in text and "Path: Physical Entry -> Host OS (Win) ->" in text
    assert "Anomaly [vxlan_checksum_offload]" in text and "  fix: ethtool -K flannel.1" in text
    detail = render.table(traced(ANOMALY_1), detail=True).splitlines()
    assert detail[0].split()[-3:] == ["Device", "Action", "Packet"]
    ndis = next(line for line in detail if "virtualbox-k8s:windows/ndis-filter" in line)
    assert "2. Host OS (Win)" in ndis and " receive " in ndis and ": tcp [S] seq 1000000" in ndis


def test_markdown_is_the_notes_table_format():
    text = render.markdown(traced(ANOMALY_1))
    lines = text.splitlines()
    assert lines[0] == "| Step | Mode | System Level | Technique |"
    assert lines[1] == "| :--- | :--- | :--- | :--- |"
    assert lines[2] == "| **1. Physical Entry** | Hardware | NIC | Physical Signal Reception |"
    assert lines[8] == "| **7. Final Destination** | User | K8s App | Socket API (Buffer Read) |"


def test_pcap_has_one_frame_per_hop_and_tshark_reads_it(tmp_path):
    tshark = require_tool("tshark")
    trace = traced(QUICKSTART, "web-1", "web-2")
    path = tmp_path / "trace.pcap"
    assert render.pcap(trace, str(path)) == len(trace.hops)
    fields = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "ip.src",
                             "-e", "vxlan.vni", "-e", "tcp.dstport", "-o", "ip.check_checksum:TRUE"],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(fields) == len(trace.hops)
    vni = str(QUICKSTART.network("blue").vni)
    encapsulated = [line for line in fields if f"\t{vni}\t" in line]
    assert encapsulated and all(line.endswith("\t80") for line in encapsulated)
    arp = [i for i, hop in enumerate(trace.hops) if hop.action is Action.ARP]
    assert arp and "\t\t" in fields[arp[0]]  # the ARP frame has no IP source
    assert render.pcap(trace, str(tmp_path / "again.pcap")) and (tmp_path / "again.pcap").read_bytes() == path.read_bytes()


def test_flow_cache_hits_on_repeats_and_gives_the_same_trace():
    tracer, flow, skip = plan_trace(QUICKSTART, "web-1", "web-2", None, None, 40000, None, compile=compile_network)
    first = tracer.trace(flow, skip=skip)
    assert (tracer.misses, tracer.cache.misses) == (1, 1)
    for _ in range(5):
        assert tracer.trace(flow, skip=skip) is first
    assert tracer.hits == 5 and tracer.hit_ratio == 5 / 6
    assert tracer.trace(flow, skip=skip, anomalies=False).anomalies == ()
    assert tracer.cache.misses == 1  # the same walk and answer (always walked): a flow-cache hit
    other = tracer.trace(dataclasses.replace(flow, src_port=40001), skip=skip)
    assert tracer.misses == 3 and other.disposition is Disposition.DELIVERED
    assert Tracer(tracer.topology.network).trace(flow, skip=skip) == first  # a fresh tracer agrees


def test_verdicts_match_full_traces():
    tracer, _, _ = plan_trace(QUICKSTART, "web-1", "web-2", None, None, 40000, None, compile=compile_network)
    from netvirt.trace.plan import reach_probes

    for probe in reach_probes(QUICKSTART)[:12]:
        assert tracer.verdict(probe.flow).disposition is Tracer(tracer.cache.simulator.topology.network).trace(
            probe.flow).disposition


def test_a_port_for_icmp_is_refused_by_the_planner():
    """The planner itself refuses what the CLI and the REST API refuse before planning (one check)."""
    with pytest.raises(BadInput, match="ICMP has no ports"):
        plan_trace(QUICKSTART, "web-1", "web-2", "icmp", 80, 40000, None, compile=compile_network)
