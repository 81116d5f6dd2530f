"""``diff(old, new)``: what was added, removed and changed, by object identity (name).

Contract: objects are matched by identity — namespaces by name, devices by (namespace, name),
links by their unordered ends, hosts and segments by name — and compared by value. A changed
object lists the fields that differ. For a ``NetworkGraph`` an added or removed host is one
``host`` change (its contents are not listed); a host in both is diffed object by object.
Changes are sorted (host, kind, key), so equal inputs give equal diffs.
"""

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from netvirt.graph.host import HostGraph, Link, NetworkGraph


class Op(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    CHANGE = "change"


class ObjectKind(StrEnum):
    HOST = "host"
    SEGMENT = "segment"
    NAMESPACE = "namespace"
    DEVICE = "device"
    LINK = "link"


_KIND_ORDER = {kind: index for index, kind in enumerate(ObjectKind)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One object added, removed or changed. ``host`` is "" for segments; ``fields`` lists the
    differing field names of a changed object."""

    op: Op
    kind: ObjectKind
    host: str
    key: str
    old: Any = None
    new: Any = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GraphDiff:
    """All changes between two graphs, and how many objects stayed the same."""

    changes: tuple[Change, ...]
    unchanged: int

    @property
    def empty(self) -> bool:
        return not self.changes

    def of(self, op: Op) -> tuple[Change, ...]:
        """The changes with operation ``op``."""
        return tuple(change for change in self.changes if change.op is op)


def diff(old: HostGraph | NetworkGraph, new: HostGraph | NetworkGraph) -> GraphDiff:
    """The changes that turn ``old`` into ``new`` (both HostGraphs or both NetworkGraphs)."""
    if type(old) is not type(new):
        raise TypeError(f"cannot diff a {type(old).__name__} with a {type(new).__name__}")
    counter = [0]
    if isinstance(old, NetworkGraph) and isinstance(new, NetworkGraph):
        changes = list(_network_changes(old, new, counter))
    else:
        changes = list(_host_changes(old, new, counter))  # type: ignore[arg-type]
    changes.sort(key=lambda c: (c.host, _KIND_ORDER[c.kind], c.key))
    return GraphDiff(tuple(changes), counter[0])


def _network_changes(old: NetworkGraph, new: NetworkGraph, counter: list[int]) -> Iterator[Change]:
    old_hosts = {g.host: g for g in old.hosts}
    for graph in new.hosts:
        if graph.host in old_hosts:
            yield from _host_changes(old_hosts[graph.host], graph, counter)
    hosts = _by_key(old.hosts, new.hosts, lambda g: g.host)
    for key, (before, after) in hosts.items():
        if before is None or after is None:
            yield _change(ObjectKind.HOST, key, key, before, after)
    yield from _compare(ObjectKind.SEGMENT, "", old.segments, new.segments, lambda s: s.name, counter)


def _host_changes(old: HostGraph, new: HostGraph, counter: list[int]) -> Iterator[Change]:
    host = new.host
    yield from _compare(ObjectKind.NAMESPACE, host, old.namespaces, new.namespaces, lambda n: n.name, counter)
    yield from _compare(ObjectKind.DEVICE, host, old.devices, new.devices, lambda d: f"{d.namespace}/{d.name}", counter)
    yield from _compare(ObjectKind.LINK, host, old.links, new.links, _link_key, counter)


def _link_key(link: Link) -> str:
    a, b = link.key
    return f"{a}<->{b}"


def _by_key(old: Iterable[Any], new: Iterable[Any], key: Callable[[Any], str]) -> dict[str, list[Any]]:
    pairs: dict[str, list[Any]] = {}
    for obj in old:
        pairs.setdefault(key(obj), [None, None])[0] = obj
    for obj in new:
        pairs.setdefault(key(obj), [None, None])[1] = obj
    return pairs


def _compare(
    kind: ObjectKind, host: str, old: Iterable[Any], new: Iterable[Any], key: Callable[[Any], str], counter: list[int]
) -> Iterator[Change]:
    for name, (before, after) in _by_key(old, new, key).items():
        if before is not None and before == after:
            counter[0] += 1
        else:
            yield _change(kind, host, name, before, after)


def _change(kind: ObjectKind, host: str, key: str, old: Any, new: Any) -> Change:
    if old is None:
        return Change(op=Op.ADD, kind=kind, host=host, key=key, new=new)
    if new is None:
        return Change(op=Op.REMOVE, kind=kind, host=host, key=key, old=old)
    fields = tuple(f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name))
    return Change(op=Op.CHANGE, kind=kind, host=host, key=key, old=old, new=new, fields=fields)
