"""The controller: publishes a spec's per-host desired graphs, and reports how the hosts are doing.

Contract:
- ``apply(spec, expected_revision)`` compiles ``spec``, stores the blobs of the spec's and every
  changed host graph's tree that are not stored yet (``state``), then publishes them in ONE store
  transaction guarded by the spec key's (and the sweep key's) revision: the spec pointer and the
  desired pointer of every host whose graph changed (hosts no longer in the spec lose theirs).
  Agents therefore never see a half-published version, and an unchanged host's desired revision
  does not move. Applying what is applied writes nothing. Blobs no tree uses any more are swept
  afterwards (reference counts, ``state.Live``).
- Applies are serialised (a lock here, the compare in the store across controllers);
  ``expected_revision`` that is not the current spec revision raises ``StaleSpec``.
- A rejected spec (``SpecError`` from ``loads``, ``CompileError``) changes nothing.
- ``add_endpoint``/``change_endpoint``/``remove_endpoint``: one endpoint of the applied spec,
  validated as a whole spec (``spec.edit``: problems located in the endpoint's text) and published
  like ``apply`` (guarded by the revision read; a concurrent apply makes it start over, unless
  the caller gave ``expected_revision``: then ``StaleSpec``).
- ``hosts()`` / ``host(name)``: desired vs realized revision, the agent's status and heartbeat
  (``liveness``: alive, or stale since when), ``in_sync``.
- ``run_embedded(spec, backend)``: the single-machine path — the same controller on an embedded
  store with one in-process agent per host.

Compiling is incremental (``compile.Engine``) while the controller's engine reflects the stored
spec: only the hosts the engine reports changed are encoded, and of those only the namespaces and
devices that are new objects. After a restart, when another controller published or swept since,
or after a failed publish, it compiles and encodes everything, compares root hashes with what is
stored, writes the missing blobs and sweeps the ones its version does not use.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from netvirt.control.agent import Agent, AgentThread
from netvirt.control.compile import Engine
from netvirt.control.state import (
    BATCH_OPERATIONS,
    BLOBS,
    DESIRED,
    HEARTBEAT,
    SPEC_KEY,
    STATUS,
    SWEEP_KEY,
    AgentState,
    AgentStatus,
    Blob,
    Heartbeat,
    Live,
    TreeWriter,
    desired_key,
    heartbeat_key,
    host_of,
    read_tree,
    realized_blobs,
    realized_key,
    status_key,
    stored_blobs,
    write_blobs,
)
from netvirt.control.store import Compare, Conflict, Delete, Entry, Operation, Put, Store, StoreError, open_store
from netvirt.dataplane import registry
from netvirt.dataplane.api import Backend
from netvirt.graph import DeviceKind, HostGraph, diff, from_json
from netvirt.management.spec import Endpoint, Spec, loads
from netvirt.management.spec.edit import UnknownEndpoint, with_endpoint, without_endpoint


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


class NoSpec(LookupError):
    """Nothing is applied: there is no spec to add an endpoint to."""

    def __init__(self) -> None:
        super().__init__("no spec is applied: apply one (with hosts and networks) before adding endpoints")


@dataclass(frozen=True, slots=True)
class EndpointResult:
    """What a per-endpoint change published, and the endpoint as resolved (None once removed)."""

    applied: ApplyResult
    endpoint: Endpoint | None


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
    heartbeat: Heartbeat | None = None

    def liveness(self, now: float | None = None) -> str:
        """``alive``, ``stale: last seen 42 s ago`` (no heartbeat for ``STALE_AFTER`` intervals),
        or ``no heartbeat``."""
        if self.heartbeat is None:
            return "no heartbeat"
        if self.heartbeat.stale(now):
            return f"stale: last seen {self.heartbeat.age(now):.0f} s ago"
        return "alive"

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
class _Host:
    """A published host graph: the graph (None when only read back as a pointer), its tree's root,
    and the text of each of its pieces in the tree (namespaces, then devices: ``TreeWriter.references``)."""

    graph: HostGraph | None
    root: Blob
    pieces: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class _Published:
    """What this controller last published: the spec key's revision then, the sweep key's revision
    its knowledge of stored blobs is valid at, the spec's tree, each host, and the live blobs."""

    revision: int
    sweep: int
    spec: Blob
    hosts: dict[str, _Host]
    live: Live


