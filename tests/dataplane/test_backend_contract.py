"""The Backend contract (DESIGN.md §5, dataplane.api.Backend), run against every registered backend
that can realise the case: sim always, linux and ebpf in the real kernel (privileged: mandatory in CI).

Each case is a compiled network (examples/quickstart.yaml and edits of it). Per host, a backend
must: apply a realisable graph and read it back equal; apply it again changing nothing; converge
to an edited graph exactly (what the edit removed is gone); refuse whole a graph it cannot realise
(or one for another host) and keep what it had; converge again after ``forget``; after
``teardown`` hold nothing. Sockets are applications' (the kernel shows one only while something
listens), so read-backs are compared without them. A new backend adds its ``OPTIONS`` entry.
"""

import copy
import dataclasses
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from netvirt.control.compile import compile_network
from netvirt.dataplane import registry
from netvirt.dataplane.api import Backend, plan
from netvirt.graph import Device, DeviceKind, HostGraph, Hypervisor, HypervisorSwitch, NetworkGraph
from netvirt.management.spec.loader import build
from netvirt.management.spec.source import Source, read

QUICKSTART = read(Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml").data


def _linux_options(network: NetworkGraph, state_dir: Path) -> dict:
    from netvirt.dataplane.kernel.naming import TEST_PREFIX
    from netvirt.dataplane.linux.backend import segments_of

    return {"deployment": f"t{secrets.token_hex(3)}", "segments": segments_of(network), "prefix": TEST_PREFIX,
            "state_dir": state_dir}


def _userspace_options(network: NetworkGraph, state_dir: Path) -> dict:
    from netvirt.dataplane.kernel.naming import TEST_PREFIX

    return {"network": network, "deployment": f"t{secrets.token_hex(3)}", "prefix": TEST_PREFIX, "state_dir": state_dir}


# backend -> (its constructor options for one network, and the marks its cases need)
OPTIONS: dict[str, tuple[Callable[[NetworkGraph, Path], dict], tuple]] = {
    "sim": (lambda network, state_dir: {}, ()),
    "linux": (_linux_options, (pytest.mark.privileged,)),
    "userspace": (_userspace_options, (pytest.mark.privileged,)),
    "ebpf": (_linux_options, (pytest.mark.privileged,)),  # the linux backend's options
}
BACKENDS = [pytest.param(name, marks=OPTIONS[name][1], id=name) for name in OPTIONS]


def network_of(change: Callable[[dict], None] | None = None) -> NetworkGraph:
    data = copy.deepcopy(QUICKSTART)
    if change is not None:
        change(data)
    return compile_network(build(Source(data, [], "quickstart")))


def remove_client(data: dict) -> None:
    data["endpoints"] = [e for e in data["endpoints"] if e["name"] != "client-1"]


def without_sockets(graph: HostGraph) -> HostGraph:
    return dataclasses.replace(graph, devices=tuple(d for d in graph.devices if d.kind is not DeviceKind.SOCKET))


class Hosts:
    """One backend per host of a network, all made by the registry with the same options."""

    def __init__(self, name: str, network: NetworkGraph, state_dir: Path) -> None:
        options = OPTIONS[name][0](network, state_dir)
        self.backends: dict[str, Backend] = {g.host: registry.make(name, g.host, **options) for g in network.hosts}
        able = [p for g in network.hosts for p in plan(g, self.backends[g.host].capabilities())]
        if able:
            pytest.skip(f"backend {name} cannot realise this case: {able[0]}")

    def apply(self, network: NetworkGraph) -> None:
        for graph in network.hosts:
            report = self.backends[graph.host].apply(graph)
            assert report.ok, report.errors

    def assert_realized(self, network: NetworkGraph) -> None:
        """Every host reads back as ``network`` has it (sockets aside)."""
        for graph in network.hosts:
            assert without_sockets(self.backends[graph.host].realized()) == without_sockets(graph)

    def teardown(self) -> None:
        for backend in self.backends.values():
            backend.teardown()


@pytest.fixture
def hosts(request, tmp_path):
    made: list[Hosts] = []

    def make(network: NetworkGraph) -> Hosts:
        made.append(Hosts(request.param, network, tmp_path))
        return made[-1]

    yield make
    for one in made:
        one.teardown()


def test_every_registered_backend_is_in_the_contract_suite():
    assert set(OPTIONS) == set(registry.names()), "add the new backend's OPTIONS entry"


@pytest.mark.parametrize("hosts", BACKENDS, indirect=True)
def test_apply_reads_back_equal_and_is_idempotent(hosts):
    network = network_of()
    made = hosts(network)
    made.apply(network)
    made.assert_realized(network)
    for graph in network.hosts:
        backend = made.backends[graph.host]
        again = backend.apply(graph)
        assert again.ok and (again.created, again.changed, again.deleted) == (0, 0, 0)
        assert backend.capabilities().device_kinds <= type(backend).declared().device_kinds


@pytest.mark.parametrize("hosts", BACKENDS, indirect=True)
def test_apply_converges_to_an_edited_graph_exactly(hosts):
    before, after = network_of(), network_of(remove_client)
    made = hosts(before)
    made.apply(before)
    made.apply(after)
    made.assert_realized(after)
    assert not any(ns.name == "client-1" for g in after.hosts for ns in made.backends[g.host].realized().namespaces)


@pytest.mark.parametrize("hosts", BACKENDS, indirect=True)
def test_a_graph_it_cannot_realise_is_refused_whole(hosts):
    network = network_of()
    made = hosts(network)
    made.apply(network)
    graph = network.hosts[0]
    backend = made.backends[graph.host]
    kept = backend.realized()
    strangers = [kind for kind in DeviceKind if kind not in backend.capabilities().device_kinds]
    refused = [dataclasses.replace(graph, host="elsewhere")]
    if DeviceKind.HYPERVISOR_SWITCH in strangers:
        vbox = Device.of(DeviceKind.HYPERVISOR_SWITCH, "vbox0", graph.host, config=HypervisorSwitch(Hypervisor.VIRTUALBOX))
        refused.append(dataclasses.replace(graph, devices=graph.devices + (vbox,)))
    for bad in refused:
        report = backend.apply(bad)
        assert not report.ok and report.errors
        assert backend.realized() == kept


@pytest.mark.parametrize("hosts", BACKENDS, indirect=True)
def test_forget_then_apply_converges_and_teardown_leaves_nothing(hosts):
    network = network_of()
    made = hosts(network)
    made.apply(network)
    for backend in made.backends.values():
        backend.forget()
    made.apply(network)
    made.assert_realized(network)
    made.teardown()
    for graph in network.hosts:
        assert made.backends[graph.host].realized() == HostGraph(host=graph.host)
