"""``load``/``loads``: spec text -> resolved ``Spec``, or ``SpecError`` with every problem.

Three stages, each reporting everything it finds: read (syntax, duplicate keys), structure (each
top-level item validated on its own by pydantic, errors rewritten into plain messages at the exact
key), semantics (``analyze``: references, duplicates, addresses, MTUs, policies, services, stacks).
A later stage runs on whatever the earlier one accepted, so problems do not cascade.
"""

import contextlib
import copy
import gc
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import Any

from pydantic import BaseModel, ValidationError

from netvirt.management.spec.analyze import Analysis
from netvirt.management.spec.model import ITEM_TYPES, KINDS, LAYER_TYPES, Endpoint, Spec
from netvirt.management.spec.problems import Path, Problem, SpecError, did_you_mean
from netvirt.management.spec.source import Source, parse, read
from netvirt.management.spec.values import FieldError, check_name, describe

SHORT_FORM = ("network", "ip", "ip6", "mac")
"""Keys of an endpoint's one-attachment short form."""


def load(path: str | FilePath) -> Spec:
    """Load, validate and resolve a spec file (YAML or JSON) or a directory of them (merged)."""
    with paused_gc():
        return build(read(path))


def loads(text: str, filename: str = "<string>") -> Spec:
    """Load, validate and resolve spec text; ``filename`` appears in problems (.json -> JSON)."""
    with paused_gc():
        return build(parse(text, filename))


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects (also a decorator).

    Loading creates about ten objects per value and none of them form cycles; with the collector
    on, its full passes over them make a 50,000-endpoint load several times slower (and the
    compiler's over a large network's millions of graph objects would take most of its time).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build(source: Source) -> Spec:
    """Validate the source's data and return the resolved ``Spec``; raise ``SpecError`` if invalid."""
    with paused_gc():
        return _build(source)


def _build(source: Source) -> Spec:
    if source.problems and not source.data:
        raise SpecError(source.problems)
    problems: list[Problem] = []
    header = _header(source, problems)
    items, partial, poisoned = _items(source, problems)

    def where(path: Path) -> str:
        found = source.problem(path, "")
        return f"at {found.file}:{found.line}" if len(source.files) > 1 else f"on line {found.line}"

    analysis = Analysis(header, items, poisoned, where)
    reports = analysis.reports
    if any(partial.values()):  # the broken items' other problems, as far as the keys left of them show them
        whole = {kind: sorted(items[kind] + [(index, model) for index, model, _ in partial[kind]]) for kind in KINDS}
        removed = {(kind, index): cut for kind in KINDS for index, _, cut in partial[kind]}
        again = Analysis(header, whole, poisoned, where).reports
        reports = reports + [
            report
            for report in again
            if (cut := removed.get(report[0][:2])) is not None  # type: ignore[arg-type]
            and not any(report[0][2 : 2 + len(path)] == path for path in cut)
        ]
    problems += [source.problem(path, message, at_key=at_key) for path, message, at_key in reports]
    if source.problems or problems:
        read_at = {(problem.file, problem.line, problem.col) for problem in source.problems}
        cascades = {problem for problem in problems if (problem.file, problem.line, problem.col) in read_at}
        raise SpecError([*source.problems, *(problem for problem in problems if problem not in cascades)])
    return analysis.resolved()


def _header(source: Source, problems: list[Problem]) -> Spec:
    """The top-level keys other than the lists; keys that fail are reported and left out."""
    data = {key: value for key, value in source.data.items() if key not in KINDS and not key.startswith("x-")}
    data.setdefault("name", _name_from(source.default_name))
    header, bad = _validate(Spec, data, (), source, problems)
    if header is None:
        kept = {key: value for key, value in data.items() if not any(path[:1] == (key,) for path in bad)}
        header = Spec.model_validate({"name": "spec", **kept})
    return header


Items = dict[str, list[tuple[int, Any]]]
Partial = dict[str, list[tuple[int, Any, list[Path]]]]


