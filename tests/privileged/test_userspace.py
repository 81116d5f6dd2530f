"""The userspace backend in real namespaces: examples/encapsulations.yaml with VXLAN, Geneve (with
options) and NVGRE done by the poll-mode switch (the kernel here has no geneve or gre devices),
checked on the wire by tshark; the switch process restarted after kill -9; nothing left after
teardown."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_tool
from linux_network import Servers, probe
from userspace_network import Mixed

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux import readback
from netvirt.dataplane.kernel.capture import Capture
from netvirt.dataplane.userspace import process
from netvirt.management.spec import load
from netvirt.wire import pcap

SPEC = Path(__file__).parents[2] / "examples" / "encapsulations.yaml"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    network = Mixed(load(SPEC), tmp_path_factory.mktemp("state"))
    network.up()
    try:
        with Servers(network):
            yield network
    finally:
        network.down()


FLOWS = [("vx-a", "vx-b", "tcp", 80), ("gen-a", "gen-b", "udp", 53), ("nv-a", "nv-b", "tcp", 22),
         ("vx-a", "gen-b", "udp", 53), ("nv-b", "vx-a", "tcp", 80)]  # the last two through the router


@pytest.mark.parametrize("source,target,proto,port", FLOWS)
def test_endpoints_reach_each_other_through_the_userspace_switch(deployed, source, target, proto, port):
    assert probe(deployed.namespace(source), deployed.address(target), proto, port) == f"ok:{target}"
    assert probe(deployed.namespace(source), deployed.address(target), "icmp") == "ok"


def test_underlay_carries_each_encapsulation_as_the_spec_says(deployed, tmp_path):
    tshark = require_tool("tshark")
    names = deployed.names
    segment = names.segment_namespace("underlay")
    port = readback.segment_port(names, "host-a", "host-a", "eth0")
    with Capture([(segment, port)]) as capture:
        for source, target, proto, number in FLOWS[:3]:
            assert probe(deployed.namespace(source), deployed.address(target), proto, number) == f"ok:{target}"
        frames = [f.data for f in capture.frames() if not f.outgoing]
    path = tmp_path / "underlay.pcap"
    pcap.write(path, frames)
    fields = ["vxlan.vni", "geneve.vni", "geneve.option.class", "geneve.option.type", "geneve.option.length",
              "geneve.option.unknown.data", "gre.key", "ip.checksum.status", "udp.checksum.status", "tcp.checksum.status"]
    command = [tshark, "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
               "-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [dict(zip(fields, (v.split("|") if v else [] for v in line.split("\t")))) for line in out.splitlines()]
    networks = {n.name: n for n in deployed.spec.networks}
    vxlan = [r for r in rows if r["vxlan.vni"]]
    geneve = [r for r in rows if r["geneve.vni"]]
    nvgre = [r for r in rows if r["gre.key"]]
    assert vxlan and geneve and nvgre
    assert {r["vxlan.vni"][0] for r in vxlan} == {str(networks["vx"].vni)}
    options = networks["gen"].geneve_options
    for row in geneve:
        assert int(row["geneve.vni"][0], 16) == networks["gen"].vni
        assert row["geneve.option.class"] == [f"0x{o.option_class:04x}" for o in options]
        assert row["geneve.option.type"] == [f"0x{o.type:02x}" for o in options]
        assert row["geneve.option.unknown.data"] == [o.data.lower() or "<MISSING>" for o in options]
    assert {int(r["gre.key"][0], 16) >> 8 for r in nvgre} == {networks["nv"].vni}  # VSID; the low byte: FlowID
    for row in vxlan + geneve + nvgre:
        assert set(row["ip.checksum.status"]) == {"1"}  # outer and inner IPv4 checksums good
        assert "2" not in row["udp.checksum.status"] + row["tcp.checksum.status"]  # none bad


def test_kill_9_the_switch_it_is_restarted_and_traffic_resumes(deployed):
    backend = deployed.backends["host-a"]
    before = backend.counters()
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    after = None
    while time.monotonic() < deadline:
        after = backend.counters()
        if after is not None and after["pid"] != before["pid"]:
            break
        time.sleep(0.1)
    assert after is not None and after["pid"] != before["pid"] and after["restarts"] == before["restarts"] + 1
    assert probe(deployed.namespace("vx-a"), deployed.address("vx-b"), "tcp", 80) == "ok:vx-b"


def test_counters_show_mode_ports_and_the_flow_cache(deployed):
    probe(deployed.namespace("gen-a"), deployed.address("gen-b"), "udp", 53)
    deadline = time.monotonic() + 5
    while True:  # the switch rewrites its counters every second
        counters = deployed.backends["host-a"].counters()
        if sum(p["tx"] for p in counters["ports"]) > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counters["mode"] == "adaptive"
    assert {p["port"] for p in counters["ports"]} == {"eth0", "ve-vx-a-0", "ve-gen-a-0", "ve-nv-a-0"}
    assert sum(p["rx"] for p in counters["ports"]) > 0 and sum(p["tx"] for p in counters["ports"]) > 0
    assert counters["flow_cache"]["misses"] > 0 and counters["flow_cache"]["entries"] > 0


def test_teardown_leaves_no_process_namespace_or_link(tmp_path):
    network = Mixed(load(SPEC), tmp_path)
    network.up()
    try:
        pids = [process.read_pids(b.run_dir, host) for host, b in network.backends.items()]
        assert all(p.get("switch") and p.get("supervisor") for p in pids)
    finally:
        network.down()
    assert [n for n in netns.names() if network.names.owns_namespace(n)] == []
    for found in pids:
        for role in ("supervisor", "switch"):
            cmdline = Path(f"/proc/{found[role]}/cmdline")
            assert not cmdline.exists() or b"netvirt.dataplane.userspace" not in cmdline.read_bytes()