class Controller:
    """The control-plane service over one store (see the module docstring)."""

    def __init__(self, store: Store, *, retries: int = 5) -> None:
        self.store = store
        self.retries = retries
        self._lock = threading.Lock()
        self._published: _Published | None = None
        self._engine: Engine | None = None  # compiles what ``_published`` holds, incrementally
        self._literals: dict[int, tuple[object, bytes]] = {}  # the last publish's texts of shared list items
        self._applied: Applied | None = None  # the spec object this controller last published (shares items with the engine's)

    # --- the spec ---------------------------------------------------------------------------------

    def apply(self, spec: Spec, expected_revision: int | None = None) -> ApplyResult:
        """Publish ``spec`` atomically; see the module docstring."""
        with self._lock:
            for _ in range(self.retries):
                try:
                    return self._publish(spec, expected_revision)
                except Conflict:
                    if expected_revision is not None and self._revision(SPEC_KEY) != expected_revision:
                        raise StaleSpec(expected_revision, self._revision(SPEC_KEY)) from None
            raise StaleSpec(expected_revision or 0, self._revision(SPEC_KEY))

    def apply_text(self, text: str, filename: str, expected_revision: int | None = None) -> ApplyResult:
        """Validate spec text exactly as ``netvirt validate`` does (``SpecError``), then ``apply``."""
        return self.apply(loads(text, filename), expected_revision)

    def _publish(self, spec: Spec, expected_revision: int | None) -> ApplyResult:
        current = self.store.get(SPEC_KEY)
        revision = current.mod_revision if current else 0
        if expected_revision is not None and expected_revision != revision:
            raise StaleSpec(expected_revision, revision)
        try:
            return self._publish_over(revision, spec)
        except BaseException:
            self._engine = None  # it (and the live blobs) may be ahead of the store: start over next time
            raise

    def _publish_over(self, revision: int, spec: Spec) -> ApplyResult:
        known = self._published
        if self._engine is not None and known is not None and known.revision == revision:
            before, live, sweep, stored, old_spec = known.hosts, known.live, known.sweep, {}, known.spec
            touched = set(self._engine.update(spec))  # incremental: only the hosts that changed
            incremental = True
        else:  # what the store holds: every blob's chunks, the pointers; compile everything
            sweep = self._revision(SWEEP_KEY)
            stored = stored_blobs(self.store)
            pointers = {host_of(e.key): _pointed(e.value) for e in self.store.list(DESIRED).entries}
            before = {host: _Host(None, blob) for host, blob in pointers.items() if blob is not None}
            spec_entry = self.store.get(SPEC_KEY)
            old_spec, live = _pointed(spec_entry.value) if spec_entry else None, Live()
            self._engine = Engine(spec)
            touched = set(self._engine.graphs)
            incremental = False
        graphs = self._engine.graphs
        writer = TreeWriter(self._literals)
        after: dict[str, _Host] = {}
        for host, graph in graphs.items():
            old = before.get(host)
            if old is not None and old.graph is not None and (host not in touched or old.graph == graph):
                after[host] = old if old.graph is graph else _Host(graph, old.root, old.pieces)
                continue
            if old is not None and old.graph is not None:
                writer.reuse((*old.graph.namespaces, *old.graph.devices), old.pieces)  # unchanged pieces are not encoded again
            after[host] = _Host(graph, writer.graph(graph), writer.references(graph))
        spec_blob = writer.spec(spec)
        changed = tuple(sorted(h for h, new in after.items() if h not in before or before[h].root != new.root))
        removed = tuple(sorted(before.keys() - graphs.keys()))
        unchanged = tuple(sorted(graphs.keys() - set(changed)))
        # which blobs come into use (stored first), and which fall out of use (swept last)
        roots = [spec_blob] + [after[h].root for h in (changed if incremental else after)]
        came = [blob for root in roots for blob in live.add(root.id, writer.blobs)]
        if incremental:
            for old_root in (old_spec, *(before[h].root for h in (*changed, *removed) if h in before)):
                live.drop(old_root.id)
        else:
            came = [(blob, value) for blob, value in came if len(stored.get(blob.id, ())) != len(blob.keys())]
        if old_spec == spec_blob and not changed and not removed and not came:
            self._published = _Published(revision, sweep, spec_blob, after, live)
            self._applied = Applied(spec, revision)
            return ApplyResult(revision, (), (), unchanged, incremental)
        # 1. the blobs, in as many transactions as they need: nobody reads them before step 2
        write_blobs(self.store, came)
        # 2. the spec version, published in one transaction
        operations: list[Operation] = [Put(SPEC_KEY, spec_blob.pointer())]
        operations += [Put(desired_key(host), after[host].root.pointer()) for host in changed]
        operations += [Delete(desired_key(host)) for host in removed]
        published = self.store.txn(operations, [Compare(SPEC_KEY, revision), Compare(SWEEP_KEY, sweep)])
        # 3. what nothing uses any more
        if incremental:
            unused = [key for blob in live.dropped for key in blob.keys()]
        else:
            unused = [key for blob, keys in stored.items() if blob not in live for key in keys]
        live.dropped.clear()
        self._literals = writer.literals()
        self._published = _Published(published, self._sweep(published, sweep, unused), spec_blob, after, live)
        self._applied = Applied(spec, published)
        return ApplyResult(published, changed, removed, unchanged, incremental)

    def _sweep(self, spec_revision: int, sweep: int, keys: list[str]) -> int:
        """Delete the blob chunk ``keys``, each transaction guarded by the spec key's revision
        ``spec_revision`` (a newer version may use them again) and the sweep key's revision
        ``sweep``, which it advances (the new revision is returned). Best effort: what it cannot
        delete now stays until this controller starts over, as it then does."""
        guard = [Compare(SPEC_KEY, spec_revision)]
        try:
            for at in range(0, len(keys), BATCH_OPERATIONS - 1):
                batch = [Delete(key) for key in keys[at : at + BATCH_OPERATIONS - 1]]
                sweep = self.store.txn([*batch, Put(SWEEP_KEY, b"")], [*guard, Compare(SWEEP_KEY, sweep)])
        except StoreError as error:  # the version is published; only the clean-up waits
            self._engine = None
            if not isinstance(error, Conflict):
                log.warning("controller: sweeping unused blobs failed (%s); it is retried later", error)
        return sweep

    def current(self) -> Applied | None:
        """The applied spec and its revision, or None."""
        for _ in range(self.retries):
            entry = self.store.get(SPEC_KEY)
            if entry is None:
                return None
            known = self._applied
            if known is not None and known.revision == entry.mod_revision:
                return known  # the object this controller published (no decoding; items shared with the engine)
            blob = _pointed(entry.value)
            data = read_tree(self.store, blob) if blob is not None else None
            if data is not None:
                return Applied(loads(data.decode(), "store.json"), entry.mod_revision)
        raise StoreError(f"store {self.store.url}: the spec at {SPEC_KEY} points to data that is not there")

    # --- one endpoint -----------------------------------------------------------------------------

    def add_endpoint(self, text: str, filename: str, expected_revision: int | None = None) -> EndpointResult:
        """Add the endpoint written in ``text`` to the applied spec (``spec.edit.with_endpoint``:
        ``EndpointExists``, ``SpecError`` located in ``text``) and publish it like ``apply``."""
        return self._edit(lambda spec: with_endpoint(spec, text, filename), expected_revision)

    def change_endpoint(self, name: str, text: str, filename: str, expected_revision: int | None = None) -> EndpointResult:
        """Replace endpoint ``name`` by the one in ``text`` (``UnknownEndpoint``; the name in
        ``text`` must be ``name``, ``SpecError`` otherwise) and publish."""
        return self._edit(lambda spec: with_endpoint(spec, text, filename, change=name), expected_revision)

    def remove_endpoint(self, name: str, expected_revision: int | None = None) -> EndpointResult:
        """Remove endpoint ``name`` (``UnknownEndpoint``; ``SpecError`` when something refers to it)."""
        return self._edit(lambda spec: without_endpoint(spec, name), expected_revision, removed=name)

    def _edit(self, edit: Callable[[Spec], Spec], expected_revision: int | None, removed: str = "") -> EndpointResult:
        """Read the applied spec, edit it, publish it guarded by the revision read; a concurrent
        apply makes it start over (unless the caller gave ``expected_revision``: ``StaleSpec``)."""
        for _ in range(self.retries):
            applied = self.current()
            revision = applied.revision if applied else 0
            if expected_revision is not None and expected_revision != revision:
                raise StaleSpec(expected_revision, revision)
            if applied is None:
                raise UnknownEndpoint(removed) if removed else NoSpec()
            edited = edit(applied.spec)
            try:
                result = self.apply(edited, revision)
            except StaleSpec:
                if expected_revision is not None:
                    raise
                continue
            before = {id(endpoint) for endpoint in applied.spec.endpoints}
            new = [endpoint for endpoint in edited.endpoints if id(endpoint) not in before]  # the edited one, by identity
            return EndpointResult(result, new[0] if new else None)
        raise StaleSpec(expected_revision or 0, self._revision(SPEC_KEY))

    def delete(self, expected_revision: int | None = None) -> ApplyResult:
        """Remove the spec and every desired graph in one transaction (agents then tear down)."""
        with self._lock:
            revision = self._revision(SPEC_KEY)
            if expected_revision is not None and expected_revision != revision:
                raise StaleSpec(expected_revision, revision)
            hosts = tuple(sorted(host_of(e.key) for e in self.store.list(DESIRED, keys_only=True).entries))
            if revision == 0 and not hosts:
                return ApplyResult(self.store.revision(), (), (), ())
            operations: list[Operation] = [Delete(SPEC_KEY), *(Delete(desired_key(host)) for host in hosts)]
            try:
                published = self.store.txn(operations, [Compare(SPEC_KEY, revision)])
            except Conflict:
                raise StaleSpec(revision, self._revision(SPEC_KEY)) from None
            self._published, self._engine = None, None
            self._sweep(0, self._revision(SWEEP_KEY), [key for keys in stored_blobs(self.store).values() for key in keys])
            return ApplyResult(published, (), hosts, ())

    def _revision(self, key: str) -> int:
        """The ``mod_revision`` of ``key`` (0: absent)."""
        entry = self.store.get(key)
        return entry.mod_revision if entry else 0

    # --- the hosts --------------------------------------------------------------------------------

    def hosts(self) -> list[HostState]:
        """Every host that has a desired graph or an agent report, sorted by name."""
        desired = {host_of(e.key): e.mod_revision for e in self.store.list(DESIRED, keys_only=True).entries}
        reports = {host_of(e.key): AgentStatus.from_json(e.value) for e in self.store.list(STATUS).entries}
        beats = {host_of(e.key): Heartbeat.from_json(e.value) for e in self.store.list(HEARTBEAT).entries}
        return [
            HostState(host, desired.get(host, 0), reports.get(host), beats.get(host))
            for host in sorted(desired.keys() | reports.keys())
        ]

    def host(self, name: str) -> HostDetail | None:
        """One host's detail, or None if the store knows nothing about it."""
        desired, want = _read_graph(self.store, desired_key(name))
        realized, have = _read_graph(self.store, realized_key(name), realized_blobs(name))
        status = self.store.get(status_key(name))
        heartbeat = self.store.get(heartbeat_key(name))
        if desired is None and realized is None and status is None:
            return None
        state = HostState(
            name,
            desired.mod_revision if desired else 0,
            AgentStatus.from_json(status.value) if status else None,
            Heartbeat.from_json(heartbeat.value) if heartbeat else None,
        )
        changes = [c for c in diff(have or HostGraph(host=name), want or HostGraph(host=name)).changes
                   if not _socket(c.new) and not _socket(c.old)]  # applications: kernel agents realize no sockets
        return HostDetail(state, want, have, tuple(f"{c.op} {c.kind} {c.key}" for c in changes))

    def forget_host(self, name: str) -> bool:
        """Remove what the store keeps about ``name`` (agent status, heartbeat, realized graph) once
        the applied spec no longer has it; False if nothing was kept. ``HostInSpec`` while the
        applied spec still has the host (its agent would only report again)."""
        if self.store.get(desired_key(name)) is not None:
            raise HostInSpec(f"host {name!r} is in the applied spec; remove it from the spec (apply) first")
        keys = [status_key(name), heartbeat_key(name), realized_key(name)]
        keys += [e.key for e in self.store.list(realized_blobs(name), keys_only=True).entries]
        kept = [key for key in keys if self.store.get(key) is not None]
        for key in kept:
            self.store.delete(key)
        return bool(kept)

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


