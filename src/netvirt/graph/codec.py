"""JSON for graph objects: ``to_json(obj)`` and ``from_json(cls, text)`` — the only way in and out.

Contract: ``from_json(type(x), to_json(x)) == x`` for every graph object. The format is the
dataclasses' fields by name, in declaration order; fields equal to their default are omitted;
enums by value, IP values as strings, bytes as hex, tuples as lists, frozensets as sorted lists;
members of a union of classes (actions, device configs) carry ``"type": <tag>``. ``from_json`` rejects unknown
keys, missing fields and wrong types with a ``GraphError`` naming the JSON path.
"""

import dataclasses
import json
import types
from collections.abc import Callable
from enum import Enum
from functools import cache, lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from netvirt.graph.values import Chunks, GraphError

T = TypeVar("T")
Decoder = Callable[[Any, str], Any]

_IP_PARSERS: dict[frozenset[type], Callable[[str], Any]] = {
    frozenset({IPv4Address, IPv6Address}): ip_address,
    frozenset({IPv4Network, IPv6Network}): ip_network,
    frozenset({IPv4Interface, IPv6Interface}): ip_interface,
}
_IP_TYPES = frozenset().union(*_IP_PARSERS)


def to_json(obj: object, indent: int | None = None) -> str:
    """The JSON text of a graph object (deterministic: equal objects give equal text)."""
    return json.dumps(_encode(obj), indent=indent)


def from_json(cls: type[T], text: str | bytes) -> T:
    """The ``cls`` object ``text`` describes; GraphError (with the JSON path) if it does not."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise GraphError(f"not JSON: {error}") from None
    return _decoder(cls)(data, "$")  # type: ignore[no-any-return]


def to_data(value: object) -> Any:
    """The JSON value ``to_json`` writes for ``value``: ``to_json(x) == json.dumps(to_data(x))``."""
    return _encode(value)


def members(obj: object) -> list[tuple[str, Any]]:
    """What ``to_json`` writes for the graph dataclass ``obj``, in order, values not yet encoded:
    ``("type", tag)`` first for a member of a union, then each field that differs from its default.
    For writers that build the same text piecewise (``control.state``)."""
    tag, fields = _encoding_of(obj.__class__)
    out: list[tuple[str, Any]] = [] if tag is None else [("type", tag)]
    for name, default in fields:
        item = getattr(obj, name)
        if item is not default and item != default:
            out.append((name, item))
    return out


def _encode(value: Any) -> Any:
    return _encoder(value.__class__)(value)


@cache
def _encoder(cls: type) -> Callable[[Any], Any]:
    """How values of ``cls`` are encoded (decided once per class; see the module docstring)."""
    if issubclass(cls, Enum):
        return _enum_value
    if cls is type(None) or issubclass(cls, (bool, int, str)):
        return _same
    if issubclass(cls, bytes):
        return bytes.hex
    if issubclass(cls, (tuple, Chunks)):
        return _encode_tuple
    if issubclass(cls, frozenset):
        return _encode_frozenset
    if cls in _IP_TYPES:
        return _ip_text
    if dataclasses.is_dataclass(cls):
        return _dataclass_encoder(cls)
    return _unencodable


@lru_cache(maxsize=1 << 16, typed=True)
def _ip_text(value: Any) -> str:
    """``str`` of an IP value, remembered: graphs repeat their addresses (every tunnel lists every
    peer) and ipaddress formats them in Python (IPv6 compression especially)."""
    return str(value)


def _same(value: Any) -> Any:
    return value


def _enum_value(value: Enum) -> Any:
    return value.value


def _encode_tuple(value: tuple | Chunks) -> list[Any]:
    return [_encoder(item.__class__)(item) for item in value]


def _encode_frozenset(value: frozenset) -> list[Any]:
    return sorted((_encode(item) for item in value), key=lambda item: json.dumps(item, sort_keys=True))


def _unencodable(value: Any) -> Any:
    raise TypeError(f"cannot encode {type(value).__name__} {value!r} as graph JSON")


def _dataclass_encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    tag, fields = _encoding_of(cls)

    def encode(value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {} if tag is None else {"type": tag}
        for name, default in fields:
            item = getattr(value, name)
            if item is not default and item != default:
                out[name] = _encoder(item.__class__)(item)
        return out

    return encode


_NO_DEFAULT = object()  # compares unequal to everything: the field is always written


@cache
def _encoding_of(cls: type) -> tuple[str | None, tuple[tuple[str, Any], ...]]:
    """A dataclass's union tag (or None) and its fields with their defaults."""
    fields = tuple(
        (f.name, _NO_DEFAULT if f.default is dataclasses.MISSING else f.default) for f in dataclasses.fields(cls)
    )
    return getattr(cls, "tag", None), fields


def _fail(path: str, expected: str, got: Any) -> GraphError:
    return GraphError(f"{path}: expected {expected}, got {json.dumps(got)[:60]}")


