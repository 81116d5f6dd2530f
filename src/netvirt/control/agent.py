"""The node agent: keeps one host's data plane equal to its desired graph, and says how it went.

Contract: ``Agent(host, store, backend).run(stop)`` loops until ``stop`` is set:
1. full resync — read the host's desired graph (``/netvirt/desired/<host>``) and reconcile;
2. follow — watch that key and reconcile on every change (coalescing bursts); every
   ``resync_interval`` seconds go back to 1 (which also repairs drift in the data plane).
Meanwhile it writes a ``Heartbeat`` (``/netvirt/heartbeat/<host>``) every ``heartbeat_interval``
seconds, so readers can tell a live agent from one that stopped (``Heartbeat.stale``).
Reconcile is idempotent: ``plan`` first — a graph the backend cannot realise is reported as
``failed`` and the data plane keeps its last good state; otherwise ``backend.apply`` (or
``teardown`` when nothing is desired), then the realized graph and an ``AgentStatus`` are written
back in one transaction (only when they changed). A store outage or a crash inside ``apply`` leaves
the data plane as it is and retries from 1 with exponential backoff, so a restarted agent — or one
whose previous apply died half-way — converges by the same path.
"""

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from netvirt.control.state import (
    BATCH_OPERATIONS,
    BLOBS,
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
    stored_blobs,
    write_blobs,
)
from netvirt.control.store import Delete, EventType, Put, Store, StoreError, Watch
from netvirt.dataplane.api import Backend, plan
from netvirt.graph import GraphError, HostGraph, from_json

log = logging.getLogger("netvirt.agent")
T = TypeVar("T")

class Backoff:
    """Exponential delays from ``first`` to ``limit`` seconds, with +-20% jitter; ``reset`` on success."""

    def __init__(self, first: float = 0.1, limit: float = 5.0) -> None:
        self.first, self.limit = first, limit
        self.current = first

    def next(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 2, self.limit)
        return delay

    def reset(self) -> None:
        self.current = self.first


class ApplyCrashed(Exception):
    """The backend raised inside ``apply``/``teardown``: the data plane may be half-way; retry."""


