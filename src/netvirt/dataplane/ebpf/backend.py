"""The ``ebpf`` backend: the Linux backend's namespaces, veths, bridges and VXLAN, with eBPF
programs instead of netfilter where eBPF can do the job.

Contract: ``EbpfBackend(host, ...)`` is a ``LinuxBackend`` (same options, names, ownership,
read-back and teardown) that differs in two places:

- rules: a namespace whose ruleset ``target.expressible`` accepts (an endpoint namespace: input
  and output filter chains, service DNAT at output) gets the ``ebpf`` rule target: tc programs
  with the rules in maps, and no nftables or iptables rules at all. Other namespaces (a router's
  or a host's SNAT/masquerade) keep the ``filter`` target (nftables by default);
- device hooks: a NIC's ``drop_from`` list (the XDP hook ``DROP_LIST_PROGRAM``) is
  ``bpf/xdp_drop.c`` attached in native XDP mode to the NIC, its maps pinned with the host
  namespace's (``Names.bpf_pins``), recorded first like every kernel object.

``xdp_counters()`` reads the drop counters of this host's NIC programs; ``program_counters()``
the endpoint programs' counters per namespace (``netvirt status`` shows both).
"""

from pathlib import Path
from typing import ClassVar

from netvirt.dataplane.api import Capabilities
from netvirt.dataplane.ebpf import libbpf
from netvirt.dataplane.ebpf.programs import XdpDropProgram
from netvirt.dataplane.ebpf.target import EbpfTarget, counters, expressible, links_of
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.build import Builder
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.dataplane.kernel.targets import TARGETS, RuleTarget
from netvirt.dataplane.linux.backend import LinuxBackend
from netvirt.graph import DROP_LIST_PROGRAM, Device, HookKind, HostGraph, drop_list


class EbpfBackend(LinuxBackend):
    """See the module docstring."""

    name: ClassVar[str] = "ebpf"

    @classmethod
    def declared(cls) -> Capabilities:
        """The Linux backend's, plus the XDP hook (drop lists) and eBPF filtering and NAT."""
        linux = super().declared()
        return Capabilities(backend=cls.name, device_kinds=linux.device_kinds, encapsulations=linux.encapsulations,
                            hooks=frozenset({HookKind.XDP}), netfilter=True, nat=True)

    def capabilities(self) -> Capabilities:
        found = super().capabilities()
        problem = TARGETS[EbpfTarget.name].problem()
        reasons = dict(found.reasons)
        if problem is not None:
            reasons[HookKind.XDP.value] = problem
        return Capabilities(backend=self.name, device_kinds=found.device_kinds, encapsulations=found.encapsulations,
                            hooks=frozenset() if problem else frozenset({HookKind.XDP}), netfilter=found.netfilter,
                            nat=found.nat, where=found.where, reasons=reasons)

    def rule_target(self, ruleset: Ruleset) -> RuleTarget:
        """eBPF where the programs can realise the ruleset, else the filter target."""
        return TARGETS[EbpfTarget.name] if expressible(ruleset) is None else self.target

    def device_hooks(self, build: Builder, namespace: str, dev: Device) -> None:
        """Attach the NIC's drop list as native XDP (detach it when the graph has none)."""
        build.drop_list(namespace, dev.name, ())  # what the linux backend may have left
        prefixes = drop_list(dev)
        index = links_of(namespace)[dev.name]
        if not prefixes:
            if netns.call_in(namespace, libbpf.xdp_attached, index) is not None:
                netns.call_in(namespace, libbpf.xdp_detach, index)
            return
        build.bpf_pins(namespace)  # recorded first
        pins = self.names.xdp_pins(namespace, dev.name)
        pins.mkdir(parents=True, exist_ok=True)
        program = XdpDropProgram.open(pins) if (pins / "nv_xdp_drop").exists() else XdpDropProgram.load(pins)
        try:
            program.configure(prefixes)
            wanted = libbpf.program_id(program.programs["nv_xdp_drop"])
            if netns.call_in(namespace, libbpf.xdp_attached, index) != wanted:
                netns.call_in(namespace, libbpf.xdp_attach, index, program.programs["nv_xdp_drop"])
        finally:
            program.close()

    def hooks_in_place(self, namespace: str, dev: Device) -> bool:
        pins = self.names.xdp_pins(namespace, dev.name)
        if not (pins / "nv_xdp_drop").exists() or not netns.exists(namespace):
            return False
        program = XdpDropProgram.open(pins)
        try:
            wanted = libbpf.program_id(program.programs["nv_xdp_drop"])
        finally:
            program.close()
        return netns.call_in(namespace, libbpf.xdp_attached, links_of(namespace)[dev.name]) == wanted

    def xdp_counters(self, graph: HostGraph) -> dict[str, list[tuple[str, int, int]]]:
        """Per NIC with a drop list: (prefix, packets, bytes) dropped per entry, and "passed"."""
        found: dict[str, list[tuple[str, int, int]]] = {}
        for dev in graph.devices:
            hooks = [hook for hook in dev.hooks if hook.kind is HookKind.XDP and hook.program == DROP_LIST_PROGRAM]
            pins = self.names.xdp_pins(self.names.graph_namespace(self.host, dev.namespace), dev.name)
            if not hooks or not (pins / "nv_drop_counters").exists():
                continue
            program = XdpDropProgram.open(pins)
            try:
                per_entry, passed = program.counters(len(hooks[0].rules))
            finally:
                program.close()
            rows = [(str(rule.match.src), *counts) for rule, counts in zip(hooks[0].rules, per_entry, strict=True)]
            found[f"{dev.namespace}/{dev.name}"] = rows + [("passed", *passed)]
        return found

    def program_counters(self, graph: HostGraph) -> dict[str, dict[str, int]]:
        """The endpoint programs' counters, per graph namespace that has them."""
        found = {}
        for ns in graph.namespaces:
            values = counters(self.names, self.names.graph_namespace(self.host, ns.name))
            if values is not None:
                found[ns.name] = values
        return found


def deployed_with_ebpf(names, hosts) -> set[str]:
    """The ``hosts`` of a deployment whose namespaces have eBPF programs pinned (built by ``ebpf``)."""
    root = names.bpf_root
    pinned = [path.name for path in root.iterdir()] if root.is_dir() else []
    return {host for host in hosts
            if any(name == names.bpf_pins(names.namespace(host)).name
                   or name.startswith(names.bpf_pins(names.namespace(host)).name + "@") for name in pinned)}
