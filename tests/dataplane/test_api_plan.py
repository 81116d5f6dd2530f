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
    TUNNEL_KINDS,
    Tunnel,
    diff,
)

# a backend's capabilities() are at most what it declares (DECLARED below)
LINUX_WITHOUT_GENEVE = Capabilities(
    backend="linux",
    device_kinds=frozenset({DeviceKind.NIC, DeviceKind.VETH, DeviceKind.BRIDGE, DeviceKind.VXLAN, DeviceKind.SOCKET}),
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


KERNEL = frozenset({DeviceKind.NIC, DeviceKind.VETH, DeviceKind.BRIDGE})
# what each backend declares (the registry's, plus the two being written): refusals name them
DECLARED = {
    "sim": SIM,
    "linux": dataclasses.replace(SIM, backend="linux", device_kinds=KERNEL | {DeviceKind.VXLAN, DeviceKind.SOCKET},
                                 encapsulations=frozenset({Encapsulation.VXLAN}), hooks=frozenset()),
    "ebpf": dataclasses.replace(SIM, backend="ebpf", device_kinds=KERNEL, encapsulations=frozenset()),
    "userspace": dataclasses.replace(SIM, backend="userspace", device_kinds=frozenset({DeviceKind.NIC} | set(TUNNEL_KINDS)),
                                     hooks=frozenset(), netfilter=False, nat=False),
}


def with_devices(*devices):
    graph = example_host()
    return dataclasses.replace(graph, devices=graph.devices + devices)


def test_a_realisable_graph_plans_clean():
    assert plan(example_host(), LINUX_WITHOUT_GENEVE) == []
    assert plan(example_host(), SIM) == []


def test_missing_kernel_module_names_the_backends_that_can():
    geneve = Device.of(DeviceKind.GENEVE, "gnv100", "host1", config=Tunnel(vni=100, dst_port=6081, remote=ip_address("192.168.1.11")))
    problems = plan(with_devices(geneve), LINUX_WITHOUT_GENEVE, DECLARED)
    assert [str(p) for p in problems] == [
        "host1:host1/gnv100: device 'gnv100' (geneve) cannot be realised by backend 'linux' on this kernel "
        "(no geneve module); backends that can: sim, userspace"
    ]
    assert plan(with_devices(geneve), SIM) == []


def test_encapsulation_is_checked_even_when_the_kind_is_listed():
    caps = dataclasses.replace(LINUX_WITHOUT_GENEVE, device_kinds=frozenset(DeviceKind))
    nvgre = Device.of(DeviceKind.NVGRE, "gre5", "host1", config=Tunnel(vni=5))
    assert [p.message for p in plan(with_devices(nvgre), caps, DECLARED)] == [
        "device 'gre5' (nvgre) cannot be realised by backend 'linux' on this kernel (no gretap module); "
        "backends that can: sim, userspace"
    ]


def test_model_only_devices_and_hooks_are_refused():
    vbox = Device.of(DeviceKind.HYPERVISOR_SWITCH, "vbox0", "host1", config=HypervisorSwitch(Hypervisor.VIRTUALBOX))
    xdp = Device.of(DeviceKind.NIC, "eth1", "host1", hooks=(DeviceHook(kind=HookKind.XDP, program="ddos-guard"),))
    assert [p.message for p in plan(with_devices(vbox, xdp), LINUX_WITHOUT_GENEVE, DECLARED)] == [
        "device 'vbox0' (hypervisor_switch) cannot be realised by backend 'linux' (model-only); backends that can: sim",
        "xdp hook 'ddos-guard' on device 'eth1' (nic) cannot be realised by backend 'linux' on this kernel; "
        "backends that can: ebpf, sim",
    ]
    no_sim = {name: caps for name, caps in DECLARED.items() if name != "sim"}
    assert [p.message for p in plan(with_devices(vbox), LINUX_WITHOUT_GENEVE, no_sim)] == [
        "device 'vbox0' (hypervisor_switch) cannot be realised by backend 'linux'; no backend can realise it"
    ]


def test_refusals_name_the_registered_backends_by_default():
    from netvirt.dataplane import registry

    vbox = Device.of(DeviceKind.HYPERVISOR_SWITCH, "vbox0", "host1", config=HypervisorSwitch(Hypervisor.VIRTUALBOX))
    able = sorted(name for name, caps in registry.declared_all().items() if DeviceKind.HYPERVISOR_SWITCH in caps.device_kinds)
    assert [p.message for p in plan(with_devices(vbox), LINUX_WITHOUT_GENEVE)] == [
        f"device 'vbox0' (hypervisor_switch) cannot be realised by backend 'linux' (model-only); backends that can: {', '.join(able)}"
    ]


def test_rules_need_netfilter_and_nat():
    caps = dataclasses.replace(LINUX_WITHOUT_GENEVE, netfilter=False, nat=False, reasons={"nat": "no nf_nat module"})
    assert [str(p) for p in plan(example_host(), caps, DECLARED)] == [
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
