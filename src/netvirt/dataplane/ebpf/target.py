"""The ``ebpf`` rule target: a namespace's filter and service NAT chains as tc programs and maps.

Contract: ``EbpfTarget`` implements ``kernel.targets.RuleTarget`` for rulesets that
``expressible`` accepts (filter chains at input/output; output NAT chains of service DNAT
rules: an endpoint namespace's). ``apply`` records the namespace's bpffs directory
(``Names.bpf_pins``) in the ownership journal, loads ``bpf/endpoint.c`` once and pins its
programs and maps in its ``tc`` subdirectory (later applies reuse the pins, so connection tracking and counters
survive), writes the maps to exactly the compiled ruleset and attaches ``nv_ingress`` /
``nv_egress`` at clsact ingress/egress of every link of the namespace, and ``nv_egress`` at lo's egress. ``read``
returns the ruleset when the maps hold exactly its compiled entries and every link carries the
programs, else None; ``drift`` says what differs; ``delete`` detaches and unpins. ``render``
is a summary of the entries (tuples, buckets, services per chain).
"""

import json
import socket
from pathlib import Path
from typing import ClassVar

from netvirt.dataplane.ebpf import libbpf, maps
from netvirt.dataplane.ebpf.build import BuildError, object_file
from netvirt.dataplane.ebpf.programs import EndpointProgram
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.build import Builder
from netvirt.dataplane.kernel.cleanup import remove_pins
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.graph import Dnat, NetfilterHook

HOOKS = ((libbpf.TC_INGRESS, "nv_ingress"), (libbpf.TC_EGRESS, "nv_egress"))
TC_DIR = "tc"  # under the namespace's pins (Names.bpf_pins): the endpoint programs and maps


def tc_pins(names: Names, namespace: str) -> Path:
    return names.bpf_pins(namespace) / TC_DIR


def expressible(ruleset: Ruleset) -> str | None:
    """Why the eBPF programs cannot realise ``ruleset`` (None: they can)."""
    for chain in ruleset.filter:
        if chain.hook not in (NetfilterHook.INPUT, NetfilterHook.OUTPUT):
            return f"a filter {chain.hook} chain (the programs filter at input and output)"
    for chain in ruleset.nat:
        if chain.hook is not NetfilterHook.OUTPUT or not all(isinstance(rule.action, Dnat) for rule in chain.rules):
            return f"a NAT {chain.hook} chain other than service DNAT at output"
    try:
        EndpointProgram.entries(ruleset.filter, _services(ruleset), lambda name: 1)
    except maps.MapError as error:
        return str(error)
    return None


def _services(ruleset: Ruleset) -> tuple:
    return tuple(rule for chain in ruleset.nat for rule in chain.rules)


def links_of(namespace: str) -> dict[str, int]:
    """Every link of ``namespace`` but ``lo``: name -> ifindex."""
    def listing() -> dict[str, int]:
        return {name: socket.if_nametoindex(name) for _, name in socket.if_nameindex() if name != "lo"}

    return netns.call_in(namespace, listing)


LOOPBACK = 1  # lo's ifindex in every namespace


def attachments(ifindex: dict[str, int]) -> list[tuple[int, int, str]]:
    """(ifindex, hook, program) for a namespace's links: both programs on every link, and
    ``nv_egress`` on lo (locally delivered packets, e.g. a client load-balanced to itself, leave
    by lo: their answers are translated back there, as netfilter's output hook sees lo too)."""
    return [(index, point, name) for index in ifindex.values() for point, name in HOOKS] + [
        (LOOPBACK, libbpf.TC_EGRESS, "nv_egress")]


