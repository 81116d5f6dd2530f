"""What the simulator's prediction looks like on hosts the ``ebpf`` backend runs.

Contract: ``ebpf_view(network, hosts)`` returns a function from a simulated ``Walk`` to the same
walk as the ``ebpf`` backend realises it on ``hosts`` (None: every host): the verdicts, NAT and
packets are the simulator's (the programs are proven equal to it on bytes), only the labels of
the hops the programs take over change. In a namespace whose rules the tc programs realise
(``target.expressible``), filter hops become "eBPF (tc) policy" and NAT hops "eBPF (tc) service
load balancing", at level "tc (eBPF)"; a NIC's drop list hop becomes "XDP drop (before sk_buff)".
All stay in mode Kernel.
"""

from collections.abc import Callable, Iterable
from dataclasses import replace

from netvirt.dataplane.ebpf.target import expressible
from netvirt.dataplane.events import Action, Event, Walk
from netvirt.dataplane.kernel.rulesets import Ruleset, RulesetError
from netvirt.graph import DROP_LIST_PROGRAM, NetworkGraph

LEVEL = "tc (eBPF)"
POLICY = "eBPF (tc) policy"
SERVICES = "eBPF (tc) service load balancing"
XDP_DROP = "XDP drop (before sk_buff)"
FILTERS = (Action.FILTER_ALLOW, Action.FILTER_DROP, Action.FILTER_REJECT)


def ebpf_namespaces(network: NetworkGraph, hosts: Iterable[str] | None = None) -> set[tuple[str, str]]:
    """(host, namespace) whose filter and NAT rules the tc programs realise."""
    chosen = None if hosts is None else set(hosts)
    found = set()
    for graph in network.hosts:
        if chosen is not None and graph.host not in chosen:
            continue
        for ns in graph.namespaces:
            try:
                ruleset = Ruleset(filter=ns.filter, nat=ns.nat)
            except RulesetError:
                continue
            if ruleset.chains() and expressible(ruleset) is None:
                found.add((graph.host, ns.name))
    return found


def ebpf_view(network: NetworkGraph, hosts: Iterable[str] | None = None) -> Callable[[Walk], Walk]:
    programs = ebpf_namespaces(network, hosts)
    chosen = None if hosts is None else set(hosts)

    def label(event: Event) -> Event:
        if event.level == "Driver" and DROP_LIST_PROGRAM in event.technique:
            if chosen is None or event.host in chosen:
                return replace(event, technique=XDP_DROP)
            return event
        if (event.host, event.namespace) not in programs:
            return event
        if event.action in FILTERS and event.rule.startswith("filter/"):
            return replace(event, mode="Kernel", level=LEVEL, technique=POLICY)
        if event.action is Action.NAT:
            return replace(event, mode="Kernel", level=LEVEL, technique=SERVICES)
        return event

    def view(walk: Walk) -> Walk:
        return replace(walk, events=tuple(label(event) for event in walk.events))

    return view
