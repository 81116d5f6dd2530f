"""The node agent against real stores and the sim backend: converge, follow, restart, bad desired
states, a crash half-way through apply, and a real etcd outage."""

import dataclasses
import json
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from control_helpers import eventually, host_with_pods
from etcd_server import etcd  # noqa: F401 - fixture

from netvirt.control.agent import Agent, AgentThread, ApplyCrashed, Backoff
from netvirt.control.state import (
    AgentState,
    AgentStatus,
    Blob,
    Heartbeat,
    TreeWriter,
    desired_key,
    heartbeat_key,
    read_tree,
    realized_blobs,
    realized_key,
    status_key,
    write_blobs,
)
from netvirt.control.store import Store, open_store
from netvirt.dataplane.api import ApplyReport
from netvirt.dataplane.sim.backend import SimBackend
from netvirt.graph import HostGraph, Neighbour, Route, from_json, to_json


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with open_store(f"sqlite://{tmp_path / 'store.db'}") as opened:
        yield opened


def publish(store: Store, graph: HostGraph | bytes, host: str = "") -> int:
    """Store a graph as a tree (raw JSON as one blob), then point the host's desired key at it."""
    writer = TreeWriter()
    root = writer.data(json.loads(graph)) if isinstance(graph, bytes) else writer.graph(graph)
    write_blobs(store, [(Blob.of(value), value) for value in writer.blobs.values()])
    return store.put(desired_key(host or graph.host), root.pointer())


def status_of(store: Store, host: str) -> AgentStatus | None:
    entry = store.get(status_key(host))
    return AgentStatus.from_json(entry.value) if entry else None


def converged_at(store: Store, host: str, revision: int) -> AgentStatus | None:
    status = status_of(store, host)
    ok = status and status.state is AgentState.CONVERGED and status.realized_revision == revision
    return status if ok else None


def realized_in_store(store: Store, host: str) -> HostGraph:
    root = Blob.pointed(store.get(realized_key(host)).value)
    return from_json(HostGraph, read_tree(store, root, realized_blobs(host)))


def fast_agent(host: str, store: Store, backend) -> Agent:
    return Agent(host, store, backend, resync_interval=1.0, backoff=Backoff(0.05, 0.2))


def test_converges_then_follows_changes_and_removal(store: Store):
    backend = SimBackend("h1")
    first = host_with_pods("h1", 2)
    revision = publish(store, first)
    agent = AgentThread(fast_agent("h1", store, backend)).start()
    try:
        status = eventually(lambda: converged_at(store, "h1", revision), what="first convergence")
        assert status.desired_revision == revision and status.errors == () and status.backend == "sim"
        assert backend.realized() == first == realized_in_store(store, "h1")

        second = host_with_pods("h1", 3)
        revision = publish(store, second)
        eventually(lambda: converged_at(store, "h1", revision), what="convergence on the change")
        assert backend.realized() == second == realized_in_store(store, "h1")

        store.delete(desired_key("h1"))
        eventually(lambda: status_of(store, "h1").state is AgentState.IDLE, what="idle after removal")
        assert backend.realized() == HostGraph(host="h1") == realized_in_store(store, "h1")
    finally:
        agent.stop()


def test_restart_resyncs_and_reports_once(store: Store):
    graph = host_with_pods("h1", 2)
    revision = publish(store, graph)
    data_plane = SimBackend("h1")  # outlives the agents, as the kernel outlives an agent process
    fast_agent("h1", store, data_plane).resync()
    assert converged_at(store, "h1", revision)
    written = store.get(status_key("h1")).mod_revision

    restarted = fast_agent("h1", store, data_plane)
    restarted.resync()
    assert data_plane.realized() == graph
    assert store.get(status_key("h1")).mod_revision > written, "a new agent reports itself once"
    again = store.revision()
    restarted.resync()
    assert store.revision() == again, "a resync that changes nothing writes nothing"

    fresh = SimBackend("h1")  # the simulator's memory died with the process
    fast_agent("h1", store, fresh).resync()
    assert fresh.realized() == graph


