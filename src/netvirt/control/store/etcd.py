"""The etcd v3 store, spoken over etcd's JSON gRPC gateway (HTTP/1.1 + JSON, no gRPC dependency).

URL: ``etcd://HOST:PORT`` (plain HTTP, e.g. ``etcd://127.0.0.1:2379``). Endpoints used:
``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/kv/compaction`` and the streaming ``/v3/watch``; keys and
values travel base64-encoded, 64-bit numbers as strings. A failed compare is explained by reading
the compared keys in the transaction's failure branch, so ``Conflict`` names the key and revisions.
"""

import base64
import json
import queue
import socket
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from netvirt.control.store.base import (
    Compacted,
    Compare,
    Conflict,
    Delete,
    Entry,
    Event,
    EventType,
    LISTS_PER_CALL,
    Listing,
    Operation,
    Store,
    StoreError,
    Unavailable,
    Watch,
    check_txn,
    prefix_end,
)

COMPACTED = "required revision has been compacted"
LIMITS = {
    "too many operations in txn request": " (etcd's --max-txn-ops, default 128, bounds the hosts one apply may change)",
    "request is too large": " (etcd's --max-request-bytes)",
}


class EtcdStore(Store):
    """An etcd v3 cluster member reached at ``etcd://HOST:PORT``."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        address = url.removeprefix("etcd://").rstrip("/")
        if not address or "/" in address:
            raise StoreError(f"store URL {url!r} is not etcd://HOST:PORT")
        self.base = f"http://{address}"
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.base, timeout=timeout)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to the gateway at ``path``; the decoded reply, or a StoreError."""
        try:
            reply = self._http.post(path, json=body)
        except httpx.TransportError as error:
            raise self.unavailable(error) from None
        try:
            data: dict[str, Any] = reply.json()
        except ValueError:
            data = {"error": f"HTTP {reply.status_code}: {reply.text[:200]}"}
        if reply.status_code != 200 or "error" in data:
            message = str(data.get("message") or data.get("error"))
            message += next((hint for known, hint in LIMITS.items() if known in message), "")
            if reply.status_code >= 500 and COMPACTED not in message:
                raise Unavailable(f"store {self.url}: {message}")
            raise StoreError(f"store {self.url}: {message}")
        return data

    def unavailable(self, error: Exception) -> Unavailable:
        return Unavailable(
            f"store {self.url} is unreachable ({type(error).__name__}: {error}); is etcd running there? "
            "(scripts/etcd starts one for tests)"
        )

    def get(self, key: str) -> Entry | None:
        kvs = self.call("/v3/kv/range", {"key": _b64(key.encode())}).get("kvs", [])
        return _entry(kvs[0]) if kvs else None

    def list(self, prefix: str, keys_only: bool = False) -> Listing:
        data = self.call("/v3/kv/range", {**_range(prefix), "keys_only": keys_only})
        return Listing(tuple(_entry(kv) for kv in data.get("kvs", [])), int(data["header"]["revision"]))

    def lists(self, prefixes: Sequence[str]) -> tuple[Listing, ...]:
        found = []
        for at in range(0, len(prefixes), LISTS_PER_CALL):
            batch = prefixes[at : at + LISTS_PER_CALL]
            data = self.call("/v3/kv/txn", {"success": [{"request_range": _range(prefix)} for prefix in batch]})
            revision = int(data["header"]["revision"])
            for reply in data.get("responses", []):
                kvs = reply.get("response_range", {}).get("kvs", [])
                found.append(Listing(tuple(_entry(kv) for kv in kvs), revision))
        return tuple(found)

    def revision(self) -> int:
        data = self.call("/v3/kv/range", {"key": _b64(b"\0"), "count_only": True})
        return int(data["header"]["revision"])

    def txn(self, operations: Sequence[Operation], compares: Sequence[Compare] = ()) -> int:
        check_txn(operations, compares)
        body = {
            "compare": [
                {"key": _b64(c.key.encode()), "target": "MOD", "result": "EQUAL", "mod_revision": str(c.mod_revision)}
                for c in compares
            ],
            "success": [_operation(op) for op in operations],
            "failure": [{"request_range": {"key": _b64(c.key.encode())}} for c in compares],
        }
        data = self.call("/v3/kv/txn", body)
        if compares and not data.get("succeeded", False):
            for compare, reply in zip(compares, data.get("responses", [])):
                kvs = reply.get("response_range", {}).get("kvs", [])
                actual = int(kvs[0]["mod_revision"]) if kvs else 0
                if actual != compare.mod_revision:
                    raise Conflict(compare.key, compare.mod_revision, actual)
            raise StoreError(f"store {self.url}: transaction refused without a failed compare")
        return int(data["header"]["revision"])

    def compact(self, revision: int) -> None:
        try:
            self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except StoreError as error:
            if COMPACTED not in str(error):  # compacting what is already gone is a no-op
                raise

    def watch(self, prefix: str, start_revision: int) -> Watch:
        return _EtcdWatch(self, prefix, max(start_revision, 1))

    def close(self) -> None:
        self._http.close()


