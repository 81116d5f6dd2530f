"""The eBPF programs on packet bytes (BPF_PROG_TEST_RUN, no traffic) against the simulator.

Katran's fixture style: an input packet, the program's verdict and its output bytes. Hypothesis
generates rule lists and packets; the tc policy program's decision (rule index and action) must
equal the simulator's compiled classifier on the same bytes, and service DNAT / reverse NAT must
leave exactly the bytes (checksums included) the simulator's NAT leaves.
"""

import ctypes
import re
import struct
import subprocess
import sys
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netvirt.dataplane.ebpf import layouts as L
from netvirt.dataplane.ebpf.build import object_file, source_digest
from netvirt.dataplane.ebpf.maps import MapError, compile_chain
from netvirt.dataplane.ebpf.programs import TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, EndpointProgram, XdpDropProgram
from netvirt.dataplane.sim import packets
from netvirt.dataplane.sim.classify import CompiledClassifier
from netvirt.dataplane.sim.netfilter import packet_key
from netvirt.dataplane.sim.stack import pick_target
from netvirt.graph import (
    ACCEPT,
    DROP,
    Accept,
    Affinity,
    Chain,
    CtState,
    Dnat,
    Drop,
    Match,
    NatTarget,
    NetfilterHook,
    PortRange,
    Proto,
    Reject,
    RejectWith,
    Rule,
    Verdict,
)
from netvirt.wire import builders
from netvirt.wire.checksum import compute as internet_checksum
from netvirt.wire.fields import headers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
from test_classify import IFACES, aimed, rule_lists  # noqa: E402

# BPF_PROG_TEST_RUN runs a tc program on this namespace's loopback (ifindex 1) unless told
# otherwise: the interface the packets use is IFACES[0]; the others exist only in rules.
IFINDEX = {name: 1 if name == IFACES[0] else 1000 + i for i, name in enumerate(IFACES)}
MACS = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
ACTIONS = {Accept: L.ACCEPT, Drop: L.DROP, Reject: L.REJECT}


@pytest.fixture(scope="module")
def endpoint():
    with EndpointProgram.load() as program:
        yield program


def frame_of(key) -> bytes:
    """Ethernet + IP bytes whose fields are ``key``'s (a non-first fragment when TCP/UDP has no ports)."""
    fragment = key.proto in (6, 17) and key.src_port is None
    if key.proto in (6, 17) and not fragment:
        transport = struct.pack("!HH", key.src_port, key.dst_port) + bytes(16 if key.proto == 6 else 4)
    elif key.proto in (1, 58):
        transport = struct.pack("!BBHHH", key.icmp_type, key.icmp_code, 0, 7, 1)
    else:
        transport = bytes(8)
    if key.family == 4:
        flags = 1 if fragment else 0x4000
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(transport), 1, flags, 64, key.proto, 0,
                             key.src.to_bytes(4, "big"), key.dst.to_bytes(4, "big"))
        header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
        return MACS + b"\x08\x00" + header + transport
    extension = struct.pack("!BBHI", key.proto, 0, 1 << 3, 9) if fragment else b""
    header = struct.pack("!IHBB16s16s", 6 << 28, len(extension) + len(transport), 44 if fragment else key.proto, 64,
                         key.src.to_bytes(16, "big"), key.dst.to_bytes(16, "big"))
    return MACS + b"\x86\xdd" + header + extension + transport


def established(program: EndpointProgram, frame: bytes) -> None:
    """Make ``frame``'s flow a reply of a tracked connection (its conntrack state ESTABLISHED)."""
    found = headers(frame)
    flow = L.Flow(src=L.address_words(found.src), dst=L.address_words(found.dst), src_port=found.src_port,
                  dst_port=found.dst_port, family=found.version, proto=found.proto)
    table = program.obj.map("nv_conntrack", L.Flow, L.Conntrack)
    table.update(flow, L.Conntrack(is_reply=1))




@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rule_lists, st.sampled_from(Verdict), st.sampled_from([NetfilterHook.INPUT, NetfilterHook.OUTPUT]), st.data())
def test_policy_verdict_equals_the_simulator(endpoint, rules, policy, hook, data):
    try:
        entries_fit = compile_chain(rules, policy, IFINDEX.__getitem__, 0)
    except MapError:
        return  # more than the maps hold: configure refuses it whole (test_limits_are_refused)
    assert entries_fit.tuples
    endpoint.configure((Chain(hook=hook, rules=rules, policy=policy),), (), IFINDEX.__getitem__)
    classifier = CompiledClassifier(rules, policy)
    probes = data.draw(st.lists(st.sampled_from(rules).flatmap(lambda r: aimed(r.match)), min_size=1, max_size=12))
    for probe in probes:
        frame = frame_of(probe)
        state = data.draw(st.sampled_from([CtState.NEW, CtState.ESTABLISHED]))
        mark = probe.mark
        endpoint.clear_conntrack()
        if state is CtState.ESTABLISHED:
            established(endpoint, frame)
        iface = IFACES[0]
        key = packet_key(headers(frame), state, iface if hook is NetfilterHook.INPUT else None,
                         iface if hook is NetfilterHook.OUTPUT else None)
        key = type(key)(**{**{f: getattr(key, f) for f in key.__slots__}, "mark": mark})
        index, action = classifier.classify(key)
        run = endpoint.run(frame, hook, mark=mark)
        assert (run.index, run.action, run.ct_state) == (index, ACTIONS[type(action)], 1 if state is CtState.NEW else 2), probe
        resets = isinstance(action, Reject) and action.reply is RejectWith.TCP_RESET and probe.proto == 6 and probe.src_port is not None
        assert run.retval == (TC_ACT_OK if isinstance(action, Accept) else TC_ACT_REDIRECT if resets else TC_ACT_SHOT)


