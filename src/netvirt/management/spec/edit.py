"""Editing one endpoint of a resolved spec: the per-endpoint changes of the control plane.

Contract: ``with_endpoint(spec, text, filename, change=None)`` returns the spec with the endpoint
written in ``text`` (one endpoint as a spec file writes it, YAML or JSON, short form allowed)
added (``EndpointExists`` if its name is taken) or, with ``change=NAME``, put in place of endpoint
NAME (``UnknownEndpoint`` if there is none; the text must name it too). ``without_endpoint(spec,
name)`` returns the spec without it (``UnknownEndpoint``). The result is validated as a whole spec
(``SpecError``, every problem at once): problems in the endpoint are located in ``text``
(``FILE:LINE:COL``, the path inside the endpoint), problems elsewhere in the applied spec as written
by ``dump`` (file ``applied-spec.yaml``). Every other item is the spec's own object, unchanged
(the incremental compiler then finds the change by identity); the edited endpoint keeps its
position, a new one goes last.
"""

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from netvirt.management.spec.dump import as_data, dump_data
from netvirt.management.spec.loader import build
from netvirt.management.spec.model import Endpoint, Spec
from netvirt.management.spec.problems import Problem, SpecError
from netvirt.management.spec.source import Document, merge, not_a_mapping_as, parse_document

APPLIED = "applied-spec.yaml"
"""The file name problems in the rest of the applied spec are reported in (as ``netvirt get`` prints it)."""


class UnknownEndpoint(LookupError):
    """The spec has no endpoint of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the applied spec has no endpoint {name!r}")
        self.name = name


class EndpointExists(ValueError):
    """An endpoint of that name is already in the spec (change it instead)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"endpoint {name!r} already exists; change it (PUT /v1/endpoints/{name}) or remove it first")
        self.name = name


class _Applied(Document):
    """The applied spec as a document: its node tree (for positions) is dumped only when a
    problem needs one."""

    @property
    def root(self) -> Node | None:
        if self._root is None:
            self.text = dump_data(self.data)
            return Document.root.fget(self)  # type: ignore[attr-defined, no-any-return]
        return self._root


def with_endpoint(spec: Spec, text: str, filename: str = "endpoint.yaml", *, change: str | None = None) -> Spec:
    """``spec`` with the endpoint in ``text`` added or changed (see the module docstring)."""
    document, problems = parse_document(text, filename)
    problems = [not_a_mapping_as(problem, "an endpoint", "name, host, network, ...") for problem in problems]
    item = document.data
    if not problems and (document.root is None or not item):
        problems = [Problem(filename, 1, 1, "", "an endpoint must be a mapping of keys (name, host, network, ...)")]
    if problems:
        raise SpecError(problems)
    name = item.get("name")
    if not isinstance(name, str):
        raise SpecError([Problem(filename, 1, 1, "", "missing required key 'name' (the endpoint's name)")])
    names = [endpoint.name for endpoint in spec.endpoints]
    if change is not None and change not in names:
        raise UnknownEndpoint(change)
    if change is not None and name != change:
        line, col = _name_position(document)
        message = f"the endpoint to change is {change!r}, not {name!r} (renaming is remove and add)"
        raise SpecError([Problem(filename, line, col, "name", message)])
    if change is None and name in names:
        raise EndpointExists(name)
    others = [endpoint for endpoint in spec.endpoints if endpoint.name != name]
    position = names.index(name) if change is not None else len(others)
    _wrap(document, item)
    return _rebuild(spec, others, document, position)


def without_endpoint(spec: Spec, name: str) -> Spec:
    """``spec`` without endpoint ``name``, validated (what referred to it by name is a problem)."""
    if name not in spec.index["endpoints"]:
        raise UnknownEndpoint(name)
    return _rebuild(spec, [endpoint for endpoint in spec.endpoints if endpoint.name != name], None, 0)


def _name_position(document: Document) -> tuple[int, int]:
    root = document.root
    for key, value in root.value if isinstance(root, MappingNode) else ():
        if isinstance(key, ScalarNode) and key.value == "name":
            return value.start_mark.line + 1, value.start_mark.column + 1
    return 1, 1


def _in_endpoint(problem: Problem, filename: str) -> Problem:
    """A problem in the endpoint's file names its path inside the endpoint (``ip``, not
    ``endpoints[0].ip``)."""
    if problem.file != filename or not problem.path.startswith("endpoints[0]"):
        return problem
    path = problem.path.removeprefix("endpoints[0]").removeprefix(".")
    return Problem(problem.file, problem.line, problem.col, path, problem.message)


def _wrap(document: Document, item: dict[str, Any]) -> None:
    """Make the endpoint's document a spec document ``{endpoints: [item]}`` (positions kept)."""
    root = document.root
    assert root is not None
    key = ScalarNode("tag:yaml.org,2002:str", "endpoints", root.start_mark, root.start_mark)
    items = SequenceNode("tag:yaml.org,2002:seq", [root], root.start_mark, root.end_mark)
    document._root = MappingNode("tag:yaml.org,2002:map", [(key, items)], root.start_mark, root.end_mark)
    document.text = None
    document.data = {"endpoints": [item]}


def _rebuild(spec: Spec, others: list[Endpoint], edited: Document | None, position: int) -> Spec:
    applied = _Applied(APPLIED, as_data(spec.model_copy(update={"endpoints": tuple(others)})))
    documents = [applied] if edited is None else [applied, edited]
    try:
        resolved = build(merge(documents, [], spec.name))
    except SpecError as error:
        if edited is None:
            raise
        raise SpecError(_in_endpoint(problem, edited.file) for problem in error.problems) from None
    endpoints = list(others)
    if edited is not None:
        endpoints.insert(position, resolved.endpoints[-1])
    return spec.model_copy(update={"endpoints": tuple(endpoints)})
