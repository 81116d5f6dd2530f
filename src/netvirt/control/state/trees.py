"""Trees: a large JSON text (a graph's ``to_json``, the spec's data) cut into blobs.

Contract: ``TreeWriter`` cuts a graph's ``to_json`` text so that each namespace and device is its
own blob, and every list longer than ``SPLIT`` items is cut into chunks at content-defined places
(like git trees and restic chunks): equal pieces on many hosts are one blob, stored once, and one
more item changes one chunk. The blobs reference each other with ``blobs.REF``; ``blobs.read_tree``
assembles the text again.
"""

import dataclasses
import functools
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

from netvirt.control.state.blobs import REF, Blob
from netvirt.graph import Chunks, Device, Namespace
from netvirt.graph.codec import members, to_data
from netvirt.management.spec import Spec, as_data, item_data

SPLIT = 64
"""A list with more items than this is cut into chunks (of chunks, ...) until each list has at most this many."""
AVERAGE = 32
"""Chunks end after an item whose CRC-32 is a multiple of this (so about this many items), or at 4x."""
PIECES = (Namespace, Device)
"""Graph objects stored as blobs of their own."""
SEQUENCES = (tuple, Chunks)
"""What graph objects hold lists in (encoded as JSON lists)."""


class TreeWriter:
    """Cuts JSON texts into trees of blobs (module docstring): ``graph(obj)`` for a graph object (its
    ``to_json`` text), ``data(value)`` for JSON data (``json.dumps(value, sort_keys=True)``).

    ``blobs`` holds every blob made (id -> value). A graph object is encoded once per writer: its
    text is remembered by identity, so graphs that share objects (the compiler shares them between
    hosts) cost one encoding. ``known`` (a previous writer's ``literals()``) saves encoding long
    lists' items again. Remembered objects are kept alive, so their identities stay valid."""

    def __init__(self, known: Mapping[int, tuple[object, bytes]] | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self._memo: dict[int, tuple[object, bytes]] = {}
        self._literals: dict[int, tuple[object, bytes]] = {}  # the memo's texts that name no blob
        self._known = known or {}

    def literals(self) -> dict[int, tuple[object, bytes]]:
        """The remembered texts of long lists' items and spec items: they name no blob, so never go stale."""
        return self._literals

    def reuse(self, pieces: Sequence[object], references: Sequence[bytes]) -> None:
        """Take each of ``references`` (``references(graph)`` of a graph written before, its blobs
        stored) as the text of the piece at its position instead of encoding the piece again."""
        self._memo.update(zip(map(id, pieces), zip(pieces, references)))

    def references(self, graph: Any) -> tuple[bytes, ...]:
        """The texts of ``graph``'s pieces (its namespaces, then its devices: each REF and its blob
        id), once ``graph`` was written."""
        memo = self._memo
        return tuple(memo[id(piece)][1] for piece in chain(graph.namespaces, graph.devices))

    def _remember(self, remembered: tuple[object, bytes]) -> None:
        """Remember (value, text) of a shared value: a piece's reference, a list item's or a spec item's text."""
        self._memo[id(remembered[0])] = remembered
        if REF not in remembered[1]:
            self._literals[id(remembered[0])] = remembered

    def graph(self, obj: object) -> Blob:
        """The root blob of the tree of ``to_json(obj)``."""
        return self._root(self._fragment(obj))

    def data(self, value: Any) -> Blob:
        """The root blob of the tree of ``json.dumps(value, sort_keys=True)``."""
        return self._root(self._data(value))

    def spec(self, spec: Spec) -> Blob:
        """``data(as_data(spec))``, each item of the spec's lists encoded once: its text is
        remembered by identity, as a long list's items are (spec versions share unchanged items)."""
        return self.data(as_data(spec, self._item))

    def _item(self, item: object) -> "_Text":
        remembered = self._memo.get(id(item)) or self._known.get(id(item))
        if remembered is None:
            remembered = (item, _Text(json.dumps(item_data(item), sort_keys=True).encode()))  # type: ignore[arg-type]
        self._remember(remembered)
        return remembered[1]  # type: ignore[return-value]

    def _root(self, text: bytes) -> Blob:
        blob = Blob.of(text)
        self.blobs[blob.id] = text
        return blob

    def _ref(self, text: bytes) -> bytes:
        blob = hashlib.sha256(text).hexdigest()
        self.blobs[blob] = text
        return REF + blob.encode()

    def _fragment(self, value: Any, shared: bool = False) -> bytes:
        """The text of ``value``; ``shared``: remember it (an item of a long list, e.g. an FDB entry
        or a neighbour: the same object on many hosts)."""
        remembered = self._memo.get(id(value))
        if remembered is not None:
            return remembered[1]
        if shared and (remembered := self._known.get(id(value))) is not None:
            self._remember(remembered)
            return remembered[1]
        if isinstance(value, SEQUENCES):
            long = len(value) > SPLIT
            text = self._list([self._fragment(item, long) for item in value])
            if long:  # e.g. an FDB that many hosts' tunnels share: cut and hashed once
                self._memo[id(value)] = (value, text)
            return text
        if _is_dataclass(value.__class__):
            fields = members(value)
            if any(_cut(item) for _, item in fields):
                text = b"{" + b", ".join(json.dumps(name).encode() + b": " + self._member(item) for name, item in fields) + b"}"
            else:
                text = json.dumps(to_data(value)).encode()
            if isinstance(value, PIECES):
                text, shared = self._ref(text), True
        else:
            text = json.dumps(to_data(value)).encode()
        if shared:
            self._remember((value, text))
        return text

    def _member(self, item: Any) -> bytes:
        return self._fragment(item) if _cut(item) else json.dumps(to_data(item)).encode()

    def _data(self, value: Any) -> bytes:
        if isinstance(value, dict):
            return b"{" + b", ".join(json.dumps(key).encode() + b": " + self._data(value[key]) for key in sorted(value)) + b"}"
        if isinstance(value, list):
            return self._list([item if isinstance(item, _Text) else json.dumps(item, sort_keys=True).encode() for item in value])
        return json.dumps(value).encode()

    def _list(self, parts: list[bytes]) -> bytes:
        while len(parts) > SPLIT:
            parts = [self._ref(b", ".join(chunk)) for chunk in _chunks(parts)]
        return b"[" + b", ".join(parts) + b"]"


class _Text(bytes):
    """JSON text already encoded (a spec item's, from ``TreeWriter._item``)."""


@functools.cache
def _is_dataclass(cls: type) -> bool:
    return dataclasses.is_dataclass(cls)


def _long(value: Any) -> bool:
    """A tuple cut into blobs of its own: long, or holding pieces."""
    return isinstance(value, SEQUENCES) and (len(value) > SPLIT or (bool(value) and isinstance(value[0], PIECES)))


def _cut(value: Any) -> bool:
    """Whether the text of ``value`` has blobs of its own: a long list, pieces, or a graph object
    with a member that does (one level down: a device's tunnel or bridge config and its FDB)."""
    if isinstance(value, SEQUENCES):
        return _long(value)
    return _is_dataclass(value.__class__) and any(_long(item) for _, item in members(value))


def _chunks(parts: list[bytes]) -> Iterable[list[bytes]]:
    """``parts`` cut after each part whose CRC-32 is a multiple of ``AVERAGE`` (at least 2 parts a
    chunk, at most 4 x ``AVERAGE``): where the cuts fall depends on the parts, not their positions."""
    start, most = 0, 4 * AVERAGE
    for end in [at + 1 for at, crc in enumerate(map(zlib.crc32, parts)) if crc % AVERAGE == 0] + [len(parts)]:
        while end - start > most:
            yield parts[start : start + most]
            start += most
        if end - start >= 2 or end - start == 1 and end == len(parts):
            yield parts[start:end]
            start = end
