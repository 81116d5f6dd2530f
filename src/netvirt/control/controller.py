"""The controller: publishes a spec's per-host desired graphs, and reports how the hosts are doing.

Contract:
- ``apply(spec, expected_revision)`` compiles ``spec``, stores the spec and every changed host
  graph as blobs (``state``), then publishes them in ONE store transaction guarded by the spec
  key's revision: the spec pointer and the desired pointer of every host whose graph changed (hosts
  no longer in the spec lose theirs). Agents therefore never see a half-published version, and an
  unchanged host's desired revision does not move. Applying what is applied writes nothing. Blobs
  nothing points to any more are swept afterwards.
- Applies are serialised (a lock here, the compare in the store across controllers);
  ``expected_revision`` that is not the current spec revision raises ``StaleSpec``.
- A rejected spec (``SpecError`` from ``loads``, ``CompileError``) changes nothing.
- ``hosts()`` / ``host(name)``: desired vs realized revision, the agent's status, ``in_sync``.
- ``run_embedded(spec, backend)``: the single-machine path — the same controller on an embedded
  store with one in-process agent per host.

Compiling is incremental (``compile.Engine``) while the controller's engine reflects the stored
spec: only the hosts the engine reports changed are serialised and compared. After a restart,
when another controller wrote since, or after a failed publish, it compiles everything and
compares blob hashes with what is stored.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netvirt.control.agent import Agent, AgentThread, make_backend
from netvirt.control.compile import Engine
from netvirt.control.state import (
    BLOBS,
    DESIRED,
    SPEC_KEY,
    STATUS,
    AgentState,
    AgentStatus,
    Blob,
    desired_key,
    host_of,
    realized_key,
    status_key,
)
from netvirt.control.store import Compare, Conflict, Delete, Entry, Operation, Put, Store, StoreError, open_store
from netvirt.dataplane.api import Backend
from netvirt.graph import HostGraph, diff, from_json, to_json
from netvirt.management.spec import Spec, as_data, loads


log = logging.getLogger("netvirt.controller")


class StaleSpec(Exception):
    """The caller's spec revision is not the current one (someone applied in between)."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected, self.actual = expected, actual
        now = f"at revision {actual}" if actual else "not there (nothing applied)"
        super().__init__(f"the applied spec is {now}, not at revision {expected}; get it again, merge, and re-apply")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply published: the spec's revision and the hosts whose desired graph changed."""

    revision: int
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    incremental: bool = False
    """The compile was incremental (the engine updated only what the edit touched)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """The spec in the store and its revision."""

    spec: Spec
    revision: int


@dataclass(frozen=True, slots=True)
class HostState:
    """One host: its desired revision (0: nothing desired) and what its agent last reported."""

    host: str
    desired_revision: int
    status: AgentStatus | None

    @property
    def in_sync(self) -> bool:
        """The agent realizes exactly the current desired revision (or both are empty)."""
        if self.status is None:
            return False
        if self.desired_revision == 0:
            return self.status.state is AgentState.IDLE
        return self.status.state is AgentState.CONVERGED and self.status.realized_revision == self.desired_revision

    @property
    def summary(self) -> str:
        """converged | pending (the agent has not caught up) | failed | no agent | idle."""
        if self.status is None:
            return "no agent"
        if self.in_sync:
            return "idle" if self.desired_revision == 0 else "converged"
        if self.status.state is AgentState.FAILED and self.status.desired_revision == self.desired_revision:
            return "failed"
        return "pending"


@dataclass(frozen=True, slots=True)
class HostDetail:
    """One host's desired and realized graphs (None when absent) and its state."""

    state: HostState
    desired: HostGraph | None
    realized: HostGraph | None
    differences: tuple[str, ...] = field(default=())
    """What the realized graph lacks or has extra, one line per object (``add device h1/eth0``)."""


