"""Geneve options end to end: spec ``geneve_options`` -> graph ``Tunnel.options`` -> the bytes the
simulator sends, and the trace's overhead equal to the spec's (the derived MTU's) overhead."""

from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.events import Action
from netvirt.graph import DeviceKind
from netvirt.trace.plan import plan_trace
from netvirt.management.spec import load, overhead
from netvirt.wire import dissect, geneve

SPEC = Path(__file__).resolve().parents[2] / "examples" / "encapsulations.yaml"


def geneve_trace():
    spec = load(SPEC)
    tracer, flow, skip = plan_trace(spec, "gen-a", "gen-b", None, None, 40000, None, 0, compile=compile_network)
    return spec, tracer.trace(flow, skip=skip)


def spec_options(spec) -> tuple[geneve.Option, ...]:
    return tuple(
        geneve.Option(option.option_class, option.type, bytes.fromhex(option.data))
        for option in spec.network("gen").geneve_options
    )


def test_compiled_geneve_tunnels_carry_the_spec_options():
    spec = load(SPEC)
    tunnels = [dev for host in compile_network(spec).hosts for dev in host.devices if dev.kind is DeviceKind.GENEVE]
    assert len(tunnels) == 2  # one per host
    for dev in tunnels:
        assert tuple(geneve.Option(o.option_class, o.type, o.data) for o in dev.config.options) == spec_options(spec)
    others = [dev for host in compile_network(spec).hosts for dev in host.devices
              if dev.kind in (DeviceKind.VXLAN, DeviceKind.NVGRE)]
    assert others and all(dev.config.options == () for dev in others)


def test_traced_geneve_packet_carries_the_spec_options_on_the_wire():
    spec, trace = geneve_trace()
    assert trace.disposition == "delivered"
    expected = spec_options(spec)
    assert len(expected) == 2 and expected[0].data == bytes.fromhex("0000abcd")
    encap = [index for index, hop in enumerate(trace.hops) if hop.action is Action.ENCAP]
    decap = [index for index, hop in enumerate(trace.hops) if hop.action is Action.DECAP]
    assert len(encap) == 1 and len(decap) == 1
    underlay = trace.hops[encap[0]:decap[0]]  # encap, routing, NIC transmit and reception
    assert len(underlay) >= 3
    for hop in underlay:
        headers = [layer for layer in dissect(hop.packet) if isinstance(layer, geneve.Repr)]
        assert len(headers) == 1, hop
        assert headers[0].vni == spec.network("gen").vni
        assert headers[0].options == expected
        assert geneve.View(hop.packet, _geneve_offset(hop.packet)).critical  # type 0x80 sets the C flag


def test_trace_overhead_equals_the_spec_overhead():
    spec, trace = geneve_trace()
    network = spec.network("gen")
    expected = overhead("geneve", 4, network.options_length)
    assert expected == 50 + 12
    encapsulated = [hop for hop in trace.hops if hop.overhead]
    assert encapsulated and {hop.overhead for hop in encapsulated} == {expected}
    # the derived MTU is what the overhead leaves: the largest inner packet fits the underlay exactly
    assert network.mtu == min(host.mtu for host in spec.hosts) - expected
    inner = next(hop for hop in trace.hops if hop.action is Action.DECAP).packet
    outer = next(hop for hop in trace.hops if hop.action is Action.ENCAP).packet
    # outer frame = outer Ethernet + IPv4 + UDP + Geneve + options + inner frame; the outer Ethernet
    # header stands in for the inner one the overhead counts (both 14 bytes)
    assert len(outer) - len(inner) == expected


def _geneve_offset(frame: bytes) -> int:
    """Ethernet 14 + IPv4 header (IHL) + UDP 8."""
    return 14 + (frame[14] & 0x0F) * 4 + 8