def test_unrealisable_desired_state_keeps_the_last_good_one(store: Store):
    backend = SimBackend("h1")
    good = host_with_pods("h1", 2)
    good_revision = publish(store, good)
    agent = fast_agent("h1", store, backend)
    agent.resync()
    host_ns = good.namespace("h1")
    broken_ns = dataclasses.replace(host_ns, routes=(Route(dst=ip_network("10.9.0.0/16"), dev="missing0"),))
    broken = dataclasses.replace(good, namespaces=(broken_ns, *good.namespaces[1:]))
    bad_revision = publish(store, broken)
    agent.resync()
    status = status_of(store, "h1")
    assert status.state is AgentState.FAILED
    assert (status.desired_revision, status.realized_revision) == (bad_revision, good_revision)
    assert any("missing0" in error for error in status.errors), status.errors
    assert backend.realized() == good == realized_in_store(store, "h1")

    publish(store, b'{"host": "h1", "devices": [{"kind": "warp-drive"}]}', "h1")
    agent.resync()
    status = status_of(store, "h1")
    assert status.state is AgentState.FAILED and "unreadable" in status.errors[0]
    store.put(desired_key("h1"), b"not a pointer")
    agent.resync()
    assert "not a blob pointer" in status_of(store, "h1").errors[0]
    assert backend.realized() == good

    fixed_revision = publish(store, host_with_pods("h1", 1))
    agent.resync()
    assert converged_at(store, "h1", fixed_revision)


class CrashHalfway:
    """Fault injection around a backend: apply realises part of the graph, then raises."""

    name = "sim"

    def __init__(self, inner: SimBackend) -> None:
        self.inner = inner

    def capabilities(self):
        return self.inner.capabilities()

    def apply(self, graph: HostGraph) -> ApplyReport:
        half = dataclasses.replace(graph, namespaces=graph.namespaces[:1], devices=graph.devices[:1])
        self.inner.apply(half)
        raise OSError("netlink: connection reset (injected)")

    def realized(self) -> HostGraph:
        return self.inner.realized()

    def forget(self) -> None:
        self.inner.forget()

    def teardown(self) -> None:
        self.inner.teardown()


def test_crash_in_the_middle_of_apply_then_the_next_start_converges(store: Store):
    data_plane = SimBackend("h1")
    graph = host_with_pods("h1", 3)
    revision = publish(store, graph)
    with pytest.raises(ApplyCrashed, match="injected"):
        fast_agent("h1", store, CrashHalfway(data_plane)).resync()
    status = status_of(store, "h1")
    assert status.state is AgentState.FAILED and "OSError" in status.errors[0]
    assert data_plane.realized() not in (graph, HostGraph(host="h1")), "left half-applied"

    fast_agent("h1", store, data_plane).resync()
    assert converged_at(store, "h1", revision)
    assert data_plane.realized() == graph


def test_wrong_host_in_desired_graph(store: Store):
    publish(store, host_with_pods("h2", 1), "h1")
    fast_agent("h1", store, SimBackend("h1")).resync()
    assert status_of(store, "h1").errors == ("desired graph is for host 'h2'",)


def test_store_outage_keeps_the_data_plane_and_recovers(etcd):
    with open_store(etcd.url) as store:
        backend = SimBackend("out1")
        graph = host_with_pods("out1", 2)
        revision = publish(store, graph)
        agent = AgentThread(fast_agent("out1", store, backend)).start()
        try:
            eventually(lambda: converged_at(store, "out1", revision), what="convergence before the outage")
            etcd.stop()
            eventually(lambda: agent.agent.backoff.current > 0.05, what="the agent backing off")
            assert backend.realized() == graph, "an outage leaves the data plane as it is"
            etcd.start()
            changed = host_with_pods("out1", 4)
            revision = publish(store, changed)
            eventually(lambda: converged_at(store, "out1", revision), timeout=15, what="convergence after it")
            assert backend.realized() == changed
        finally:
            agent.stop()