class Agent:
    """One host's agent (see the module docstring)."""

    def __init__(
        self,
        host: str,
        store: Store,
        backend: Backend,
        *,
        resync_interval: float = 30.0,
        heartbeat_interval: float = 10.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.backend = backend
        self.resync_interval = resync_interval
        self.heartbeat_interval = heartbeat_interval
        self.backoff = backoff or Backoff()
        self.identity = f"{os.getpid()}@{socket.gethostname()}"
        self.status: AgentStatus | None = None  # the last report written
        self._realized_written: Blob | None = None  # the root of the realized tree last written
        self._realized_blobs: dict[str, list[str]] | None = None  # blobs in our realized space -> their chunk keys
        self._desired_blobs: dict[str, bytes] = {}  # the blobs of the desired tree last read
        self._good_revision = 0  # desired revision the data plane realizes
        self._watch: Watch | None = None

    def wake(self) -> None:
        """Interrupt a blocked watch (call after setting the stop event of ``run``)."""
        if self._watch is not None:
            self._watch.close()

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Keep the host converged until ``stop`` is set, then deregister (delete the heartbeat:
        readers see no live agent at once, not after three missed beats)."""
        while not stop.is_set():
            try:
                self.beat()
                start = self.resync()
                self.backoff.reset()
                self.follow(start, stop)
            except (StoreError, ApplyCrashed) as error:
                delay = self.backoff.next()
                log.warning("agent %s: %s; retrying in %.2fs (data plane left as it is)", self.host, error, delay)
                stop.wait(delay)
        try:
            self.store.delete(heartbeat_key(self.host))
        except StoreError as error:
            log.warning("agent %s: could not deregister (%s); the heartbeat goes stale instead", self.host, error)

    def resync(self) -> int:
        """Reconcile with the desired graph as stored now, converging the whole data plane (which
        repairs drift); the revision to watch from."""
        self.backend.forget()
        listing = self.store.list(desired_key(self.host))
        entry = next((e for e in listing.entries if e.key == desired_key(self.host)), None)
        self.published(entry.value if entry else None, entry.mod_revision if entry else 0)
        return listing.revision + 1

    def follow(self, start: int, stop: threading.Event) -> None:
        """Reconcile every change of the desired key until ``stop`` or the next resync is due;
        ``beat`` every ``heartbeat_interval`` seconds meanwhile."""
        key = desired_key(self.host)
        now = time.monotonic()
        until, beat = now + self.resync_interval, now + self.heartbeat_interval
        with self.store.watch(key, start) as watch:
            self._watch = watch
            while not stop.is_set() and (remaining := until - (now := time.monotonic())) > 0:
                if now >= beat:
                    self.beat()
                    beat = now + self.heartbeat_interval
                mine = [e for e in watch.next(min(remaining, beat - now)) if e.key == key]
                if mine:
                    last = mine[-1]  # only the newest desired state matters
                    self.published(last.value if last.type is EventType.PUT else None, last.revision)

    def beat(self) -> None:
        """Say this agent is alive: write its ``Heartbeat`` (now, and the interval it keeps)."""
        heartbeat = Heartbeat(agent=self.identity, at=time.time(), interval=self.heartbeat_interval)
        self.store.put(heartbeat_key(self.host), heartbeat.to_json())

    # --- one reconcile ----------------------------------------------------------------------------

    def published(self, pointer: bytes | None, at: int) -> AgentStatus | None:
        """Reconcile with the desired key's value ``pointer`` of revision ``at`` (None: deleted).

        None when the graph it names is gone: a newer version replaced it, and its event follows."""
        if pointer is None:
            return self.reconcile(None, 0)
        try:
            blob = Blob.pointed(pointer)
        except ValueError as error:
            return self.report(AgentState.FAILED, at, (f"desired state at revision {at} is unreadable: {error}",))
        graph = read_tree(self.store, blob, BLOBS, self._desired_blobs)
        if graph is None:
            log.info("agent %s: desired revision %d was superseded before it could be read", self.host, at)
            return None
        return self.reconcile(graph, at, (blob, self._desired_blobs))

    def reconcile(self, desired: bytes | None, at: int, tree: tuple[Blob, dict[str, bytes]] | None = None) -> AgentStatus:
        """Make the data plane match the ``desired`` graph's JSON of revision ``at`` (None: nothing
        is desired) and report; raises StoreError or ApplyCrashed for the loop to retry. ``tree``:
        the root and blobs ``desired`` was assembled from, reused for the realized graph when equal."""
        if desired is None:
            self._guarded(self.backend.teardown, 0)
            self._good_revision = 0
            return self.report(AgentState.IDLE, 0, ())
        try:
            graph = from_json(HostGraph, desired)
        except GraphError as error:
            return self.report(AgentState.FAILED, at, (f"desired graph at revision {at} is unreadable: {error}",))
        if graph.host != self.host:
            return self.report(AgentState.FAILED, at, (f"desired graph is for host {graph.host!r}",))
        problems = plan(graph, self.backend.capabilities())
        if problems:
            return self.report(AgentState.FAILED, at, tuple(map(str, problems)))
        result = self._guarded(lambda: self.backend.apply(graph), at)
        if not result.ok:
            return self.report(AgentState.FAILED, at, tuple(map(str, result.errors)))
        if result.created or result.changed or result.deleted:
            log.info(
                "agent %s: realized revision %d (+%d ~%d -%d)",
                self.host, at, result.created, result.changed, result.deleted,
            )
        self._good_revision = at
        return self.report(AgentState.CONVERGED, at, (), known=(graph, *tree) if tree else None)

    def _guarded(self, action: Callable[[], T], at: int) -> T:
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - any backend failure: report, retry from a resync
            message = f"backend {self.backend.name} failed: {type(error).__name__}: {error}"
            try:
                self.report(AgentState.FAILED, at, (message,))
            except StoreError:
                pass  # the retry will report again
            raise ApplyCrashed(message) from error

    def report(
        self,
        state: AgentState,
        desired_revision: int,
        errors: tuple[str, ...],
        known: tuple[HostGraph, Blob, dict[str, bytes]] | None = None,
    ) -> AgentStatus:
        """Write the realized graph and the status, in one transaction, if either changed.
        ``known``: a graph and its tree (root, blobs), reused when the backend reads back exactly
        that graph. The realized graph is a tree in the agent's own space (``realized_blobs``):
        blobs first, then the pointer with the status, then the blobs nothing uses any more."""
        status = AgentStatus(
            host=self.host,
            backend=self.backend.name,
            state=state,
            desired_revision=desired_revision,
            realized_revision=self._good_revision,
            errors=errors,
            agent=self.identity,
            since=time.time(),
        )
        read_back = self.backend.realized()
        if known is not None and read_back == known[0]:
            realized, blobs = known[1], known[2]
        else:
            writer = TreeWriter()
            realized, blobs = writer.graph(read_back), writer.blobs
        writes = []
        if realized != self._realized_written:
            self._store_realized(blobs)
            writes.append(Put(realized_key(self.host), realized.pointer()))
        if not status.same_report(self.status):
            writes.append(Put(status_key(self.host), status.to_json()))
        else:
            status = self.status  # type: ignore[assignment]  # same_report implies not None
        if writes:
            self.store.txn(writes)
            if realized != self._realized_written:
                self._realized_written = realized
                self._sweep_realized(blobs.keys())
            self.status = status
            if state is AgentState.FAILED:
                log.warning("agent %s: revision %d failed: %s", self.host, desired_revision, "; ".join(errors))
        return status

    def _store_realized(self, blobs: dict[str, bytes]) -> None:
        """Write the blobs of a realized tree that our space does not hold yet."""
        space = realized_blobs(self.host)
        if self._realized_blobs is None:
            self._realized_blobs = stored_blobs(self.store, space)
        new = [(Blob(blob, len(value)), value) for blob, value in blobs.items()]
        new = [(blob, value) for blob, value in new if len(self._realized_blobs.get(blob.id, ())) != len(blob.keys())]
        write_blobs(self.store, new, space)
        self._realized_blobs.update((blob.id, blob.keys(space)) for blob, _ in new)

    def _sweep_realized(self, used: Iterable[str]) -> None:
        """Delete the blobs of our space that the realized tree just written does not use."""
        assert self._realized_blobs is not None
        keep = set(used)
        unused = [blob for blob in self._realized_blobs if blob not in keep]
        keys = [key for blob in unused for key in self._realized_blobs[blob]]
        for at in range(0, len(keys), BATCH_OPERATIONS):
            self.store.txn([Delete(key) for key in keys[at : at + BATCH_OPERATIONS]])
        for blob in unused:
            del self._realized_blobs[blob]


class AgentThread:
    """An agent running in a thread of this process (the embedded path); ``stop`` ends it."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=agent.run, args=(self._stop,), name=f"agent {agent.host}", daemon=True)

    def start(self) -> "AgentThread":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.signal()
        self._thread.join(timeout)

    def signal(self) -> None:
        """Ask the agent to stop without waiting for it (then ``stop`` to wait)."""
        self._stop.set()
        self.agent.wake()