@dataclass(frozen=True, slots=True)
class _Published:
    """What this controller last published: the spec key's revision then, each host's graph and blob."""

    revision: int
    hosts: dict[str, tuple[HostGraph | None, Blob]]


BATCH_BYTES = 1024 * 1024  # per transaction: below etcd's default request limit (1.5 MiB)
BATCH_OPERATIONS = 64  # per transaction: below etcd's default --max-txn-ops (128)


class Controller:
    """The control-plane service over one store (see the module docstring)."""

    def __init__(self, store: Store, *, retries: int = 5) -> None:
        self.store = store
        self.retries = retries
        self._lock = threading.Lock()
        self._published: _Published | None = None
        self._engine: Engine | None = None  # compiles what ``_published`` holds, incrementally

    # --- the spec ---------------------------------------------------------------------------------

    def apply(self, spec: Spec, expected_revision: int | None = None) -> ApplyResult:
        """Publish ``spec`` atomically; see the module docstring."""
        spec_json = json.dumps(as_data(spec), sort_keys=True).encode()
        with self._lock:
            for _ in range(self.retries):
                try:
                    return self._publish(spec, spec_json, expected_revision)
                except Conflict:
                    if expected_revision is not None:
                        raise StaleSpec(expected_revision, self._spec_revision()) from None
            raise StaleSpec(expected_revision or 0, self._spec_revision())

    def apply_text(self, text: str, filename: str, expected_revision: int | None = None) -> ApplyResult:
        """Validate spec text exactly as ``netvirt validate`` does (``SpecError``), then ``apply``."""
        return self.apply(loads(text, filename), expected_revision)

    def _publish(self, spec: Spec, spec_json: bytes, expected_revision: int | None) -> ApplyResult:
        current = self.store.get(SPEC_KEY)
        revision = current.mod_revision if current else 0
        if expected_revision is not None and expected_revision != revision:
            raise StaleSpec(expected_revision, revision)
        try:
            return self._publish_over(current, revision, spec, spec_json)
        except BaseException:
            self._engine = None  # it may be ahead of the store now: recompute next time
            raise

    def _publish_over(self, current: Entry | None, revision: int, spec: Spec, spec_json: bytes) -> ApplyResult:
        if self._engine is not None and self._published is not None and self._published.revision == revision:
            before = self._published.hosts  # what the store holds: this controller published it
            touched = set(self._engine.update(spec))  # incremental: only the hosts that changed
            incremental = True
        else:
            stored = {host_of(e.key): _pointed(e.value) for e in self.store.list(DESIRED).entries}
            before = {host: (None, blob) for host, blob in stored.items() if blob is not None}
            self._engine = Engine(spec)
            touched = set(self._engine.graphs)  # every host: compared by hash below
            incremental = False
        graphs = self._engine.graphs
        after: dict[str, tuple[HostGraph | None, Blob]] = {}
        new_blobs: dict[str, tuple[Blob, bytes]] = {}
        for host, graph in graphs.items():
            old_graph, old_blob = before.get(host, (None, None))
            if old_blob is not None and (host not in touched or old_graph == graph):
                after[host] = (graph, old_blob)  # unchanged, known without serialising it
                continue
            value = to_json(graph).encode()
            after[host] = (graph, Blob.of(value))
            if after[host][1] != old_blob:
                new_blobs[host] = (after[host][1], value)
        changed = tuple(sorted(new_blobs))
        removed = tuple(sorted(before.keys() - graphs.keys()))
        unchanged = tuple(sorted(graphs.keys() - set(changed)))
        spec_blob = Blob.of(spec_json)
        if current is not None and _pointed(current.value) == spec_blob and not changed and not removed:
            self._published = _Published(revision, after)
            return ApplyResult(revision, (), (), unchanged, incremental)
        # 1. the blobs, in as many transactions as they need: nobody reads them before step 2
        self._write([(spec_blob, spec_json), *new_blobs.values()])
        # 2. the spec version, published in one transaction
        operations: list[Operation] = [Put(SPEC_KEY, spec_blob.pointer())]
        operations += [Put(desired_key(host), new_blobs[host][0].pointer()) for host in changed]
        operations += [Delete(desired_key(host)) for host in removed]
        published = self.store.txn(operations, [Compare(SPEC_KEY, revision)])
        self._published = _Published(published, after)
        # 3. what nothing points to any more
        self._sweep(published, {spec_blob.id} | {blob.id for _, blob in after.values()})
        return ApplyResult(published, changed, removed, unchanged, incremental)

    def _write(self, blobs: list[tuple[Blob, bytes]]) -> None:
        batch: list[Operation] = []
        size = 0
        for put in (put for blob, value in blobs for put in blob.puts(value)):
            if batch and (size + len(put.value) > BATCH_BYTES or len(batch) == BATCH_OPERATIONS):
                self.store.txn(batch)
                batch, size = [], 0
            batch.append(put)
            size += len(put.value)
        if batch:
            self.store.txn(batch)

    def _sweep(self, published: int, referenced: set[str]) -> None:
        """Delete the blobs no pointer names that were stored before ``published`` — each only if
        untouched since listed, so a concurrent apply's fresh copy of it survives. Best effort:
        what it cannot delete now, the next apply sweeps."""
        try:
            stale = [
                entry
                for entry in self.store.list(BLOBS, keys_only=True).entries
                if entry.key.removeprefix(BLOBS).split("/")[0] not in referenced and entry.mod_revision < published
            ]
            for at in range(0, len(stale), BATCH_OPERATIONS // 2):
                batch = stale[at : at + BATCH_OPERATIONS // 2]
                try:
                    self.store.txn([Delete(e.key) for e in batch], [Compare(e.key, e.mod_revision) for e in batch])
                except Conflict:
                    pass  # rewritten meanwhile: still wanted, or swept by the next apply
        except StoreError as error:  # the version is published; only the clean-up waits
            log.warning("controller: sweeping unused blobs failed (%s); the next apply retries", error)

    def current(self) -> Applied | None:
        """The applied spec and its revision, or None."""
        for _ in range(self.retries):
            entry = self.store.get(SPEC_KEY)
            if entry is None:
                return None
            blob = _pointed(entry.value)
            data = blob.read(self.store) if blob is not None else None
            if data is not None:
                return Applied(loads(data.decode(), "store.json"), entry.mod_revision)
        raise StoreError(f"store {self.store.url}: the spec at {SPEC_KEY} points to data that is not there")

    def delete(self, expected_revision: int | None = None) -> ApplyResult:
        """Remove the spec and every desired graph in one transaction (agents then tear down)."""
        with self._lock:
            revision = self._spec_revision()
            if expected_revision is not None and expected_revision != revision:
                raise StaleSpec(expected_revision, revision)
            hosts = tuple(sorted(host_of(e.key) for e in self.store.list(DESIRED, keys_only=True).entries))
            if revision == 0 and not hosts:
                return ApplyResult(self.store.revision(), (), (), ())
            operations: list[Operation] = [Delete(SPEC_KEY), *(Delete(desired_key(host)) for host in hosts)]
            try:
                published = self.store.txn(operations, [Compare(SPEC_KEY, revision)])
            except Conflict:
                raise StaleSpec(revision, self._spec_revision()) from None
            self._published, self._engine = _Published(0, {}), None
            self._sweep(published, set())
            return ApplyResult(published, (), hosts, ())

    def _spec_revision(self) -> int:
        entry = self.store.get(SPEC_KEY)
        return entry.mod_revision if entry else 0

    # --- the hosts --------------------------------------------------------------------------------

    def hosts(self) -> list[HostState]:
        """Every host that has a desired graph or an agent report, sorted by name."""
        desired = {host_of(e.key): e.mod_revision for e in self.store.list(DESIRED, keys_only=True).entries}
        reports = {host_of(e.key): AgentStatus.from_json(e.value) for e in self.store.list(STATUS).entries}
        return [HostState(host, desired.get(host, 0), reports.get(host)) for host in sorted(desired.keys() | reports.keys())]

    def host(self, name: str) -> HostDetail | None:
        """One host's detail, or None if the store knows nothing about it."""
        desired = self.store.get(desired_key(name))
        realized = self.store.get(realized_key(name))
        status = self.store.get(status_key(name))
        if desired is None and realized is None and status is None:
            return None
        state = HostState(name, desired.mod_revision if desired else 0, AgentStatus.from_json(status.value) if status else None)
        blob = _pointed(desired.value) if desired else None
        data = blob.read(self.store) if blob else None
        want = from_json(HostGraph, data) if data else None
        have = from_json(HostGraph, realized.value) if realized else None
        changes = diff(have or HostGraph(host=name), want or HostGraph(host=name)).changes
        return HostDetail(state, want, have, tuple(f"{c.op} {c.kind} {c.key}" for c in changes))

    def wait_converged(self, timeout: float, poll: float = 0.02) -> list[HostState]:
        """The hosts once every one is in sync; TimeoutError naming the laggards after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.hosts()
            if all(state.in_sync for state in states):
                return states
            if time.monotonic() > deadline:
                late = ", ".join(f"{s.host} ({s.summary})" for s in states if not s.in_sync)
                raise TimeoutError(f"not converged after {timeout:g}s: {late}")
            time.sleep(poll)


def _pointed(value: bytes) -> Blob | None:
    """The blob a stored pointer names; None if it is damaged (then it counts as changed)."""
    try:
        return Blob.pointed(value)
    except ValueError:
        return None


BackendChoice = str | Callable[[str], Backend]
"""A backend name ("sim", "linux") or a factory making one backend per host name."""


class Embedded:
    """A controller, its store and one in-process agent per host (the single-machine path)."""

    def __init__(self, store: Store, backend: BackendChoice, *, resync_interval: float = 30.0) -> None:
        self.store = store
        self.controller = Controller(store)
        self._make = (lambda host: make_backend(backend, host)) if isinstance(backend, str) else backend
        self.resync_interval = resync_interval
        self.agents: dict[str, AgentThread] = {}

    def apply(self, spec: Spec) -> ApplyResult:
        """Publish ``spec`` and make sure every host of it has a running agent."""
        result = self.controller.apply(spec)
        for host in spec.hosts:
            if host.name not in self.agents:
                agent = Agent(host.name, self.store, self._make(host.name), resync_interval=self.resync_interval)
                self.agents[host.name] = AgentThread(agent).start()
        return result

    def backend(self, host: str) -> Backend:
        return self.agents[host].agent.backend

    def wait_converged(self, timeout: float = 30.0) -> list[HostState]:
        return self.controller.wait_converged(timeout)

    def teardown(self) -> None:
        """Remove everything every backend made (the agents keep running, idle)."""
        self.controller.delete()
        self.wait_converged()

    def close(self) -> None:
        """Stop the agents (the data planes stay as they are) and close the store."""
        for agent in self.agents.values():
            agent.signal()
        for agent in self.agents.values():
            agent.stop()
        self.store.close()

    def __enter__(self) -> "Embedded":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_embedded(
    spec: Spec, backend: BackendChoice = "sim", *, store_url: str = "sqlite://:memory:", timeout: float = 30.0
) -> Embedded:
    """Apply ``spec`` through an embedded controller and in-process agents; return once every host
    converged (TimeoutError otherwise). Close the result to stop the agents."""
    embedded = Embedded(open_store(store_url), backend)
    try:
        embedded.apply(spec)
        embedded.wait_converged(timeout)
    except BaseException:
        embedded.close()
        raise
    return embedded
