"""``hosts[].drop_from``: compiled to the XDP hook of the host's underlay NIC, simulated as a
drop in the driver before the socket buffer exists (the kernel backends' tests run it for real)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netvirt.control.compile import compile_host, compile_network  # noqa: E402
from netvirt.dataplane.events import Action, Disposition  # noqa: E402
from netvirt.graph import DROP_LIST_PROGRAM, HookKind  # noqa: E402
from netvirt.management.spec import load  # noqa: E402
from netvirt.trace.plan import plan_trace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def quickstart_dropping(tmp_path, prefixes: str):
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    path = tmp_path / "quickstart.yaml"
    path.write_text(text.replace("    labels: {rack: r1}\n", f"    labels: {{rack: r1}}\n    drop_from: [{prefixes}]\n", 1))
    return load(path)


def test_drop_from_is_an_xdp_hook_on_the_underlay_nic(tmp_path):
    spec = quickstart_dropping(tmp_path, "203.0.113.0/24, 2001:db8:bad::/48")
    nic = next(dev for dev in compile_host(spec, "host-a").devices if dev.namespace == "host-a" and dev.kind.value == "nic")
    (hook,) = nic.hooks
    assert (hook.kind, hook.program) == (HookKind.XDP, DROP_LIST_PROGRAM)
    assert [str(rule.match.src) for rule in hook.rules] == ["203.0.113.0/24", "2001:db8:bad::/48"]
    assert all(rule.action.tag == "drop" for rule in hook.rules)
    assert not any(dev.hooks for dev in compile_host(spec, "host-b").devices)


def test_the_answer_from_a_listed_source_dies_in_the_driver_before_an_sk_buff(tmp_path):
    spec = quickstart_dropping(tmp_path, "203.0.113.0/24")
    tracer, flow, skip = plan_trace(spec, "web-1", "external", "udp", 53, 40000, None, 0, compile=compile_network)
    trace = tracer.trace(flow, skip=skip)
    assert trace.disposition is Disposition.DELIVERED
    answer = trace.answer
    assert answer.disposition is Disposition.DROPPED
    arrival = [hop for hop in answer.hops if hop.namespace == "host-a:host-a"]
    assert [hop.action for hop in arrival] == [Action.RECEIVE, Action.FILTER_DROP]  # no driver hop: no sk_buff
    drop = arrival[-1]
    assert (drop.mode, drop.level, drop.technique) == ("Kernel", "Driver", "XDP eBPF program drop_from (before sk_buff)")


def test_trace_for_the_ebpf_backend_labels_its_programs(tmp_path):
    from netvirt.dataplane.ebpf.predict import POLICY, SERVICES, XDP_DROP, ebpf_view

    spec = quickstart_dropping(tmp_path, "203.0.113.0/24")
    tracer, flow, skip = plan_trace(spec, "client-1", "web", None, None, 40000, None, 0, compile=compile_network)
    tracer.view = ebpf_view(compile_network(spec))
    trace = tracer.trace(flow, skip=skip)
    techniques = {(hop.namespace, hop.technique) for hop in trace.hops + trace.answer.hops}
    assert ("host-a:client-1", SERVICES) in techniques  # the DNAT to a backend, in client-1's tc program
    policy = {ns for ns, technique in techniques if technique == POLICY}
    assert policy & {"host-a:web-1", "host-b:web-2"} and all(hop.mode == "Kernel" for hop in trace.hops
                                                                if hop.technique in (POLICY, SERVICES))
    assert not any("Netfilter" in hop.technique for hop in trace.hops if hop.action.value.startswith("filter"))
    tracer, flow, skip = plan_trace(spec, "web-1", "external", "udp", 53, 40000, None, 0, compile=compile_network)
    tracer.view = ebpf_view(compile_network(spec))
    drop = tracer.trace(flow, skip=skip).answer.hops[-1]
    assert (drop.mode, drop.level, drop.technique) == ("Kernel", "Driver", XDP_DROP)