def test_limits_are_refused():
    shapes = [Rule(match=Match(src=ip_network(f"0.0.0.0/{n}"), dst=ip_network(f"0.0.0.0/{m}")), action=DROP)
              for n in range(12) for m in range(12)]
    with pytest.raises(MapError, match="more than 128 distinct match shapes"):
        compile_chain(shapes, Verdict.ACCEPT, lambda n: 1, 0)
    crowded = [Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange(n, n + 1)), action=DROP) for n in range(1, 19, 2)]
    with pytest.raises(MapError, match="differ only in their port ranges"):
        compile_chain(crowded, Verdict.ACCEPT, lambda n: 1, 0)


def test_log_rules_emit_records_and_marks_are_set(endpoint):
    rules = (Rule(match=Match(proto=Proto.UDP), action=ACCEPT, log="seen-udp", set_mark=0x42),)
    endpoint.configure((Chain(hook=NetfilterHook.OUTPUT, rules=rules),), (), IFINDEX.__getitem__)
    before = endpoint.counters()["logged"]
    frame = packets.frame(MACS[:6], MACS[6:], builders.probe(ip_address("10.0.0.1"), ip_address("10.0.0.2"), "udp",
                                                            src_port=5000, dst_port=53))
    endpoint.clear_conntrack()
    run = endpoint.run(frame, NetfilterHook.OUTPUT)
    assert (run.index, run.action) == (0, L.ACCEPT)
    assert endpoint.counters()["logged"] == before + 1
    assert endpoint.logs[L.CHAIN_OUTPUT] == {0: "seen-udp"}
    (record,) = endpoint.log_records()[-1:]
    assert (record.chain, record.index, record.action, record.flow.dst_port) == (L.CHAIN_OUTPUT, 0, L.ACCEPT, 53)
    assert bytes(record.flow.src)[:4] == bytes([10, 0, 0, 1])