class _EtcdWatch(Watch):
    """One streaming ``/v3/watch`` request; a reader thread turns its JSON lines into event batches."""

    def __init__(self, store: EtcdStore, prefix: str, start_revision: int) -> None:
        self.store = store
        self.start_revision = start_revision
        self.batches: queue.Queue[list[Event] | StoreError] = queue.Queue()
        self.created = threading.Event()
        self.closed = False
        self.sock: socket.socket | None = None
        self.http = httpx.Client(base_url=store.base, timeout=httpx.Timeout(store.timeout, read=None))
        body = {"create_request": {**_range(prefix), "start_revision": str(start_revision)}}
        self.reader = threading.Thread(target=self._read, args=(body,), name=f"watch {prefix}", daemon=True)
        self.reader.start()
        if not self.created.wait(store.timeout):
            self.close()
            raise Unavailable(f"store {store.url}: no answer to a watch request within {store.timeout:g}s")
        self._raise_pending_error()

    def _read(self, body: dict[str, Any]) -> None:
        try:
            with self.http.stream("POST", "/v3/watch", json=body) as reply:
                stream = reply.extensions.get("network_stream")
                self.sock = stream.get_extra_info("socket") if stream is not None else None
                for line in reply.iter_lines():
                    if line.strip():
                        self._handle(json.loads(line))
            error: StoreError = Unavailable(f"store {self.store.url}: the watch stream ended")
        except httpx.TransportError as failure:
            error = self.store.unavailable(failure)
        except StoreError as failure:
            error = failure
        except Exception as failure:  # noqa: BLE001 - a closed socket surfaces as anything; report it
            error = Unavailable(f"store {self.store.url}: watch failed ({type(failure).__name__}: {failure})")
        if not self.closed:
            self.batches.put(error)
        self.created.set()

    def _handle(self, message: dict[str, Any]) -> None:
        if "error" in message:
            raise StoreError(f"store {self.store.url}: {message['error'].get('message', message['error'])}")
        result = message.get("result", {})
        if result.get("compact_revision") and result.get("canceled"):
            raise Compacted(self.store.url, self.start_revision, int(result["compact_revision"]))
        if result.get("created"):
            self.created.set()
        events = [
            Event(
                EventType.DELETE if item.get("type") == "DELETE" else EventType.PUT,
                base64.b64decode(item["kv"]["key"]).decode(),
                base64.b64decode(item["kv"].get("value", "")),
                int(item["kv"]["mod_revision"]),
            )
            for item in result.get("events", [])
        ]
        if events:
            self.batches.put(events)

    def _raise_pending_error(self) -> None:
        try:
            item = self.batches.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, StoreError):
            self.close()
            raise item
        self.batches.put(item)  # pragma: no cover - events cannot precede "created"

    def next(self, timeout: float) -> list[Event]:
        if self.closed:
            return []
        try:
            item = self.batches.get(timeout=timeout)
        except queue.Empty:
            return []
        if isinstance(item, StoreError):
            self.close()
            raise item
        return item

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.batches.put([])  # wakes a blocked next()
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader blocked in recv
            except OSError:
                pass
        self.http.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _range(prefix: str) -> dict[str, str]:
    low = prefix.encode() or b"\0"
    return {"key": _b64(low), "range_end": _b64(prefix_end(prefix.encode()))}


def _operation(operation: Operation) -> dict[str, Any]:
    key = _b64(operation.key.encode())
    if isinstance(operation, Delete):
        return {"request_delete_range": {"key": key}}
    return {"request_put": {"key": key, "value": _b64(operation.value)}}


def _entry(kv: dict[str, str]) -> Entry:
    return Entry(
        key=base64.b64decode(kv["key"]).decode(),
        value=base64.b64decode(kv.get("value", "")),
        create_revision=int(kv["create_revision"]),
        mod_revision=int(kv["mod_revision"]),
        version=int(kv["version"]),
    )