def _items(source: Source, problems: list[Problem]) -> tuple[Items, Partial, dict[str, set[str]]]:
    """Every list item validated on its own: ``(index, model)`` per kind; the items that failed,
    validated again without the keys that failed (``(index, model, paths cut)``, when that
    passes: their other problems are worth reporting too); and the names of the items that failed
    (so that references to them are not reported again)."""
    items: Items = {kind: [] for kind in KINDS}
    partial: Partial = {kind: [] for kind in KINDS}
    poisoned: dict[str, set[str]] = {kind: set() for kind in KINDS}
    poisoned["tenants"] = set()
    for kind in KINDS:
        raw = source.data.get(kind)
        if raw is None:
            continue
        if not isinstance(raw, list):
            problems.append(source.problem((kind,), f"expected a list of {kind}, found {describe(raw)}"))
            continue
        for index, item in enumerate(raw):
            bad: list[Path] = []
            if kind == "endpoints":
                item = _attachments(item, index, source, problems, bad)
            model, found = _validate(ITEM_TYPES[kind], item, (kind, index), source, problems)
            bad += found
            if model is not None and not bad:
                items[kind].append((index, model))
                continue
            repaired = _without(ITEM_TYPES[kind], item, bad)
            if repaired is not None:
                partial[kind].append((index, *repaired))
            if isinstance(item, dict):
                if isinstance(item.get("name"), str):
                    poisoned[kind].add(item["name"])
                if kind == "networks" and isinstance(item.get("tenant"), str):
                    poisoned["tenants"].add(item["tenant"])
    return items, partial, poisoned


def _without(model: type[BaseModel], item: Any, bad: list[Path]) -> tuple[Any, list[Path]] | None:
    """``model`` of ``item`` without the parts at ``bad`` (and those that fail then), with the paths
    cut (a list an item was cut from counts as cut: its indices moved); None when nothing is left
    that validates (a required key is missing or wrong)."""
    cut: list[Path] = []
    for _ in range(4):
        if not isinstance(item, dict) or any(not path for path in bad):
            return None
        item = copy.deepcopy(item)
        for path in sorted(set(bad), reverse=True):  # later list indices first
            parent = item
            for part in path[:-1]:
                parent = parent[part] if isinstance(parent, (dict, list)) and _has(parent, part) else None
            if isinstance(parent, (dict, list)) and _has(parent, path[-1]):
                del parent[path[-1]]  # type: ignore[arg-type]
                cut.append(path[:-1] if isinstance(parent, list) else path)
        try:
            return model.model_validate(item), cut
        except ValidationError as error:
            bad = [_explain(model, detail)[0] for detail in error.errors()]
        except (TypeError, ValueError):
            return None
    return None


def _has(container: dict[str, Any] | list[Any], part: str | int) -> bool:
    if isinstance(container, list):
        return isinstance(part, int) and 0 <= part < len(container)
    return part in container