class HostInSpec(ValueError):
    """A host cannot be forgotten while the applied spec has it."""


def _socket(obj: object) -> bool:
    return getattr(obj, "kind", None) is DeviceKind.SOCKET


def _read_graph(store: Store, key: str, space: str = BLOBS) -> tuple[Entry | None, HostGraph | None]:
    """The pointer at ``key`` and the graph it names (None: no pointer, or its tree is gone or
    damaged). A tree swept while it was read — a newer version replaced it (the controller's
    publish, an agent's report) — is read again from the newer pointer."""
    pointer = store.get(key)
    while pointer is not None:
        blob = _pointed(pointer.value)
        data = read_tree(store, blob, space) if blob else None
        if data is not None:
            return pointer, from_json(HostGraph, data)
        again = store.get(key)
        if again is None or again.mod_revision == pointer.mod_revision:
            return again, None
        pointer = again
    return None, None


def _pointed(value: bytes) -> Blob | None:
    """The blob a stored pointer names; None if it is damaged (then it counts as changed)."""
    try:
        return Blob.pointed(value)
    except ValueError:
        return None


BackendChoice = str | Callable[[str], Backend]
"""A registered backend name (``dataplane.registry``) or a factory making one backend per host name."""


class Embedded:
    """A controller, its store and one in-process agent per host (the single-machine path)."""

    def __init__(
        self, store: Store, backend: BackendChoice, *, resync_interval: float = 30.0, heartbeat_interval: float = 10.0
    ) -> None:
        self.store = store
        self.controller = Controller(store)
        self._make = (lambda host: registry.make(backend, host)) if isinstance(backend, str) else backend
        self.resync_interval = resync_interval
        self.heartbeat_interval = heartbeat_interval
        self.agents: dict[str, AgentThread] = {}

    def apply(self, spec: Spec) -> ApplyResult:
        """Publish ``spec`` and make sure every host of it has a running agent."""
        result = self.controller.apply(spec)
        for host in spec.hosts:
            if host.name not in self.agents:
                agent = Agent(
                    host.name, self.store, self._make(host.name),
                    resync_interval=self.resync_interval, heartbeat_interval=self.heartbeat_interval,
                )
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