def test_status_json_round_trip():
    status = AgentStatus(
        host="h1", backend="sim", state=AgentState.FAILED, desired_revision=7, realized_revision=5,
        errors=("x",), agent="1@m", since=1.5,
    )
    assert AgentStatus.from_json(status.to_json()) == status
    assert json.loads(status.to_json())["state"] == "failed"
    assert status.same_report(dataclasses.replace(status, since=9.0))
    assert not status.same_report(dataclasses.replace(status, realized_revision=7))


def test_backoff_grows_caps_and_resets():
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next() for _ in range(8)]
    assert 0.08 <= delays[0] <= 0.12 and delays[1] > delays[0]
    assert all(delay <= 1.2 for delay in delays) and delays[-1] >= 0.8
    backoff.reset()
    assert backoff.next() <= 0.12


def test_a_superseded_desired_graph_is_skipped(store: Store):
    """The blob a pointer names may be swept before an agent reads it: a newer version follows."""
    publish(store, host_with_pods("h1", 1))
    gone = Blob.of(b"never stored")
    store.put(desired_key("h1"), gone.pointer())
    agent = fast_agent("h1", store, SimBackend("h1"))
    agent.resync()
    assert status_of(store, "h1") is None, "nothing realized, nothing reported"
    revision = publish(store, host_with_pods("h1", 2))
    agent.resync()
    assert converged_at(store, "h1", revision)


def test_a_realized_graph_larger_than_an_etcd_request_is_written_as_a_tree(etcd):
    """2 MB of static neighbours: etcd refuses a single value that large (--max-request-bytes 1.5 MiB)."""
    neighbours = tuple(
        Neighbour(ip_address(0x0A000000 + n), f"02:00:00:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}", "br0")
        for n in range(30_000)
    )
    small = host_with_pods("big", 2)
    graph = dataclasses.replace(small, namespaces=(dataclasses.replace(small.namespaces[0], neighbours=neighbours), *small.namespaces[1:]))
    assert len(to_json(graph)) > 1.5 * 2**20
    with open_store(etcd.url) as store:
        revision = publish(store, graph)
        agent = fast_agent("big", store, SimBackend("big"))
        agent.resync()
        assert converged_at(store, "big", revision)
        assert realized_in_store(store, "big") == graph
        space = store.list(realized_blobs("big")).entries
        assert max(len(e.value) for e in space) < 100_000 and {e.key.split("/")[-2] for e in space} == agent._desired_blobs.keys()
        smaller = dataclasses.replace(graph, namespaces=(dataclasses.replace(graph.namespaces[0], neighbours=neighbours[1:]), *graph.namespaces[1:]))
        revision = publish(store, smaller)
        agent.resync()
        assert converged_at(store, "big", revision) and realized_in_store(store, "big") == smaller
        kept = {e.key.split("/")[-2] for e in store.list(realized_blobs("big"), keys_only=True).entries}
        assert kept == agent._desired_blobs.keys(), "the realized space holds exactly the realized tree"


def test_heartbeat_every_interval_stale_after_three_and_gone_once_it_stops(store: Store):
    agent = Agent("h1", store, SimBackend("h1"), heartbeat_interval=0.1)
    running = AgentThread(agent).start()
    try:
        first = eventually(lambda: store.get(heartbeat_key("h1")), what="a first heartbeat")
        later = eventually(lambda: (e := store.get(heartbeat_key("h1"))).version >= first.version + 3 and e, what="more heartbeats")
        beat = Heartbeat.from_json(later.value)
        assert (beat.agent, beat.interval) == (agent.identity, 0.1) and not beat.stale()
    finally:
        running.stop()
    assert beat.stale(now=beat.at + 0.31) and not beat.stale(now=beat.at + 0.29)  # a dead agent's last beat
    assert store.get(heartbeat_key("h1")) is None, "a stopped agent deregisters"
    assert store.get(status_key("h1")) is not None, "the report stays: the data plane is still there"
