"""How traces show the userspace switch: its hops in user mode, outside the host kernel, with the
kernel-bypass blind spot flagged; the walk (what happens to the packet) is the simulator's."""

from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.userspace.labels import DRIVER, ENCAPSULATION, trace_view
from netvirt.graph import DeviceKind
from netvirt.management.spec import load
from netvirt.trace.plan import plan_trace

SPEC = load(Path(__file__).parents[2] / "examples" / "encapsulations.yaml")


def traced(view_hosts):
    """(the plain trace, the trace with ``view_hosts`` on the userspace switch) of gen-a -> gen-b."""
    traces = []
    for hosts in ((), view_hosts):
        tracer, flow, skip = plan_trace(SPEC, "gen-a", "gen-b", "udp", 53, 40000, None, compile=compile_network)
        tracer.view = trace_view(compile_network(SPEC), hosts) if hosts else None
        traces.append(tracer.trace(flow, skip=skip))
    return traces


def test_userspace_hosts_show_user_mode_hops_and_the_bypass_blind_spot():
    plain, user = traced({"host-a", "host-b"})
    assert user.disposition == plain.disposition == "delivered"
    assert [h.action for h in user.hops] == [h.action for h in plain.hops]  # the same walk
    switch = [h for h in user.hops if h.namespace in ("host-a:host-a", "host-b:host-b")]
    assert switch and all(h.mode == "User" for h in switch)
    # what the switch does is invisible to the host's tcpdump, except a frame arriving at a port
    assert all(h.bypass == (not (h.action == "receive" and h.technique == DRIVER)) for h in switch)
    assert {h.technique for h in switch} >= {DRIVER, ENCAPSULATION[DeviceKind.GENEVE]}
    assert not any(h.mode == "User" for h in plain.hops if h.namespace in ("host-a:host-a", "host-b:host-b"))
    assert "kernel_bypass" in {a.kind for a in user.anomalies}
    assert "kernel_bypass" not in {a.kind for a in plain.anomalies}
    endpoints = [h for h in user.hops if h.namespace in ("host-a:gen-a", "host-b:gen-b")]
    assert endpoints and not any(h.bypass for h in endpoints)  # the endpoints' own kernels


def test_a_linux_host_keeps_its_kernel_hops():
    _, mixed = traced({"host-b"})
    assert all(not h.bypass for h in mixed.hops if h.namespace.startswith("host-a:"))
    assert any(h.bypass for h in mixed.hops if h.namespace.startswith("host-b:"))
