"""Value types shared by the graph objects: IP address aliases, MAC addresses, names, errors.

Contract: graph objects hold ``ipaddress`` values (never strings) and canonical MAC strings
(``"02:00:00:00:00:01"``, lower case). Collections are tuples (ordered) or frozensets (unordered);
``freeze_collections`` turns lists/sets given to a constructor into those, so graphs stay hashable.
"""

import dataclasses
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from itertools import chain
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import TypeVar, get_origin, get_type_hints

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface  # an address with its prefix length: 10.0.0.2/24

_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_NAME = re.compile(r"[^\s/]+")  # \s is exactly str.isspace for str patterns

Graph = TypeVar("Graph")
Where = str | Callable[[], str]
"""What a check names on failure: text, or a function making it (called only on failure, so hot
constructors format nothing when the value is fine)."""


class GraphError(ValueError):
    """An impossible graph value (raised by constructors and by ``from_json``): says what and where."""


def _text(where: Where) -> str:
    return where if isinstance(where, str) else where()


def check_mac(mac: str, where: Where) -> str:
    """The canonical (lower-case, colon-separated) form of ``mac``; GraphError if it is not a MAC."""
    canonical = mac.lower()
    if not _MAC.fullmatch(canonical):
        raise GraphError(f"{_text(where)}: {mac!r} is not a MAC address; write it as 02:00:00:00:00:01")
    return canonical


def check_range(value: int, low: int, high: int, where: Where) -> None:
    """GraphError unless ``low <= value <= high`` (and ``value`` is an int, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise GraphError(f"{_text(where)}: {value!r} is out of range; expected an integer {low}..{high}")


def check_name(name: str, where: Where) -> None:
    """GraphError unless ``name`` is a non-empty string without whitespace or '/'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GraphError(f"{_text(where)}: {name!r} is not a valid name (non-empty, no spaces, no '/')")


@cache
def _collection_fields(cls: type) -> tuple[tuple[str, type], ...]:
    hints = get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        origin = get_origin(hints[field.name])
        if origin in (tuple, frozenset):
            found.append((field.name, origin))
    return tuple(found)


def copier(cls: type[Graph], *changed: str) -> Callable[..., Graph]:
    """A function ``(obj, *new values of changed) -> copy of obj`` for the frozen, slotted graph
    class ``cls``, which skips the constructor's checks: for the ``with_*`` methods, which check
    what they change. Generated as ``dataclasses`` generates ``__init__`` (straight-line slot
    stores, a quarter of a loop's cost: the incremental compiler copies a device per host on
    every port change)."""
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = set(changed) - set(names)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    scope: dict[str, object] = {"new_object": object.__new__, "cls": cls}
    lines = [f"def copy(obj, {', '.join(changed)}):", "    new = new_object(cls)"]
    for at, name in enumerate(names):
        scope[f"set_{at}"] = getattr(cls, name).__set__
        lines.append(f"    set_{at}(new, {name if name in changed else 'obj.' + name})")
    lines.append("    return new")
    exec("\n".join(lines), scope)
    return scope["copy"]  # type: ignore[return-value]


def freeze_collections(obj: object) -> None:
    """Replace list/set values of tuple/frozenset fields of the frozen dataclass ``obj`` in place
    (``Chunks`` are immutable already and stay as they are)."""
    for name, origin in _collection_fields(type(obj)):
        value = getattr(obj, name)
        if type(value) is not origin and type(value) is not Chunks:
            object.__setattr__(obj, name, origin(value))


Item = TypeVar("Item")


class Chunks(Sequence[Item]):
    """An immutable sequence kept as a tuple of tuples (``chunks``): equal to, and hashing as, the
    tuple of all their items, in order. A host graph compiled from parts keeps each part's
    namespaces and devices as one chunk, so the graph that replaces a part shares every other
    chunk with the graph before it: a port change rebuilds a host's graph in O(parts), not
    O(devices). Iteration, ``len`` and ``count`` walk the chunks; slicing, negative indexes,
    ``index``, ``reversed`` and hashing make (and keep) the flat tuple once."""

    __slots__ = ("chunks", "_flat", "_length")

    def __init__(self, chunks: Iterable[tuple[Item, ...]]) -> None:
        self.chunks: tuple[tuple[Item, ...], ...] = tuple(chunks)
        self._flat: tuple[Item, ...] | None = None
        self._length = -1

    def flat(self) -> tuple[Item, ...]:
        """All items as one tuple (made on first use)."""
        if self._flat is None:
            self._flat = tuple(chain.from_iterable(self.chunks))
        return self._flat

    def __iter__(self) -> Iterator[Item]:
        return chain.from_iterable(self.chunks)

    def __len__(self) -> int:
        if self._length < 0:
            self._length = sum(map(len, self.chunks))
        return self._length

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        if isinstance(index, int) and index >= 0 and self._flat is None:
            for chunk in self.chunks:  # the first items (a host's own namespace) without flattening
                if index < len(chunk):
                    return chunk[index]
                index -= len(chunk)
            raise IndexError("Chunks index out of range")
        return self.flat()[index]

    def __reversed__(self) -> Iterator[Item]:
        return reversed(self.flat())

    def index(self, value: object, start: int = 0, stop: int = sys.maxsize) -> int:
        return self.flat().index(value, start, stop)

    def count(self, value: object) -> int:
        return sum(chunk.count(value) for chunk in self.chunks)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Chunks):
            if self.chunks is other.chunks:
                return True
            if len(self.chunks) == len(other.chunks) and all(map(_same_chunk, self.chunks, other.chunks)):
                return True  # chunk by chunk, shared chunks by identity; else the items decide
            return len(self) == len(other) and self.flat() == other.flat()
        if isinstance(other, tuple):
            return len(self) == len(other) and self.flat() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.flat())

    def __add__(self, other: object) -> tuple:
        return self.flat() + other if isinstance(other, tuple) else NotImplemented  # type: ignore[return-value]

    def __radd__(self, other: object) -> tuple:
        return other + self.flat() if isinstance(other, tuple) else NotImplemented  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Chunks({self.flat()!r})"


def _same_chunk(a: tuple, b: tuple) -> bool:
    return a is b or a == b
