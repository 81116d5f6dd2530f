"""netvirt import containerlab: a lab becomes a spec that validates and traces; what cannot be
mapped is located in the topology file, and nothing is written."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from netvirt.control.compile import compile_network
from netvirt.management.cli import _register, app
from netvirt.management.spec import SpecError, loads
from netvirt.management.spec.containerlab import from_containerlab
from netvirt.management.spec.dump import dump_data
from netvirt.trace import Tracer
from netvirt.trace.plan import plan_trace

LAB = Path(__file__).parents[2] / "examples" / "containerlab" / "srl-clients.clab.yml"


def test_the_example_lab_maps_nodes_links_and_kinds():
    data, notes = from_containerlab(LAB.read_text(), str(LAB))
    spec = loads(dump_data(data), "lab.yaml")
    assert [(e.name, e.kind, [a.network for a in e.attachments]) for e in spec.endpoints] == [
        ("srl1", "container", ["mgmt", "srl1-e1-1-srl2-e1-1", "srl1-e1-2-client1-eth1"]),
        ("srl2", "container", ["mgmt", "srl1-e1-1-srl2-e1-1", "br-lan"]),
        ("client1", "container", ["mgmt", "srl1-e1-2-client1-eth1"]),
        ("client2", "container", ["mgmt", "br-lan"]),
    ]
    assert str(spec.endpoint("srl1").attachments[0].ip) == "172.20.20.11"  # mgmt-ipv4 kept
    assert {n.name: (str(n.subnet), n.encap, n.mtu) for n in spec.networks} == {
        "mgmt": ("172.20.20.0/24", "none", 9000), "br-lan": ("10.254.0.0/24", "none", 9000),
        "srl1-e1-1-srl2-e1-1": ("10.255.0.0/29", "none", 9000), "srl1-e1-2-client1-eth1": ("10.255.0.8/29", "none", 9000),
    }
    assert spec.hosts[0].name == "srl-clients" and spec.hosts[0].mtu == 9000
    assert "client2:eth1 -> endpoint client2 eth1 on network br-lan" in notes
    tracer, flow, skip = plan_trace(spec, "client2", "srl2", "icmp", None, 40000, None, compile=compile_network)
    assert isinstance(tracer, Tracer) and tracer.trace(flow, skip=skip).disposition.value == "delivered"


BAD = """\
name: bad
topology:
  nodes:
    r1: {kind: vr-sros}
    r2: {kind: juniper_crpd, network-mode: host}
    x1: {kind: ext-container}
    k1: {kind: k8s-kind}
    z1: {kind: quantum_router}
  links:
    - endpoints: ["r1:eth1", "host:veth9"]
    - endpoints: ["r1:eth2", "nowhere:eth1"]
    - type: macvlan
      endpoint: {node: r1, interface: eth3}
    - endpoints: ["r1:eth4", "r2:eth1"]
    - endpoints: ["r1:eth4", "r2:eth2"]
"""


def test_what_cannot_be_mapped_is_located_in_the_topology():
    with pytest.raises(SpecError) as raised:
        from_containerlab(BAD, "bad.clab.yml")
    assert [str(p) for p in raised.value.problems] == [
        "bad.clab.yml:5:44: error: topology.nodes.r2.network-mode: network-mode 'host' shares another stack; "
        "netvirt gives every endpoint its own namespace",
        "bad.clab.yml:6:16: error: topology.nodes.x1.kind: kind ext-container (an external container netvirt does "
        "not start) cannot be modelled",
        "bad.clab.yml:7:16: error: topology.nodes.k1.kind: kind k8s-kind (a kind cluster) cannot be modelled",
        "bad.clab.yml:8:16: error: topology.nodes.z1.kind: kind 'quantum_router' is not known to netvirt "
        "(containers: linux, nokia_srlinux, arista_ceos, ...; VMs: vr-*, cisco_xrv9k, ...; bridge, ovs-bridge; host)",
        "bad.clab.yml:10:30: error: topology.links[0].endpoints[1]: host:veth9 is the machine's own namespace; "
        "netvirt links only nodes of the lab",
        "bad.clab.yml:11:30: error: topology.links[1].endpoints[1]: unknown node 'nowhere' (nodes: r1, r2, x1, k1, z1)",
        "bad.clab.yml:12:13: error: topology.links[2].type: link type macvlan cannot be modelled; netvirt models "
        "veth links between nodes",
        "bad.clab.yml:15:19: error: topology.links[4].endpoints[0]: interface r1:eth4 is already linked (line 14)",
    ]
    with pytest.raises(SpecError, match="bad.clab.yml:1:1: error: a containerlab topology needs topology.nodes"):
        from_containerlab("name: x\n", "bad.clab.yml")


def test_cli_writes_the_spec_or_nothing(tmp_path: Path):
    _register()
    runner = CliRunner()
    out = tmp_path / "lab.yaml"
    done = runner.invoke(app, ["import", "containerlab", str(LAB), "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert loads(out.read_text(), "lab.yaml").name == "srl-clients" and "wrote" in done.stderr
    bad = tmp_path / "bad.clab.yml"
    bad.write_text(BAD)
    refused = runner.invoke(app, ["import", "containerlab", str(bad), "-o", str(tmp_path / "no.yaml")])
    assert refused.exit_code == 2 and not (tmp_path / "no.yaml").exists()
    assert refused.stderr.splitlines()[-1] == "netvirt import containerlab: invalid topology, 8 problems"


def test_a_file_that_is_no_topology_is_refused_as_a_topology_not_a_spec(tmp_path: Path):
    _register()
    listed = tmp_path / "list.clab.yml"
    listed.write_text("- a\n")
    refused = CliRunner().invoke(app, ["import", "containerlab", str(listed)])
    assert refused.exit_code == 2
    assert refused.stderr.splitlines() == [
        f"{listed}:1:1: error: a containerlab topology must be a mapping of keys (name, topology, mgmt), found a list",
        "netvirt import containerlab: invalid topology, 1 problem"]
