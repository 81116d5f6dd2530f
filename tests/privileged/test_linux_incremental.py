"""The linux backend's incremental converge: an ``apply`` after a successful one touches only what
the graph diff says changed, and still ends exactly where a full converge from scratch ends.

Each edit of the quickstart spec is applied to one network incrementally and built from nothing
in a second deployment; both read back (``realized``) equal. Drift planted in a namespace the edit
does not touch shows that the incremental apply trusts its last apply (and that ``drift`` still
finds it); ``forget`` — and any apply after a failed one — converges everything again."""

import copy
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest
from linux_network import bring_up, tear_down
from quickstart_edits import BASE, EDITS, add_endpoint, apply_all, edited, spec_of, without_sockets

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux.backend import network_backends
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.graph import HostGraph, NetworkGraph, Route, Veth, diff

@pytest.fixture
def scratch(tmp_path) -> Iterator[Callable[[NetworkGraph], dict[str, HostGraph]]]:
    """Builds a network from nothing in a deployment of its own; returns every host read back."""
    made: list[Names] = []

    def full(network: NetworkGraph) -> dict[str, HostGraph]:
        names = Names(f"t{secrets.token_hex(3)}", TEST_PREFIX)
        made.append(names)
        backends = network_backends(network, names.deployment, prefix=TEST_PREFIX, state_dir=tmp_path)
        apply_all(backends, network)
        return {graph.host: backends[graph.host].realized() for graph in network.hosts}

    yield full
    for names in made:
        cleanup(names, tmp_path)
    assert [n for n in netns.names() if any(names.owns_namespace(n) for names in made)] == []


@pytest.fixture
def network(tmp_path):
    net = bring_up(spec_of(BASE), tmp_path / "incremental")
    try:
        yield net
    finally:
        tear_down(net)


def untouched(old: HostGraph, new: HostGraph) -> str:
    """A namespace with filter rules that the edit from ``old`` to ``new`` does not change."""
    touched = {change.key.split("/")[0] for change in diff(old, new).changes}
    return next(ns.name for ns in new.namespaces if ns.filter and ns.name not in touched)


def but(graph: HostGraph, namespace: str) -> HostGraph:
    return replace(graph, namespaces=tuple(ns for ns in graph.namespaces if ns.name != namespace))


@pytest.mark.parametrize("edit", EDITS)
def test_incremental_apply_reads_back_like_a_build_from_scratch(network, scratch, edit):
    new = compile_network(spec_of(edited(EDITS[edit])))
    host_b = new.host("host-b")
    backend = network.backends["host-b"]
    planted = untouched(network.graph.host("host-b"), host_b)
    netns.run(network.names.graph_namespace("host-b", planted), ["nft", "flush", "table", "inet",
                                                                 network.names.nft_table])

    apply_all(network.backends, new)
    realized = {graph.host: network.backends[graph.host].realized() for graph in new.hosts}
    expected = scratch(new)

    assert realized["host-a"] == expected["host-a"] == without_sockets(new.host("host-a"))
    assert network.backends["host-a"].drift(new.host("host-a")) == []
    assert but(realized["host-b"], planted) == but(expected["host-b"], planted)
    # the apply trusted its last one: the planted namespace was not looked at; drift() finds it
    assert [chain.rules for chain in realized["host-b"].namespace(planted).filter] == [()]
    assert any(f"{planted} nft" in line and "flushed" in line for line in backend.drift(host_b))
    backend.forget()  # the full converge (a resync) repairs it
    assert backend.apply(host_b).ok
    assert backend.drift(host_b) == []
    assert backend.realized() == expected["host-b"] == without_sockets(host_b)


def renamed(graph: HostGraph, namespace: str, old: str, new: str) -> HostGraph:
    """``graph`` with veth ``namespace/old`` called ``new`` (its peer, routes and neighbours follow)."""
    def device(dev):
        if dev.key == (namespace, old):
            return replace(dev, name=new)
        if isinstance(dev.config, Veth) and (dev.config.peer_namespace, dev.config.peer) == (namespace, old):
            return replace(dev, config=replace(dev.config, peer=new))
        return dev

    def space(ns):
        if ns.name != namespace:
            return ns
        return replace(ns, routes=tuple(replace(r, dev=new) if r.dev == old else r for r in ns.routes),
                       neighbours=tuple(replace(n, dev=new) if n.dev == old else n for n in ns.neighbours))

    return replace(graph, devices=tuple(map(device, graph.devices)), namespaces=tuple(map(space, graph.namespaces)))


def test_a_re_created_port_takes_what_refers_to_it_along(network, scratch):
    """Renaming the router's end of host-b's gw-green re-creates the pair, and with it the
    bridge's sticky FDB entry for the gateway port, though br-green itself did not change."""
    host_b = renamed(network.graph.host("host-b"), "acme-router", "gw-green", "gw-green-2")
    assert {c.key for c in diff(network.graph.host("host-b"), host_b).changes} == {
        "acme-router", "acme-router/gw-green", "acme-router/gw-green-2", "host-b/gw-green"}
    new = replace(network.graph, hosts=tuple(host_b if g.host == "host-b" else g for g in network.graph.hosts))
    apply_all(network.backends, new)
    assert network.backends["host-b"].realized() == scratch(new)["host-b"] == without_sockets(host_b)


def test_edits_in_a_row_and_back_end_where_they_started(network):
    """Every edit applied on top of the previous ones, then the original spec again."""
    data = copy.deepcopy(BASE)
    for edit in EDITS.values():
        edit(data)
        apply_all(network.backends, compile_network(spec_of(data)))
    apply_all(network.backends, network.graph)
    for graph in network.graph.hosts:
        assert network.backends[graph.host].realized() == without_sockets(graph)
        assert network.backends[graph.host].drift(graph) == []


def test_an_apply_after_a_failed_one_converges_fully(network, scratch):
    host_a = network.graph.host("host-a")
    backend = network.backends["host-a"]
    netns.run(network.names.graph_namespace("host-a", "host-a"), ["ip", "link", "del", "ve-web-1-0"])
    netns.run(network.namespace("client-1"), ["nft", "flush", "table", "inet", network.names.nft_table])
    # a route through a gateway on no subnet of client-1: the graph plans fine, the kernel refuses it
    unreachable = Route(dst=ip_network("10.123.0.0/16"), via=ip_address("192.0.2.1"))
    bad = replace(host_a, namespaces=tuple(
        replace(ns, routes=(*ns.routes, unreachable)) if ns.name == "client-1" else ns for ns in host_a.namespaces))
    assert backend.check(bad) == []
    failed = backend.apply(bad)
    assert not failed.ok and "kernel" in str(failed.errors[0])

    new = compile_network(spec_of(edited(add_endpoint)))
    apply_all(network.backends, new)

    assert backend.drift(new.host("host-a")) == []
    realized = {graph.host: network.backends[graph.host].realized() for graph in new.hosts}
    assert realized == scratch(new)
    assert realized["host-a"] == without_sockets(new.host("host-a"))