@pytest.mark.parametrize("hook", [NetfilterHook.INPUT, NetfilterHook.OUTPUT])
@pytest.mark.parametrize(("client", "server"), [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")])
def test_a_tcp_reject_answers_with_the_simulators_reset(endpoint, hook, client, server):
    rules = (Rule(match=Match(proto=Proto.TCP, dst_ports=PortRange.single(22)), action=Reject(RejectWith.TCP_RESET)),)
    endpoint.configure((Chain(hook=hook, rules=rules),), (), IFINDEX.__getitem__)
    endpoint.clear_conntrack()
    packet = builders.probe(ip_address(client), ip_address(server), "tcp", src_port=40000, dst_port=22, size=120)
    run = endpoint.run(packets.frame(MACS[:6], MACS[6:], packet), hook)
    assert (run.index, run.action, run.retval) == (0, L.REJECT, TC_ACT_REDIRECT)
    expected = packets.frame(MACS[6:], MACS[:6], packets.tcp_reset(packet, headers(packet, 0)))
    assert run.packet == expected
    assert endpoint.conntrack() == []  # a rejected connection is not tracked


# --- services: DNAT and reverse NAT bytes ---------------------------------------------------


@st.composite
def services(draw):
    family = draw(st.sampled_from([4, 6]))
    base = "10.96.0." if family == 4 else "fd00:96::"
    backend_base = "10.10.0." if family == 4 else "fd00:10::"
    count = draw(st.integers(1, 5))
    backends = tuple(NatTarget(ip_address(f"{backend_base}{10 + i}"), draw(st.sampled_from([None, 8080, 80])))
                     for i in range(count))
    proto = draw(st.sampled_from([Proto.TCP, Proto.UDP]))
    port = draw(st.sampled_from([80, 443, 5432]))
    affinity = draw(st.sampled_from(list(Affinity)))
    vip = ip_address(f"{base}{draw(st.integers(1, 200)):x}" if family == 6 else f"{base}{draw(st.integers(1, 200))}")
    return Rule(match=Match(dst=ip_network(vip), proto=proto, dst_ports=PortRange.single(port)),
                action=Dnat(targets=backends, affinity=affinity), comment="service")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(services(), st.data())
def test_service_nat_bytes_equal_the_simulator(endpoint, service, data):
    endpoint.configure((), (service,), IFINDEX.__getitem__)
    endpoint.clear_conntrack()
    vip, port = service.match.dst.network_address, service.match.dst_ports.first
    proto = service.match.proto.value
    client = ip_address("10.10.0.99" if vip.version == 4 else "fd00:10::99")
    src_port = data.draw(st.integers(1024, 65535))
    request = bytearray(packets.frame(MACS[:6], MACS[6:], builders.probe(client, vip, proto, src_port=src_port, dst_port=port,
                                                                        size=data.draw(st.sampled_from([0, 100])))))
    found = headers(request)
    target = pick_target(service.action, found)
    expected = bytearray(request)
    new_port = target.port if target.port is not None else port
    packets.rewrite(expected, headers(expected), dst=target.address.packed, dst_port=new_port)
    run = endpoint.run(bytes(request), NetfilterHook.OUTPUT)
    assert run.retval == TC_ACT_OK and run.nat
    assert run.packet == bytes(expected)

    # the backend's answer, back at the client: source rewritten to the VIP
    answer = bytearray(packets.frame(MACS[6:], MACS[:6], builders.probe(target.address, client, proto, src_port=new_port,
                                                                       dst_port=src_port)))
    restored = bytearray(answer)
    packets.rewrite(restored, headers(restored), src=vip.packed, src_port=port)
    back = endpoint.run(bytes(answer), NetfilterHook.INPUT)
    assert back.retval == TC_ACT_OK and back.nat and back.ct_state == 2
    assert back.packet == bytes(restored)


def test_affinity_keeps_a_client_on_one_backend(endpoint):
    targets = tuple(NatTarget(ip_address(f"10.10.0.{10 + i}"), 8080) for i in range(4))
    service = Rule(match=Match(dst=ip_network("10.96.0.5/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
                   action=Dnat(targets=targets, affinity=Affinity.CLIENT_IP))
    endpoint.configure((), (service,), IFINDEX.__getitem__)
    endpoint.clear_conntrack()
    chosen = set()
    for src_port in range(40000, 40020):
        frame = packets.frame(MACS[:6], MACS[6:], builders.probe(ip_address("10.10.0.99"), ip_address("10.96.0.5"), "tcp",
                                                                src_port=src_port, dst_port=80))
        chosen.add(headers(endpoint.run(frame, NetfilterHook.OUTPUT).packet).dst)
    assert len(chosen) == 1
    affinity = endpoint.obj.map("nv_lb_affinity", L.LbAffinityKey, L.LbAffinityValue)
    assert len(affinity.keys()) == 1


# --- XDP drop list ------------------------------------------------------------------------------


def test_xdp_drops_listed_sources_and_counts_them():
    with XdpDropProgram.load() as xdp:
        xdp.configure((ip_network("198.51.100.0/24"), ip_network("2001:db8:bad::/48")))
        cases = [("198.51.100.7", "192.0.2.10", XDP_DROP), ("198.51.101.7", "192.0.2.10", XDP_PASS),
                 ("2001:db8:bad::1", "2001:db8::10", XDP_DROP), ("2001:db8:bad:1::1", "2001:db8::10", XDP_DROP),
                 ("2001:db8:bae::1", "2001:db8::10", XDP_PASS)]  # fmt: skip
        for src, dst, verdict in cases:
            frame = packets.frame(MACS[:6], MACS[6:], builders.probe(ip_address(src), ip_address(dst), "udp",
                                                                    src_port=1, dst_port=2))
            assert xdp.run(frame)[0] == verdict, src
        per_entry, passed = xdp.counters(2)
        assert [packets_ for packets_, _ in per_entry] == [1, 2]
        assert passed[0] == 2 and per_entry[0][1] == 42


# --- build and layouts ----------------------------------------------------------------------------


def test_objects_are_cached_by_content_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("NETVIRT_BPF_CACHE", str(tmp_path))
    first = object_file("xdp_drop")
    built = first.stat().st_mtime_ns
    assert object_file("xdp_drop") == first and first.stat().st_mtime_ns == built
    assert first.name == f"xdp_drop-{source_digest()}.o"


def test_python_layouts_match_the_compiled_structs():
    sizes = {}
    for name in ("endpoint", "xdp_drop"):
        dump = subprocess.run(["bpftool", "btf", "dump", "file", str(object_file(name))], capture_output=True, text=True,
                              check=True).stdout
        sizes.update(re.findall(r"STRUCT '(\w+)' size=(\d+)", dump))
    layouts = {"nv_key": L.Key, "nv_tuple": L.Tuple, "nv_rule": L.Rule, "nv_bucket": L.Bucket, "nv_chain": L.Chain,
               "nv_flow": L.Flow, "nv_ct": L.Conntrack, "lb_key": L.LbKey,
               "lb_service": L.LbService, "lb_backend": L.LbBackend, "lb_reverse_nat": L.LbReverseNat,
               "lb_affinity_key": L.LbAffinityKey, "lb_affinity_val": L.LbAffinityValue, "nv_lpm4": L.Lpm4,
               "nv_lpm6": L.Lpm6, "nv_drop_counter": L.DropCounter}  # fmt: skip
    assert {name: int(sizes[name]) for name in layouts} == {name: ctypes.sizeof(kind) for name, kind in layouts.items()}
