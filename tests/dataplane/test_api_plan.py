"""plan(): refuses at plan time what a backend cannot realise, naming a backend that can."""

import dataclasses
import sys
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "graph"))
from graph_strategies import example_host  # noqa: E402

from netvirt.dataplane.api import ApplyReport, Capabilities, Encapsulation, plan  # noqa: E402
from netvirt.graph import (  # noqa: E402
    Device,
    DeviceHook,
    DeviceKind,
    HookKind,
    Hypervisor,
    HypervisorSwitch,
    Op,
    Tunnel,
    diff,
)

LINUX_WITHOUT_GENEVE = Capabilities(
    backend="linux",
    device_kinds=frozenset(DeviceKind) - {DeviceKind.GENEVE, DeviceKind.NVGRE},
    encapsulations=frozenset({Encapsulation.VXLAN}),
    hooks=frozenset(),
    netfilter=True,
    nat=True,
    where="on this kernel",
    reasons={"geneve": "no geneve module", "nvgre": "no gretap module"},
)
SIM = Capabilities(
    backend="sim",
    device_kinds=frozenset(DeviceKind),
    encapsulations=frozenset(Encapsulation),
    hooks=frozenset(HookKind),
    netfilter=True,
    nat=True,
)


def with_devices(*devices):
    graph = example_host()
    return dataclasses.replace(graph, devices=graph.devices + devices)


def test_a_realisable_graph_plans_clean():
    assert plan(example_host(), LINUX_WITHOUT_GENEVE) == []
    assert plan(example_host(), SIM) == []


def test_missing_kernel_module_names_the_backends_that_can():
    geneve = Device.of(DeviceKind.GENEVE, "gnv100", "host1", config=Tunnel(vni=100, dst_port=6081, remote=ip_address("192.168.1.11")))
    problems = plan(with_devices(geneve), LINUX_WITHOUT_GENEVE)
    assert [str(p) for p in problems] == [
        "host1:host1/gnv100: device 'gnv100' (geneve) cannot be realised by backend 'linux' on this kernel "
        "(no geneve module); backends that can: sim, userspace"
    ]
    assert plan(with_devices(geneve), SIM) == []


def test_encapsulation_is_checked_even_when_the_kind_is_listed():
    caps = dataclasses.replace(LINUX_WITHOUT_GENEVE, device_kinds=frozenset(DeviceKind))
    nvgre = Device.of(DeviceKind.NVGRE, "gre5", "host1", config=Tunnel(vni=5))
    assert [p.message for p in plan(with_devices(nvgre), caps)] == [
        "device 'gre5' (nvgre) cannot be realised by backend 'linux' on this kernel (no gretap module); "
        "backends that can: sim, userspace"
    ]


def test_model_only_devices_and_hooks_are_refused():
    vbox = Device.of(DeviceKind.HYPERVISOR_SWITCH, "vbox0", "host1", config=HypervisorSwitch(Hypervisor.VIRTUALBOX))
    xdp = Device.of(DeviceKind.NIC, "eth1", "host1", hooks=(DeviceHook(kind=HookKind.XDP, program="ddos-guard"),))
    nowhere = Device.of(DeviceKind.NIC, "eth2", "host1", backends=frozenset({"linux"}))
    assert [p.message for p in plan(with_devices(vbox, xdp, nowhere), LINUX_WITHOUT_GENEVE)] == [
        "device 'vbox0' (hypervisor_switch) cannot be realised by backend 'linux' (model-only); backends that can: sim",
        "xdp hook 'ddos-guard' on device 'eth1' (nic) cannot be realised by backend 'linux' on this kernel; "
        "backends that can: ebpf, sim",
    ]
    assert [p.message for p in plan(with_devices(nowhere), SIM)] == [
        "device 'eth2' (nic) cannot be realised by backend 'sim'; backends that can: linux"
    ]
    unrealisable = Device.of(DeviceKind.NIC, "eth3", "host1", backends=frozenset())
    assert [p.message for p in plan(with_devices(unrealisable), SIM)] == [
        "device 'eth3' (nic) cannot be realised by backend 'sim'; no backend can realise it"
    ]


def test_rules_need_netfilter_and_nat():
    caps = dataclasses.replace(LINUX_WITHOUT_GENEVE, netfilter=False, nat=False, reasons={"nat": "no nf_nat module"})
    assert [str(p) for p in plan(example_host(), caps)] == [
        "host1:host1: filter rules cannot be realised by backend 'linux' on this kernel; backends that can: ebpf, sim",
        "host1:host1: nat rules cannot be realised by backend 'linux' on this kernel (no nf_nat module); "
        "backends that can: ebpf, sim",
    ]


def test_invalid_graphs_are_refused_too():
    broken = with_devices(Device.of(DeviceKind.NIC, "eth9", "ghost"))
    assert [p.message for p in plan(broken, SIM)] == ["namespace 'ghost' does not exist; add it or fix the name"]


def test_apply_report_counts_a_diff():
    old = example_host()
    new = dataclasses.replace(old, devices=old.devices[1:] + (Device.of(DeviceKind.TAP, "tap0", "host1"),))
    changes = diff(old, new)
    report = ApplyReport.from_diff(changes)
    assert (report.created, report.changed, report.deleted, report.unchanged) == (1, 0, 1, len(old.devices) - 1 + 2)
    assert report.ok and len(changes.of(Op.ADD)) == 1
