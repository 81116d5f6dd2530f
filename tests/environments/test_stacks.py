"""Environments: spec stacks -> device graphs whose traces reproduce the notes.

The oracle is the notes themselves (/work/shared/seed, copied in tests/environments/notes.md): the
two walkthrough tables of section 5 row for row, and the four paths of section 4."""

import re
from itertools import product
from pathlib import Path
from typing import get_args

import pytest

from netvirt.dataplane.events import Action, Disposition
from netvirt.environments import StackError, build
from netvirt.environments.stacks.kubernetes import CNIS
from netvirt.graph import DeviceKind, validate
from netvirt.management.spec import KubernetesLayer, load, loads
from netvirt.trace import Flow, Tracer

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
NOTES = Path(__file__).with_name("notes.md").read_text()


def walkthrough(spec, stack=None):
    graph = build(spec, stack or spec.stacks[0])
    flow = Flow(graph.host, graph.client, graph.client_address, graph.target, graph.proto, 40000, graph.port)
    return Tracer(graph.network).trace(flow, skip=frozenset({(graph.host, graph.client)}))


def notes_table(title: str) -> list[tuple[str, str, str, str]]:
    """The rows of the walkthrough table under ``### <title>`` in the notes, markup removed."""
    section = NOTES[NOTES.index(title):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("###"):
            break
        cells = [re.sub(r"\*\*", "", cell).strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0][:1].isdigit():
            rows.append(tuple(cells))
    return rows


def test_the_notes_copy_is_the_shared_one():
    shared = Path("/work/shared/seed/network-virtualization-notes.md")
    if shared.exists():
        assert shared.read_text() == NOTES


@pytest.mark.parametrize(("example", "title"), [
    ("anomaly-1-virtualbox-k8s.yaml", "Anomaly 1: Window -> VirtualBox"),
    ("anomaly-2-wsl2-k8s.yaml", "Anomaly 2: Window -> K8s"),
])
def test_anomaly_walkthroughs_reproduce_the_notes_row_for_row(example, title):
    expected = notes_table(title)
    assert len(expected) in (6, 7)
    trace = walkthrough(load(SEED / example))
    assert trace.disposition is Disposition.DELIVERED
    assert [(f"{row.step}. {row.name}", row.mode, row.level, row.technique) for row in trace.rows] == expected


@pytest.mark.parametrize(("example", "number"), [("path-physical.yaml", 1), ("path-vm.yaml", 2),
                                               ("path-container.yaml", 3)])
def test_paths_reproduce_the_notes_word_for_word(example, number):
    line = next(line for line in NOTES.splitlines() if line.startswith(f"{number}. "))
    notes_path = line.split(":", 1)[1].strip().rstrip(".").replace("**", "")
    trace = walkthrough(load(SEED / example))
    assert trace.disposition is Disposition.DELIVERED
    assert trace.path == notes_path


def test_kubernetes_path_extends_the_container_model_with_cni_encapsulation():
    trace = walkthrough(load(SEED / "path-kubernetes.yaml"))
    assert trace.disposition is Disposition.DELIVERED
    names = [row.name for row in trace.rows]
    assert names[-4:] == ["Virtual Bridge", "Veth Pair", "Pod Namespace", "App"]  # the container model
    overlay = next(row for row in trace.rows if row.name == "CNI Overlay")
    assert "VXLAN" in overlay.technique and overlay.mode == "Kernel"
    encap = next(hop for hop in trace.hops if hop.action is Action.ENCAP)
    decap = next(hop for hop in trace.hops if hop.action is Action.DECAP)
    assert encap.overhead == 50 and decap.overhead == 0


SEED_EXAMPLES = sorted(path.name for path in SEED.glob("*.yaml"))


@pytest.mark.parametrize("example", SEED_EXAMPLES)
def test_every_seed_stack_builds_a_valid_graph_and_delivers(example):
    spec = load(SEED / example)
    for stack in spec.stacks:
        graph = build(spec, stack)
        assert validate(graph.network) == []
        assert walkthrough(spec, stack).disposition is Disposition.DELIVERED
        assert build(spec, stack) == graph  # deterministic


LAYERS = {
    "windows-virtualbox": ["{layer: host, os: windows}", "{layer: hypervisor, type: virtualbox, network: NET}",
                           "{layer: vm, os: linux, vnic: VNIC}"],
    "windows-vmware": ["{layer: host, os: windows}", "{layer: hypervisor, type: vmware, network: NET}",
                       "{layer: vm, os: linux, vnic: VNIC}"],
    "windows-hyperv": ["{layer: host, os: windows}", "{layer: hypervisor, type: hyperv, network: NET}",
                       "{layer: vm, os: linux, vnic: VNIC}"],
    "linux-kvm": ["{layer: host, os: linux}", "{layer: hypervisor, type: kvm, network: NET}",
                  "{layer: vm, os: linux, vnic: VNIC}"],
    "linux-virtualbox": ["{layer: host, os: linux}", "{layer: hypervisor, type: virtualbox, network: NET}",
                         "{layer: vm, os: linux, vnic: VNIC}"],
}


def stack_spec(*layers: str) -> str:
    return "name: s\nstacks:\n  - name: s\n    layers:\n" + "".join(f"      - {layer}\n" for layer in layers)


@pytest.mark.parametrize(("machine", "network", "vnic", "top"), [
    (machine, network, vnic, top)
    for machine, network, vnic, top in product(
        LAYERS, ("bridged", "nat"), ("virtio", "e1000"), ("app", "k8s-pod", "container"))
    if not (machine == "windows-hyperv" and network == "bridged") and not (machine == "linux-kvm" and vnic == "e1000")
])
def test_hypervisor_matrix_delivers(machine, network, vnic, top):
    layers = [layer.replace("NET", network).replace("VNIC", vnic) for layer in LAYERS[machine]]
    layers += {"app": [], "k8s-pod": ["{layer: kubernetes}", "{layer: pod}"], "container": ["{layer: container}"]}[top]
    layers.append("{layer: app, listen: tcp/8080}")
    trace = walkthrough(loads(stack_spec(*layers)))
    assert trace.disposition is Disposition.DELIVERED, trace.reason
    if network == "nat":
        assert any(hop.action is Action.NAT and hop.cause == "dnat" for hop in trace.hops)
        if top != "app":
            assert any(anomaly.kind == "double_nat" for anomaly in trace.anomalies)


@pytest.mark.parametrize("cni", ["flannel-vxlan", "calico-ipip", "calico-vxlan", "cilium-ebpf", "cilium-vxlan",
                                 "cilium-geneve", "antrea-geneve"])
@pytest.mark.parametrize("proxy", ["iptables", "nftables", "ipvs", "ebpf"])
def test_every_cni_and_proxy_delivers_to_the_pod(cni, proxy):
    spec = loads(stack_spec("{layer: host, os: linux}", f"{{layer: kubernetes, cni: {cni}, proxy: {proxy}}}",
                            "{layer: pod}", "{layer: app, listen: udp/53}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED, trace.reason
    node = next(row for row in trace.rows if row.name == "Host Namespace")
    assert proxy.lower()[:4] in node.technique.lower() or (proxy == "iptables" and "IPTables" in node.technique)
    bridged = cni in ("flannel-vxlan", "antrea-geneve")
    assert any(row.name == "Virtual Bridge" for row in trace.rows) == bridged


def test_wsl2_mirrored_shares_the_host_address_and_warns():
    spec = loads(stack_spec("{layer: host, os: windows}", "{layer: hypervisor, type: wsl2, network: mirrored}",
                            "{layer: container, runtime: docker}", "{layer: app, listen: tcp/8080}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED
    assert [row.name for row in trace.rows] == ["Physical Entry", "Host OS (Win)", "WSL2 Boundary", "WSL2 Linux",
                                                "Container Access", "Final Destination"]
    assert not any(hop.action is Action.NAT and hop.namespace.endswith(":windows") for hop in trace.hops)
    assert [a.kind for a in trace.anomalies] == ["wsl2_mirrored"]


def test_sriov_vm_bypasses_the_hypervisor_and_warns_about_migration():
    spec = loads(stack_spec("{layer: host, os: linux, nic: sriov}", "{layer: hypervisor, type: kvm, network: bridged}",
                            "{layer: vm, vnic: sriov-vf}", "{layer: app, listen: tcp/80}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED
    assert [row.name for row in trace.rows] == ["NIC", "NIC eSwitch", "Virtual Function", "VF Driver", "Guest Kernel",
                                                "App"]
    kinds = {a.kind for a in trace.anomalies}
    assert {"kernel_bypass", "sriov_live_migration"} <= kinds


@pytest.mark.parametrize(("io", "rows"), [
    ("dpdk", ["Hardware NIC", "DPDK PMD", "App Socket"]),
    ("af_xdp", ["Hardware NIC", "XDP Redirect", "App Socket"]),
])
def test_kernel_bypass_apps(io, rows):
    spec = loads(stack_spec("{layer: host, os: linux}", f"{{layer: app, io: {io}, listen: udp/9000}}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED
    assert [row.name for row in trace.rows] == rows
    assert trace.rows[-1].mode == "User" and any(a.kind == "kernel_bypass" for a in trace.anomalies)


def test_internal_network_is_unreachable_from_outside():
    spec = loads(stack_spec("{layer: host, os: linux}", "{layer: hypervisor, type: virtualbox, network: internal}",
                            "{layer: vm}", "{layer: app, listen: tcp/80}"))
    trace = walkthrough(spec)
    assert trace.disposition is not Disposition.DELIVERED


def test_macvlan_container_sits_on_the_lan():
    spec = loads(stack_spec("{layer: host, os: linux}", "{layer: container, network: macvlan}",
                            "{layer: app, listen: tcp/80}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED
    assert any(row.name == "Macvlan" for row in trace.rows)
    assert any(hop.action is Action.RECEIVE and hop.namespace.endswith(":host") for hop in trace.hops)


def test_xdp_on_the_node_shows_up_in_the_walk():
    spec = loads(stack_spec("{layer: host, os: linux}", "{layer: kubernetes, xdp: true}", "{layer: pod}",
                            "{layer: app, listen: tcp/80}"))
    trace = walkthrough(spec)
    assert any("XDP eBPF program xdp-nodeport" in hop.technique for hop in trace.hops)


def test_impossible_stacks_say_why():
    dpdk_in_pod = loads(stack_spec("{layer: host, os: linux}", "{layer: kubernetes}", "{layer: pod}",
                                   "{layer: app, io: dpdk}"))
    with pytest.raises(StackError, match="app io dpdk needs a NIC it can bind.*Use io: af_xdp"):
        build(dpdk_in_pod, dpdk_in_pod.stacks[0])
    macvlan_in_vm_nat = loads(stack_spec("{layer: host, os: linux}", "{layer: kubernetes}",
                                         "{layer: container, network: macvlan}", "{layer: app}"))
    graph = build(macvlan_in_vm_nat, macvlan_in_vm_nat.stacks[0])  # a node on the LAN: fine
    assert any(d.kind is DeviceKind.MACVLAN for h in graph.network.hosts for d in h.devices)


def test_every_spec_cni_is_one_row_of_the_cni_table():
    assert set(get_args(KubernetesLayer.model_fields["cni"].annotation)) == set(CNIS)


def test_an_ebpf_kube_proxy_replacement_does_service_nat_in_ebpf():
    """Cilium's kube-proxy replacement: the NodePort DNAT is done by its tc program on the node's NIC
    (in the walkthrough's eBPF row), no netfilter NAT; the answer's reverse NAT by cil_to_netdev."""
    spec = loads(stack_spec("{layer: host, os: linux}", "{layer: kubernetes, cni: cilium-vxlan, xdp: true}",
                            "{layer: pod}", "{layer: app, listen: tcp/80}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED, trace.reason
    assert not any(hop.technique == "Netfilter NAT (conntrack)" for hop in trace.hops + trace.answer.hops)
    nat = next(hop for hop in trace.hops if hop.action is Action.NAT)
    node = next(row for row in trace.rows if row.name == "Host Namespace")
    assert nat.technique == "tc eBPF program cil_from_netdev" and nat in node.hops and "eBPF" in node.technique
    back = next(hop for hop in trace.answer.hops if hop.action is Action.NAT)
    assert back.technique == "tc eBPF program cil_to_netdev"
    assert not any(chain.rules for h in build(spec, spec.stacks[0]).network.hosts for ns in h.namespaces
                   for chain in ns.nat)  # no kube-proxy rules at all
    nic = [hop for hop in trace.hops if hop.device == "eth0" and hop.namespace.endswith(":host")]
    assert [hop.action for hop in nic][:3] == [Action.RECEIVE, Action.FILTER_ALLOW, Action.DRIVER]  # XDP, then sk_buff
    assert "XDP" in nic[1].technique


@pytest.mark.parametrize("machine", ["linux-kvm", "linux-virtualbox", "windows-virtualbox", "windows-vmware",
                                     "windows-hyperv"])
def test_a_macvlan_container_inside_a_guest(machine):
    """docker's macvlan network inside a VM: the child sits on the guest's vNIC with its own MAC;
    Hyper-V and VMware pass that MAC only when told to (MAC spoofing / promiscuous): an anomaly."""
    network = "external" if machine == "windows-hyperv" else "bridged"
    layers = [layer.replace("NET", network).replace("VNIC", "virtio") for layer in LAYERS[machine]]
    spec = loads(stack_spec(*layers, "{layer: container, network: macvlan}", "{layer: app, listen: tcp/80}"))
    trace = walkthrough(spec)
    assert trace.disposition is Disposition.DELIVERED, trace.reason
    assert any(row.name == "Macvlan" for row in trace.rows)
    assert trace.answer.disposition is Disposition.DELIVERED
    flagged = [a for a in trace.anomalies if a.kind == "macvlan_in_guest"]
    assert bool(flagged) == (machine in ("windows-vmware", "windows-hyperv"))
    if machine == "windows-hyperv":
        assert "MacAddressSpoofing On" in flagged[0].fix
