"""Value types shared by the graph objects: IP address aliases, MAC addresses, names, errors.

Contract: graph objects hold ``ipaddress`` values (never strings) and canonical MAC strings
(``"02:00:00:00:00:01"``, lower case). Collections are tuples (ordered) or frozensets (unordered);
``freeze_collections`` turns lists/sets given to a constructor into those, so graphs stay hashable.
"""

import dataclasses
import re
from collections.abc import Callable
from functools import cache
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from operator import attrgetter
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


@cache
def _slots(cls: type) -> tuple[dict[str, int], Callable[[object], tuple], tuple]:
    """A slotted dataclass's field positions, a getter of all its field values, its slot setters."""
    names = tuple(field.name for field in dataclasses.fields(cls))
    return {name: at for at, name in enumerate(names)}, attrgetter(*names), tuple(getattr(cls, n).__set__ for n in names)


def copy_with(obj: Graph, **changes: object) -> Graph:
    """A copy of the frozen, slotted graph object ``obj`` with ``changes``, made without running
    its constructor's checks again: for the ``with_*`` methods, which check what they change."""
    position, values, setters = _slots(type(obj))
    fields = list(values(obj))
    for name, value in changes.items():
        fields[position[name]] = value
    new = object.__new__(type(obj))
    for set_slot, value in zip(setters, fields):
        set_slot(new, value)
    return new


def freeze_collections(obj: object) -> None:
    """Replace list/set values of tuple/frozenset fields of the frozen dataclass ``obj`` in place."""
    for name, origin in _collection_fields(type(obj)):
        value = getattr(obj, name)
        if type(value) is not origin:
            object.__setattr__(obj, name, origin(value))
