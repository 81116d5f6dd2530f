"""Control-plane publish benchmark: one JSON line — what one port add costs after the compile.

The 500 hosts x 50 ports spec of ``bench/control.py`` (``generate``) is applied to a ``Controller``
on the embedded store (an SQLite file in a temporary directory). Then one port is added and
removed again, ``--runs`` times; for each apply, until it returns:

- ``apply_s``: wall time of ``Controller.apply`` (compile, encode, store, sweep);
- ``compile_ms``: the incremental compile alone (``Engine.update`` of the same edit on a second
  engine, so the controller is not instrumented);
- ``store_s``: wall time spent inside store calls (a counting wrapper around the real store);
- ``written_bytes`` / ``written_keys``: the values put into the store (keys and values), and how many;
- the rest (``apply_s - store_s - compile``) is encoding, hashing and bookkeeping.
The initial apply (every host) is reported too, and the store's size afterwards. Medians of the
runs; CPU seconds beside wall seconds (the machine may be shared: ``load_average``).

    .venv/bin/python bench/publish.py [--hosts 500] [--ports-per-host 50] [--runs 3]
"""

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from control import new_port  # bench/control.py: the same port add

from netvirt.control.compile import Engine
from netvirt.control.controller import Controller
from netvirt.control.store import Compare, Entry, Listing, Operation, Put, Store, Watch, open_store
from netvirt.management.spec import generate


class CountingStore(Store):
    """The real store, with the bytes and keys put into it and the wall time spent in it counted."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.url = inner, inner.url
        self.written_bytes = self.written_keys = 0
        self.seconds = 0.0

    def _timed(self, call, *args):
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def get(self, key: str) -> Entry | None:
        return self._timed(self.inner.get, key)

    def list(self, prefix: str, keys_only: bool = False) -> Listing:
        return self._timed(self.inner.list, prefix, keys_only)

    def txn(self, operations: Sequence[Operation], compares: Sequence[Compare] = ()) -> int:
        puts = [op for op in operations if isinstance(op, Put)]
        self.written_keys += len(puts)
        self.written_bytes += sum(len(op.key) + len(op.value) for op in puts)
        return self._timed(self.inner.txn, operations, compares)

    def revision(self) -> int:
        return self._timed(self.inner.revision)

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return self.inner.watch(prefix, start_revision)

    def compact(self, revision: int) -> None:
        self.inner.compact(revision)

    def close(self) -> None:
        self.inner.close()

    def reset(self) -> None:
        self.written_bytes = self.written_keys = 0
        self.seconds = 0.0


def measured_apply(controller: Controller, store: CountingStore, spec) -> dict[str, float]:
    store.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    result = controller.apply(spec)
    return {
        "apply_s": time.perf_counter() - wall,
        "apply_cpu_s": time.process_time() - cpu,
        "store_s": store.seconds,
        "written_bytes": store.written_bytes,
        "written_keys": store.written_keys,
        "hosts_changed": len(result.changed),
    }


def timed_update(engine: Engine, spec) -> float:
    started = time.perf_counter()
    engine.update(spec)
    return time.perf_counter() - started


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--ports-per-host", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    spec = generate(args.hosts, args.ports_per_host)
    with tempfile.TemporaryDirectory(prefix="nvt-bench-publish-") as scratch:
        path = Path(scratch) / "store.db"
        store = CountingStore(open_store(f"sqlite://{path}"))
        controller = Controller(store)
        initial = measured_apply(controller, store, spec)
        engine = Engine(spec)  # the same edits on a second engine: the compile's share
        gc.collect()
        gc.freeze()  # as bench/control.py: a long-lived controller's graphs are not re-scanned
        adds, deletes = [], []
        for number in range(args.runs):
            grown = spec.model_copy(update={"endpoints": (*spec.endpoints, new_port(spec, number))})
            adds.append(measured_apply(controller, store, grown) | {"compile_ms": timed_update(engine, grown) * 1000})
            deletes.append(measured_apply(controller, store, spec) | {"compile_ms": timed_update(engine, spec) * 1000})
        stored = store.inner.list("/netvirt/")
        result = {
            "bench": "publish",
            "hosts": args.hosts,
            "ports": len(spec.endpoints),
            "store": "sqlite (file)",
            "initial": rounded(initial),
            "port_add": rounded(median_of(adds)),
            "port_delete": rounded(median_of(deletes)),
            "stored_keys": len(stored.entries),
            "stored_bytes": sum(len(e.key) + len(e.value) for e in stored.entries),
            "store_file_bytes": sum(p.stat().st_size for p in Path(scratch).iterdir()),
            "load_average": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
        }
        store.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
