"""The node agent: keeps one host's data plane equal to its desired graph, and says how it went.

Contract: ``Agent(host, store, backend).run(stop)`` loops until ``stop`` is set:
1. full resync — read the host's desired graph (``/netvirt/desired/<host>``) and reconcile;
2. follow — watch that key and reconcile on every change (coalescing bursts); every
   ``resync_interval`` seconds go back to 1 (which also repairs drift in the data plane).
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
from collections.abc import Callable
from typing import TypeVar

from netvirt.control.state import AgentState, AgentStatus, Blob, desired_key, realized_key, status_key
from netvirt.control.store import EventType, Put, Store, StoreError, Watch
from netvirt.dataplane.api import Backend, plan
from netvirt.graph import GraphError, HostGraph, from_json, to_json

log = logging.getLogger("netvirt.agent")
T = TypeVar("T")

BACKENDS = ("sim", "linux")


def make_backend(name: str, host: str) -> Backend:
    """The data plane ``name`` ("sim" or "linux") for ``host``; ValueError for an unknown name."""
    if name == "sim":
        from netvirt.dataplane.sim.backend import SimBackend

        return SimBackend(host)
    if name == "linux":
        from netvirt.dataplane.linux.backend import LinuxBackend

        return LinuxBackend(host)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


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
        backoff: Backoff | None = None,
    ) -> None:
        self.host = host
        self.store = store
        self.backend = backend
        self.resync_interval = resync_interval
        self.backoff = backoff or Backoff()
        self.identity = f"{os.getpid()}@{socket.gethostname()}"
        self.status: AgentStatus | None = None  # the last report written
        self._realized_written: bytes | None = None
        self._good_revision = 0  # desired revision the data plane realizes
        self._watch: Watch | None = None

    def wake(self) -> None:
        """Interrupt a blocked watch (call after setting the stop event of ``run``)."""
        if self._watch is not None:
            self._watch.close()

    # --- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Keep the host converged until ``stop`` is set."""
        while not stop.is_set():
            try:
                start = self.resync()
                self.backoff.reset()
                self.follow(start, stop)
            except (StoreError, ApplyCrashed) as error:
                delay = self.backoff.next()
                log.warning("agent %s: %s; retrying in %.2fs (data plane left as it is)", self.host, error, delay)
                stop.wait(delay)

    def resync(self) -> int:
        """Reconcile with the desired graph as stored now; the revision to watch from."""
        listing = self.store.list(desired_key(self.host))
        entry = next((e for e in listing.entries if e.key == desired_key(self.host)), None)
        self.published(entry.value if entry else None, entry.mod_revision if entry else 0)
        return listing.revision + 1

    def follow(self, start: int, stop: threading.Event) -> None:
        """Reconcile every change of the desired key until ``stop`` or the next resync is due."""
        key = desired_key(self.host)
        until = time.monotonic() + self.resync_interval
        with self.store.watch(key, start) as watch:
            self._watch = watch
            while not stop.is_set() and (remaining := until - time.monotonic()) > 0:
                mine = [e for e in watch.next(remaining) if e.key == key]
                if mine:
                    last = mine[-1]  # only the newest desired state matters
                    self.published(last.value if last.type is EventType.PUT else None, last.revision)

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
        graph = blob.read(self.store)
        if graph is None:
            log.info("agent %s: desired revision %d was superseded before it could be read", self.host, at)
            return None
        return self.reconcile(graph, at)

    def reconcile(self, desired: bytes | None, at: int) -> AgentStatus:
        """Make the data plane match the ``desired`` graph's JSON of revision ``at`` (None: nothing
        is desired) and report; raises StoreError or ApplyCrashed for the loop to retry."""
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
        return self.report(AgentState.CONVERGED, at, (), known=(graph, desired))

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
        known: tuple[HostGraph, bytes] | None = None,
    ) -> AgentStatus:
        """Write the realized graph and the status, in one transaction, if either changed.
        ``known``: a graph and its JSON, reused when the backend reads back exactly that graph."""
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
        realized = known[1] if known is not None and read_back == known[0] else to_json(read_back).encode()
        writes = []
        if realized != self._realized_written:
            writes.append(Put(realized_key(self.host), realized))
        if not status.same_report(self.status):
            writes.append(Put(status_key(self.host), status.to_json()))
        else:
            status = self.status  # type: ignore[assignment]  # same_report implies not None
        if writes:
            self.store.txn(writes)
            self._realized_written = realized
            self.status = status
            if state is AgentState.FAILED:
                log.warning("agent %s: revision %d failed: %s", self.host, desired_revision, "; ".join(errors))
        return status


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