@cache
def _decoder(hint: Any) -> Decoder:
    """A function decoding JSON data of type ``hint`` (built once per type)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return _union_decoder(get_args(hint))
    if origin is tuple:
        return _tuple_decoder(get_args(hint))
    if origin is frozenset:
        item = _decoder(get_args(hint)[0])
        return lambda data, path: frozenset(_list(item, data, path))
    if hint is type(None):
        return lambda data, path: None if data is None else _raise(_fail(path, "null", data))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_decoder(hint)
    if hint in (bool, int, str):
        return _scalar_decoder(hint)
    if hint is bytes:
        return _hex_decoder
    if hint in _IP_TYPES:
        return _ip_decoder(hint, hint.__name__)
    if dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)  # type: ignore[arg-type]
    raise TypeError(f"graph JSON cannot decode type {hint!r}")


def _raise(error: Exception) -> Any:
    raise error


def _list(item: Decoder, data: Any, path: str) -> list[Any]:
    if not isinstance(data, list):
        raise _fail(path, "a list", data)
    return [item(element, f"{path}[{i}]") for i, element in enumerate(data)]


def _tuple_decoder(args: tuple[Any, ...]) -> Decoder:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])
        return lambda data, path: tuple(_list(item, data, path))
    items = [_decoder(arg) for arg in args]

    def decode(data: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(data, list) or len(data) != len(items):
            raise _fail(path, f"a list of {len(items)}", data)
        return tuple(item(element, f"{path}[{i}]") for i, (item, element) in enumerate(zip(items, data)))

    return decode


def _scalar_decoder(kind: type) -> Decoder:
    def decode(data: Any, path: str) -> Any:
        if type(data) is not kind:
            raise _fail(path, kind.__name__, data)
        return data

    return decode


def _hex_decoder(data: Any, path: str) -> bytes:
    if not isinstance(data, str):
        raise _fail(path, "hex digits", data)
    try:
        return bytes.fromhex(data)
    except ValueError:
        raise _fail(path, "hex digits (two per byte)", data) from None


def _enum_decoder(enum: type[Enum]) -> Decoder:
    allowed = ", ".join(str(member.value) for member in enum)

    def decode(data: Any, path: str) -> Any:
        try:
            return enum(data)
        except ValueError:
            raise _fail(path, f"one of {allowed}", data) from None

    return decode


def _ip_decoder(parse: Callable[[str], Any], what: str) -> Decoder:
    def decode(data: Any, path: str) -> Any:
        if not isinstance(data, str):
            raise _fail(path, what, data)
        try:
            return parse(data)
        except ValueError as error:
            raise GraphError(f"{path}: {error}") from None

    return decode


def _union_decoder(args: tuple[Any, ...]) -> Decoder:
    optional = type(None) in args
    members = tuple(arg for arg in args if arg is not type(None))
    if frozenset(members) in _IP_PARSERS:
        inner = _ip_decoder(_IP_PARSERS[frozenset(members)], "an IP value")
    elif len(members) == 1:
        inner = _decoder(members[0])
    elif all(dataclasses.is_dataclass(member) and hasattr(member, "tag") for member in members):
        by_tag = {member.tag: _dataclass_decoder(member) for member in members}
        tags = ", ".join(by_tag)

        def inner(data: Any, path: str) -> Any:
            if not isinstance(data, dict) or data.get("type") not in by_tag:
                raise _fail(path, f'an object with "type" one of {tags}', data)
            return by_tag[data["type"]](data, path)

    else:
        raise TypeError(f"graph JSON cannot decode the union {args!r}")
    if not optional:
        return inner
    return lambda data, path: None if data is None else inner(data, path)


@cache
def _dataclass_decoder(cls: type) -> Decoder:
    hints = get_type_hints(cls)
    fields = [(f.name, _decoder(hints[f.name]), f.default is dataclasses.MISSING) for f in dataclasses.fields(cls)]
    known = {name for name, _, _ in fields}
    tag = getattr(cls, "tag", None)
    if tag is not None:
        known.add("type")

    def decode(data: Any, path: str) -> Any:
        if not isinstance(data, dict):
            raise _fail(path, f"a {cls.__name__} object", data)
        unknown = data.keys() - known
        if unknown:
            raise GraphError(f"{path}: unknown field(s) {sorted(unknown)} for {cls.__name__}; known: {sorted(known)}")
        if tag is not None and data.get("type", tag) != tag:
            raise _fail(f"{path}.type", repr(tag), data["type"])
        values = {}
        for name, decode_field, required in fields:
            if name in data:
                values[name] = decode_field(data[name], f"{path}.{name}")
            elif required:
                raise GraphError(f"{path}: missing field {name!r} of {cls.__name__}")
        try:
            return cls(**values)
        except (GraphError, ValueError, TypeError) as error:
            raise GraphError(f"{path}: {error}") from None

    return decode