def _name_from(stem: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return name or "spec"


def _attachments(item: Any, index: int, source: Source, problems: list[Problem], bad: list[Path]) -> Any:
    """Rewrites an endpoint's short form (``network:`` ...) into ``attachments: [...]``; with both
    forms, the short form is reported (in ``bad`` too) and left out."""
    if not isinstance(item, dict) or not any(key in item for key in SHORT_FORM):
        return item
    rest = {key: value for key, value in item.items() if key not in SHORT_FORM}
    if "attachments" in item:
        key = next(key for key in SHORT_FORM if key in item)
        message = f"use either the short form ({key}: beside the name) or attachments:, not both"
        problems.append(source.problem(("endpoints", index, key), message, at_key=True))
        bad.append((key,))
        return rest
    return {**rest, "attachments": [{key: item[key] for key in SHORT_FORM if key in item}]}


def _validate(
    model: type[BaseModel], data: Any, prefix: Path, source: Source, problems: list[Problem]
) -> tuple[Any, list[Path]]:
    """The model, or None and the paths (inside ``data``) of the problems reported."""
    try:
        return model.model_validate(data), []
    except ValidationError as error:
        bad = []
        for detail in error.errors():
            if detail["type"] == "too_short" and len(detail["input"]) >= detail["ctx"]["min_length"]:
                continue  # pydantic counts only the valid items; the invalid ones are reported
            path, message, at_key = _explain(model, detail)
            problems.append(source.problem((*prefix, *path), message, at_key=at_key))
            bad.append(path if detail["type"] != "missing" else ())
        return None, bad


# --- pydantic errors -> plain messages at the right key -------------------------------------------


def _explain(model: type[BaseModel], error: Any) -> tuple[Path, str, bool]:
    """(path inside the item, message, whether to point at the key rather than the value)."""
    path, owner = _walk(model, error["loc"])
    kind, value, context = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        if owner is Endpoint and path[-1] == "attachments":  # the short form is what users write
            return path[:-1], "missing required key 'network' (or 'attachments': [{network: ...}, ...] for several)", False
        return path[:-1], f"missing required key {path[-1]!r}", False
    if kind == "extra_forbidden":
        hint = did_you_mean(path[-1], _keys(owner) if owner else [])
        if not hint and len(path) == 1 and model is Spec:
            hint = " (top-level keys starting with x- are ignored: use them for YAML anchors)"
        return path, f"unknown key {path[-1]!r}{hint}", True
    if kind == "union_tag_invalid":
        tags = list(LAYER_TYPES)
        tag = context.get("tag")
        return (*path, "layer"), f"unknown layer {tag!r}: one of {', '.join(tags)}{did_you_mean(tag, tags)}", False
    if kind == "union_tag_not_found":
        return path, f"missing required key 'layer' (one of {', '.join(LAYER_TYPES)})", False
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'|(\d+)", str(context.get("expected", "")))
        choices = [text or number for text, number in allowed]
        return path, f"{describe(value)} is not one of {', '.join(choices)}{did_you_mean(value, choices)}", False
    if kind == "value_error":
        cause = context.get("error")
        if isinstance(cause, FieldError):
            return (*path, cause.field), str(cause), False
        return path, str(cause) if cause is not None else error["msg"], False
    simple = {
        "string_type": "expected text",
        "int_type": "expected a whole number",
        "int_parsing": "expected a whole number",
        "int_from_float": "expected a whole number",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "tuple_type": "expected a list",
        "list_type": "expected a list",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
    }
    if kind in simple:
        return path, f"{simple[kind]}, found {describe(value)}", False
    if kind == "string_pattern_mismatch":  # the only pattern-checked strings are names
        try:
            check_name(value)
        except ValueError as bad:
            return path, str(bad), False
    if kind in ("greater_than_equal", "greater_than"):
        return path, f"{value!r} is too small: the minimum is {context.get('ge', context.get('gt'))}", False
    if kind in ("less_than_equal", "less_than"):
        return path, f"{value!r} is too large: the maximum is {context.get('le', context.get('lt'))}", False
    if kind == "too_short":
        return path, f"needs at least {context.get('min_length')} item(s)", False
    return path, error["msg"][0].lower() + error["msg"][1:], False


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Path, type[BaseModel] | None]:
    """Follows pydantic's ``loc`` through the model types: drops union tags (``'hypervisor'``)
    and returns the path as the user wrote it, with the model that owns the last key."""
    path: list[str | int] = []
    current: Any = model
    owner: type[BaseModel] | None = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            field = next((f for name, f in current.model_fields.items() if part in (name, f.alias)), None)
            current = field.annotation if field else None
            path.append(part)
        elif isinstance(current, types.UnionType) or typing.get_origin(current) is typing.Union:
            current = LAYER_TYPES.get(part)  # the discriminator tag: not part of the user's path
        elif typing.get_origin(current) in (tuple, list):
            current = typing.get_args(current)[0]
            path.append(part)
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
            path.append(part)
        else:
            current = None
            path.append(part)
    return tuple(path), owner


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation
