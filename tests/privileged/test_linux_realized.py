"""The linux backend's cheap read-back: after incremental applies, ``realized()`` reads again only
the namespaces they touched and takes the others from its previous read-back — and still equals a
full read-back (``read``, or ``forget`` then ``realized``) of the same kernel.

Drift planted (an ``ip_forward`` sysctl flipped behind netvirt's back) shows which namespaces a
read-back looked at: one the applies did not touch is trusted, one they touched is read again;
after ``forget``, a full or failed apply and a ``teardown``, ``realized`` reads everything."""

import copy
from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest
from linux_network import Network, bring_up, tear_down
from quickstart_edits import BASE, EDITS, add_endpoint, apply_all, compiled, spec_of, without_sockets

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux.backend import LinuxBackend
from netvirt.graph import HostGraph, Route, diff

def read_back_fully(backends: dict[str, LinuxBackend]) -> None:
    """Every backend's ``realized``: a full read-back, which the next ones reuse."""
    for backend in backends.values():
        backend.realized()


@pytest.fixture
def network(tmp_path):
    net = bring_up(spec_of(copy.deepcopy(BASE)), tmp_path / "realized")
    try:
        yield net
    finally:
        tear_down(net)
    assert [n for n in netns.names() if net.names.owns_namespace(n)] == []


def assert_equals_a_full_read_back(backend: LinuxBackend, graph: HostGraph) -> HostGraph:
    """``backend.realized()`` (cheap) equals ``read`` and ``forget`` + ``realized`` (full), and
    the graph; returns it."""
    cheap = backend.realized()
    assert cheap == backend.read(graph) == without_sockets(graph)
    backend.forget()
    assert backend.realized() == cheap
    return cheap


@pytest.mark.parametrize("edit", EDITS)
def test_the_read_back_after_an_incremental_apply_equals_a_full_one(network, edit):
    read_back_fully(network.backends)
    new = compiled(EDITS[edit])
    apply_all(network.backends, new)
    for graph in new.hosts:
        assert_equals_a_full_read_back(network.backends[graph.host], graph)


def test_edits_in_a_row_read_back_with_and_without_a_read_back_between(network):
    """Touched namespaces add up over applies until the next ``realized``."""
    read_back_fully(network.backends)
    data = copy.deepcopy(BASE)
    for number, edit in enumerate(EDITS.values()):
        edit(data)
        new = compile_network(spec_of(data))
        apply_all(network.backends, new)
        if number % 2:
            for graph in new.hosts:
                assert network.backends[graph.host].realized() == without_sockets(graph)
    apply_all(network.backends, network.graph)  # and back
    for graph in network.graph.hosts:
        backend = network.backends[graph.host]
        assert backend.realized() == backend.read(graph) == without_sockets(graph)


def flip_forwarding(network: Network, host: str, namespace: str) -> None:
    """Drift behind netvirt's back: turn IPv4 forwarding of ``host:namespace`` the other way."""
    name = network.names.graph_namespace(host, namespace)
    netns.sysctl(name, "net.ipv4.ip_forward", 1 - int(netns.sysctl(name, "net.ipv4.ip_forward")))


def forwarding(graph: HostGraph) -> dict[str, bool]:
    return {ns.name: ns.ip_forward for ns in graph.namespaces}


def test_namespaces_an_apply_did_not_touch_are_trusted_and_forget_reads_everything(network):
    backend = network.backends["host-b"]
    read_back_fully(network.backends)
    old, new = network.graph.host("host-b"), compiled(add_endpoint).host("host-b")
    touched = {change.key.split("/")[0] for change in diff(old, new).changes}
    assert "web-3" in touched and "globex-2" not in touched
    apply_all(network.backends, compiled(add_endpoint))
    flip_forwarding(network, "host-b", "web-3")
    flip_forwarding(network, "host-b", "globex-2")
    desired = forwarding(new)

    cheap = backend.realized()
    assert forwarding(cheap) == desired | {"web-3": not desired["web-3"]}  # read again: drift seen
    full = desired | {"web-3": not desired["web-3"], "globex-2": not desired["globex-2"]}
    assert forwarding(backend.read(new)) == full
    backend.forget()
    assert forwarding(backend.realized()) == full
    assert backend.realized() == backend.read(new)  # nothing touched since: the same read-back
    assert backend.apply(new).ok  # a full converge repairs both, and its read-back is full again
    assert backend.realized() == without_sockets(new)
    flip_forwarding(network, "host-b", "globex-2")
    assert backend.realized() == without_sockets(new)  # trusted: nothing applied since
    assert forwarding(backend.read(new)) == desired | {"globex-2": not desired["globex-2"]}
    flip_forwarding(network, "host-b", "globex-2")


def test_a_full_apply_a_failed_apply_and_a_teardown_make_the_next_read_back_full(network):
    backend = network.backends["host-a"]
    host_a = network.graph.host("host-a")
    desired = forwarding(host_a)

    def drifted(*namespaces: str) -> dict[str, bool]:
        return desired | {name: not desired[name] for name in namespaces}

    backend.realized()
    backend.forget()
    assert backend.apply(host_a).ok  # full converge: the earlier read-back is not reused
    flip_forwarding(network, "host-a", "client-1")
    assert forwarding(backend.realized()) == drifted("client-1")
    flip_forwarding(network, "host-a", "client-1")
    assert forwarding(backend.realized()) == drifted("client-1")  # nothing applied since: trusted
    assert backend.read(host_a) == without_sockets(host_a)

    # a route through a gateway on no subnet of web-1: the graph plans fine, the kernel refuses it
    unreachable = Route(dst=ip_network("10.123.0.0/16"), via=ip_address("192.0.2.1"))
    bad = replace(host_a, namespaces=tuple(
        replace(ns, routes=(*ns.routes, unreachable)) if ns.name == "web-1" else ns for ns in host_a.namespaces))
    assert backend.check(bad) == []
    flip_forwarding(network, "host-a", "globex-1")
    assert not backend.apply(bad).ok
    assert forwarding(backend.realized()) == drifted("globex-1")
    flip_forwarding(network, "host-a", "globex-1")

    backend.teardown()
    assert backend.realized() == HostGraph(host="host-a")
    assert [n for n in netns.names() if network.names.host_namespaces("host-a", [n])] == []