class EbpfTarget:
    """See the module docstring."""

    name: ClassVar[str] = "ebpf"

    def problem(self) -> str | None:
        try:
            libbpf.lib()
            object_file("endpoint")
        except (BuildError, OSError) as error:
            return str(error).splitlines()[0]
        if not libbpf.BPFFS.is_dir():
            return f"no bpffs at {libbpf.BPFFS}"
        return None

    def _entries(self, namespace: str, ruleset: Ruleset):
        ifindex = links_of(namespace)

        def index_of(name: str) -> int:
            if name not in ifindex:
                raise maps.MapError(f"a rule names interface {name!r}, which {namespace} does not have")
            return ifindex[name]

        entries, logs = EndpointProgram.entries(ruleset.filter, _services(ruleset), index_of, reroute=True)
        return entries, logs, ifindex

    def render(self, names: Names, namespace: str, ruleset: Ruleset) -> str:
        entries, logs, _ = self._entries(namespace, ruleset)
        summary = {name: len(found) for name, found in entries.items()}
        return json.dumps({"pins": str(names.bpf_pins(namespace)), "entries": summary,
                           "logged_rules": {str(k): v for k, v in logs.items()}}, indent=1)

    def apply(self, build: Builder, namespace: str, ruleset: Ruleset) -> bool:
        entries, _, ifindex = self._entries(namespace, ruleset)  # MapError before anything changes
        if ruleset.nat:  # a client load-balanced to itself arrives on lo from its own address
            build.sysctls(namespace, {"net.ipv4.conf.lo.accept_local": 1})
        pins = build.bpf_pins(namespace) / TC_DIR
        if (pins / "nv_ingress").exists():
            program = EndpointProgram.open(pins)
        else:
            program = EndpointProgram.load(pins)
        try:
            changed = bool(maps.read_endpoint(program.obj, entries))
            maps.write_endpoint(program.obj, entries)
            for index, point, name in attachments(ifindex):
                wanted = program.programs[name]
                if netns.call_in(namespace, libbpf.tc_attached, index, point) != libbpf.program_id(wanted):
                    netns.call_in(namespace, libbpf.tc_attach, index, point, wanted)
                    changed = True
        finally:
            program.close()
        return changed

    def read(self, names: Names, namespace: str, ruleset: Ruleset) -> Ruleset | None:
        if not (tc_pins(names, namespace) / "nv_ingress").exists():
            return None
        return ruleset if not self.drift(names, namespace, ruleset) else Ruleset()

    def drift(self, names: Names, namespace: str, ruleset: Ruleset) -> list[str]:
        pins = tc_pins(names, namespace)
        if not (pins / "nv_ingress").exists():
            return [f"{namespace}: no eBPF programs pinned at {pins}"]
        entries, _, ifindex = self._entries(namespace, ruleset)
        program = EndpointProgram.open(pins)
        try:
            found = [f"{namespace}: {line}" for line in maps.read_endpoint(program.obj, entries)]
            for index, point, name in attachments(ifindex):
                if netns.call_in(namespace, libbpf.tc_attached, index, point) != libbpf.program_id(program.programs[name]):
                    found.append(f"{namespace}: {name} is not attached to ifindex {index}")
        finally:
            program.close()
        return found

    def delete(self, build: Builder, namespace: str) -> None:
        pins = tc_pins(build.names, namespace)
        if not pins.exists():
            return
        if netns.exists(namespace):
            for index, point, _ in attachments(links_of(namespace)):
                netns.call_in(namespace, libbpf.tc_detach, index, point)
        remove_pins(pins)


def counters(names: Names, namespace: str) -> dict[str, int] | None:
    """The endpoint programs' counters in ``namespace`` (None: no programs pinned there)."""
    pins = tc_pins(names, namespace)
    if not (pins / "nv_counters").exists():
        return None
    program = EndpointProgram.open(pins)
    try:
        return program.counters()
    finally:
        program.close()


def pinned_under(names: Names) -> list[Path]:
    """Every pin of this deployment (what ``down`` must leave none of)."""
    root = names.bpf_root
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.is_dir() else []


ACTIONS = {1: "accept", 2: "drop", 3: "reject"}


def log_lines(names: Names, network, timeout: float = 0.0) -> list[dict]:
    """Every record ``log`` rules wrote in ``network``'s namespaces (reading consumes them), with
    the rule's log prefix from the graph; ``timeout``: also wait that long for more."""
    found = []
    for graph in network.hosts:
        for ns in graph.namespaces:
            pins = tc_pins(names, names.graph_namespace(graph.host, ns.name))
            if not (pins / "nv_log").exists():
                continue
            chains = {chain.hook: chain for chain in ns.filter}
            program = EndpointProgram.open(pins)
            try:
                records = program.log_records(timeout)
            finally:
                program.close()
            for record in records:
                hook = NetfilterHook.INPUT if record.chain == 0 else NetfilterHook.OUTPUT
                rules = chains[hook].rules if hook in chains else ()
                prefix = rules[record.index].log if record.index < len(rules) else ""
                found.append({"host": graph.host, "namespace": ns.name, "chain": hook.value, "rule": record.index,
                              "prefix": prefix or "", "action": ACTIONS.get(record.action, str(record.action)),
                              "flow": _flow_text(record.flow)})
    return found


def _flow_text(flow) -> str:
    from ipaddress import ip_address

    size = 4 if flow.family == 4 else 16
    src, dst = (ip_address(bytes(words)[:size]) for words in (flow.src, flow.dst))
    return f"proto {flow.proto} {src}:{flow.src_port} > {dst}:{flow.dst_port}"
