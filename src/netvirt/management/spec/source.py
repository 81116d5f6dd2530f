"""Reading spec files: YAML or JSON text -> plain data, and where every value came from.

YAML is parsed with PyYAML's composer (the C parser when available), which keeps each node's line
and column; the node tree is kept so that any spec path maps back to FILE:LINE:COL when something is
wrong with it. JSON is parsed by ``json`` (exact JSON semantics, JSON syntax errors with their
position) and composed by the same YAML composer -- JSON is YAML 1.2 -- only when a problem needs a
position.

Deliberate differences from plain ``yaml.safe_load``: mapping keys are always the text as written
(``yes:`` is the key ``"yes"``, not ``True``); duplicate keys are problems, not silent overrides;
numbers and times with ``:`` (YAML 1.1 base 60, e.g. unquoted MACs) stay text. Refused, each as a
located problem: a tag other than a standard scalar tag matching its value (``!!int 5``; not
``!!bool maybe``, ``!custom``, ``!!set``, any tag on a list or mapping), text with a lone surrogate
(``"\\ud800"``, only JSON or escapes can write one), nesting beyond ``MAX_DEPTH`` levels, more than
``MAX_NODES`` values once aliases and merge keys are expanded, files over ``MAX_BYTES``. Nothing here
raises on bad input: every failure becomes a ``Problem``.
"""

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from netvirt.management.spec.problems import Path, Problem, format_path

SUFFIXES = (".yaml", ".yml", ".json")
MAX_DEPTH = 64
MAX_BYTES = 16 * 1024 * 1024
"""Largest spec file (or text): 1.6 times the 50,000-endpoint resolved spec (10.4 MB)."""
MAX_NODES = 2_000_000
"""Most values (list items and mapping entries) one file may build, counted after aliases and merge
keys are expanded: three times the 50,000-endpoint spec (690,000), reached in half a second by an alias bomb."""

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_MERGE = _TAG + "merge"
_SEQ = _TAG + "seq"
_MAP = _TAG + "map"
_constructor = SafeConstructor()
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_IMPLICIT = _BaseLoader.yaml_implicit_resolvers
_PATTERN = {tag: regexp for resolvers in _IMPLICIT.values() for tag, regexp in resolvers}
"""Each standard scalar tag's pattern: an explicit tag must match its value as the implicit one would."""
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_WRITTEN_SURROGATE = re.compile(
    r"[\ud800-\udfff]"  # one itself (JSON handed over as text)
    r"|(?<!\\)(?:\\\\)*(?:(?P<pair>\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|\\(?:u|U0000)[dD][89a-fA-F][0-9a-fA-F]{2})"
)
"""A surrogate as written: itself, an escaped pair (one character, fine) or a lone escape."""


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """The safe loader with a leaner resolver (no path resolvers, plain scalars by first char,
    each distinct plain scalar resolved once per document: keys and names repeat): the same tags
    as ``SafeLoader``, half the time on large specs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.plain_tags: dict[str, str] = {}

    def resolve(self, kind: type, value: str, implicit: Any) -> str:
        if kind is ScalarNode:
            if not implicit[0]:
                return _STR  # quoted
            tag = self.plain_tags.get(value)
            if tag is None:
                tag = next((tag for tag, regexp in _IMPLICIT.get(value[:1], ()) if regexp.match(value)), _STR)
                self.plain_tags[value] = tag
            return tag
        return _SEQ if kind is SequenceNode else _MAP

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


class _Abort(Exception):
    def __init__(self, node: Node, message: str) -> None:
        self.node = node
        self.message = message


@dataclass
class Document:
    """One parsed file: its data and its YAML node tree (``None`` when empty or unparsable).

    JSON files are parsed by ``json`` (fast); their node tree is composed only when a problem
    needs a position (``text`` is kept for that). A YAML file's tree, built to read it, is dropped
    when reading found no problem and composed again only if a later one needs a position.
    """

    file: str
    data: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    _root: Node | None = None

    @property
    def root(self) -> Node | None:
        if self._root is None and self.text is not None:
            try:
                self._root = yaml.compose(self.text, Loader=_Loader)
            except (yaml.YAMLError, RecursionError, UnicodeEncodeError):  # JSON that YAML refuses
                pass
            self.text = None
        return self._root


@dataclass
class Source:
    """The merged data of one or more documents, able to say where any part came from."""

    data: dict[str, Any]
    problems: list[Problem]
    default_name: str
    _documents: list[Document] = field(default_factory=list)
    _segments: dict[str, list[tuple[int, Document]]] = field(default_factory=dict)
    _scalars: dict[str, Document] = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return [document.file for document in self._documents]

    def problem(self, path: Path, message: str, *, at_key: bool = False) -> Problem:
        """A ``Problem`` for ``path`` (a path into ``data``), positioned in the file it came from."""
        document, local = self._document_of(path)
        if document is None:
            return Problem(self._documents[0].file if self._documents else "<spec>", 0, 0, format_path(path), message)
        shown, line, col = _locate(document.root, local, at_key)
        return Problem(document.file, line, col, format_path(shown), message)

    def _document_of(self, path: Path) -> tuple[Document | None, Path]:
        if not path:
            return (self._documents[0] if self._documents else None), path
        key = path[0]
        segments = self._segments.get(key)  # type: ignore[arg-type]
        if segments and len(path) > 1 and isinstance(path[1], int):
            at = bisect.bisect_right([start for start, _ in segments], path[1]) - 1
            start, document = segments[max(at, 0)]
            return document, (key, path[1] - start, *path[2:])
        if segments:
            return segments[0][1], path
        document = self._scalars.get(key)  # type: ignore[arg-type]
        return document or (self._documents[0] if self._documents else None), path


def read(path: str | FilePath) -> Source:
    """Read a spec file, or every ``*.yaml``/``*.yml``/``*.json`` file of a directory (merged;
    hidden files such as editors' ``.#name.yaml`` are skipped)."""
    path = FilePath(path)
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES and p.name[0] != ".")
        if not files:
            return Source({}, [Problem(str(path), 0, 0, "", "no spec files (*.yaml, *.yml, *.json) here")], name)
    elif not path.exists():
        return Source({}, [Problem(str(path), 0, 0, "", "no such file or directory")], name)
    else:
        files = [path]
    documents, problems = [], []
    for file in files:
        try:
            if file.stat().st_size > MAX_BYTES:
                problems.append(Problem(str(file), 0, 0, "", _too_large(file.stat().st_size)))
                continue
            text = file.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is not content
        except UnicodeDecodeError as error:
            problems.append(Problem(str(file), 0, 0, "", f"not UTF-8 text ({error.reason} at byte {error.start})"))
            continue
        except OSError as error:
            problems.append(Problem(str(file), 0, 0, "", f"cannot read: {error.strerror or error}"))
            continue
        document, found = parse_document(text, str(file))
        documents.append(document)
        problems += found
    return merge(documents, problems, name or "spec")


def parse(text: str, filename: str = "<string>") -> Source:
    """Parse one document of spec text (JSON when ``filename`` ends in .json, else YAML)."""
    document, problems = parse_document(text, filename)
    stem = FilePath(filename).stem if not filename.startswith("<") else "spec"
    return merge([document], problems, stem)


def _too_large(size: int) -> str:
    return f"{size:,} bytes is more than a spec may have ({MAX_BYTES:,}): split it into a directory of files"


def parse_document(text: str, filename: str) -> tuple[Document, list[Problem]]:
    document = Document(filename)
    if len(text) > MAX_BYTES:
        return document, [Problem(filename, 0, 0, "", _too_large(len(text)))]
    if filename.endswith(".json"):
        return _parse_json(document, text)
    if raw := _SURROGATE.search(text):  # only text handed over as a string can hold one
        at = raw.start()
        line, col = text.count("\n", 0, at) + 1, at - text.rfind("\n", 0, at)
        message = f"lone surrogate U+{ord(raw.group()):04X}: not Unicode text"
        return document, [Problem(filename, line, col, "", message)]
    if (estimate := text.count("\n") + text.count(",")) > MAX_NODES:  # before the tree takes the memory
        message = f"more than {MAX_NODES:,} values ({estimate:,} lines and commas)"
        return document, [Problem(filename, 0, 0, "", message)]
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        return document, [_yaml_problem(filename, error)]
    except ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        col = error.position - text.rfind("\n", 0, error.position)
        character = f"#x{error.character:04x}" if isinstance(error.character, int) else repr(error.character)
        return document, [Problem(filename, line, col, "", f"invalid YAML: character {character}: {error.reason}")]
    except yaml.YAMLError as error:
        return document, [Problem(filename, 1, 1, "", f"invalid YAML: {error}")]
    except RecursionError:
        return document, [Problem(filename, 1, 1, "", f"nesting deeper than {MAX_DEPTH} levels")]
    document._root = root
    if root is None:
        return document, []
    problems: list[Problem] = []
    try:
        data = _Builder(filename, problems).value(root, 0)
    except _Abort as abort:
        return document, [_problem_at(filename, abort.node, "", abort.message)]
    if not problems:  # the tree is most of the memory a load takes: composed again if a problem needs it
        document._root, document.text = None, text
    _refuse_surrogates(document, text, data, problems)
    return _top_level(document, data, problems)


def _yaml_problem(filename: str, error: yaml.MarkedYAMLError) -> Problem:
    """``invalid YAML: while parsing a flow sequence (from 4:15), did not find expected ','``."""
    mark = error.problem_mark or error.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    parts = []
    if error.context:
        where = error.context_mark
        parts.append(error.context + (f" (from {where.line + 1}:{where.column + 1})" if where else ""))
    if error.problem:
        parts.append(error.problem)
    return Problem(filename, line, col, "", f"invalid YAML: {', '.join(parts) or 'cannot parse'}")


def _parse_json(document: Document, text: str) -> tuple[Document, list[Problem]]:
    duplicates = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        result = dict(items)
        duplicates = duplicates or len(result) < len(items)
        return result

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as error:
        return document, [Problem(document.file, error.lineno, error.colno, "", f"invalid JSON: {error.msg}")]
    except RecursionError:
        return document, [Problem(document.file, 1, 1, "", "nesting too deep")]
    document.text = text
    problems: list[Problem] = []
    if duplicates and document.root is not None:  # build again from nodes: it names each duplicate
        try:
            _Builder(document.file, problems).value(document.root, 0)
        except _Abort:
            pass
    _refuse_surrogates(document, text, data, problems)
    return _top_level(document, data, problems)


def _refuse_surrogates(document: Document, text: str, data: Any, problems: list[Problem]) -> None:
    """Reports every key or text value holding a lone surrogate (not encodable as UTF-8, so not a
    name, an address or anything else) and replaces it by U+FFFD so that nothing reports it again."""
    if "\\u" not in text and "\\U" not in text and not _SURROGATE.search(text):
        return  # (fast: a scan for a few characters)
    written = [hit.group("pair") for hit in _WRITTEN_SURROGATE.finditer(text)]
    if written and document.text is not None:  # JSON: YAML refuses surrogate escapes, even pairs
        document.text = _WRITTEN_SURROGATE.sub(_placeholder, text)  # the same length: the same positions
    if all(written):
        return
    found: list[tuple[Path, bool, str]] = []  # (path as written, at the key, the text)

    def clean(value: Any, path: Path) -> Any:
        if isinstance(value, str) and _SURROGATE.search(value):
            found.append((path, False, value))
            return _SURROGATE.sub("\ufffd", value)
        if isinstance(value, list):
            value[:] = [clean(item, (*path, index)) for index, item in enumerate(value)]
        elif isinstance(value, dict):
            for key in list(value):
                item = value.pop(key)
                if _SURROGATE.search(key):
                    found.append(((*path, key), True, key))
                value[_SURROGATE.sub("\ufffd", key)] = clean(item, (*path, key))
        return value

    clean(data, ())
    for path, at_key, value in found:
        written_as = tuple(_SURROGATE.sub("\ufffd", part) if isinstance(part, str) else part for part in path)
        shown, line, col = _locate(document.root, written_as, at_key)
        code = ord(_SURROGATE.search(value).group())  # type: ignore[union-attr]
        message = f"{'key' if at_key else 'text'} with a lone surrogate (U+{code:04X}): not Unicode text"
        problems.append(Problem(document.file, line, col, format_path(shown), message))


def _placeholder(hit: re.Match[str]) -> str:
    written = hit.group()
    if hit.group("pair"):
        return written[:-12] + "\\ufffd\\ufffd"
    return "\ufffd" if len(written) == 1 else written[:-4] + "fffd"


_NOT_A_MAPPING = "a spec must be a mapping"


def not_a_mapping_as(problem: Problem, what: str, keys: str) -> Problem:
    """``problem``, or when it says the document is no spec mapping, the same said of ``what`` (an
    endpoint, a containerlab topology) with its ``keys``."""
    if not problem.message.startswith(_NOT_A_MAPPING):
        return problem
    found = problem.message.rpartition("found ")[2]
    return Problem(problem.file, problem.line, problem.col, "", f"{what} must be a mapping of keys ({keys}), found {found}")


def _top_level(document: Document, data: Any, problems: list[Problem]) -> tuple[Document, list[Problem]]:
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else f"{data!r}"
        message = f"{_NOT_A_MAPPING} of keys (name, hosts, networks, ...), found {found}"
        line, col = (
            (document.root.start_mark.line + 1, document.root.start_mark.column + 1) if document.root else (1, 1)
        )
        return document, [Problem(document.file, line, col, "", message)]
    document.data = data
    return document, problems


def merge(documents: list[Document], problems: list[Problem], default_name: str) -> Source:
    """Merge documents: top-level lists are concatenated in order; other keys must agree."""
    source = Source({}, problems, default_name, documents)
    data = source.data
    for document in documents:
        for key, value in document.data.items():
            if isinstance(value, list) and isinstance(data.get(key, []), list) and key not in source._scalars:
                source._segments.setdefault(key, []).append((len(data.get(key, [])), document))
                data.setdefault(key, []).extend(value)
            elif key in data and data[key] != value:
                first = source._scalars.get(key) or source._segments[key][0][1]
                shown, line, col = _locate(document.root, (key,), False)
                message = f"{key} is {value!r} here but {data[key]!r} in {first.file}; the files must agree"
                problems.append(Problem(document.file, line, col, format_path(shown), message))
            else:
                data[key] = value
                source._scalars.setdefault(key, document)
    return source


# --- building data from nodes --------------------------------------------------------------------


class _Builder:
    """Plain data from a node tree: the one place where YAML values become spec values."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.problems = problems
        self.nodes = 0

    def value(self, node: Node, depth: int) -> Any:
        kind = node.__class__
        if kind is ScalarNode:
            return node.value if node.tag == _STR else self.scalar(node)
        if depth > MAX_DEPTH:
            raise _Abort(node, f"nesting deeper than {MAX_DEPTH} levels")
        self.nodes += len(node.value)
        if self.nodes > MAX_NODES:
            message = f"more than {MAX_NODES:,} values once aliases and merge keys are expanded (an alias bomb?)"
            raise _Abort(node, message)
        if node.tag != (_SEQ if kind is SequenceNode else _MAP):
            what = "list" if kind is SequenceNode else "mapping"
            self.problems.append(_problem_at(self.filename, node, "", f"unsupported YAML tag {node.tag!r} on a {what}"))
            return None
        if kind is SequenceNode:
            return [
                child.value if child.__class__ is ScalarNode and child.tag == _STR else self.value(child, depth + 1)
                for child in node.value
            ]
        return self.mapping(node, depth)

    def mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.__class__ is not ScalarNode or key_node.tag == _MERGE:
                if key_node.tag == _MERGE:
                    merged.append(value_node)
                else:
                    self.problems.append(_problem_at(self.filename, key_node, "", "a key must be plain text"))
                continue
            if not key_node.tag.startswith(_TAG):
                self.problems.append(_problem_at(self.filename, key_node, "", f"unsupported YAML tag {key_node.tag!r}"))
                continue
            key = key_node.value
            if key in result:
                first = next(k for k, _ in node.value if k.__class__ is ScalarNode and k.value == key)
                message = f"duplicate key {key!r} (first on line {first.start_mark.line + 1})"
                self.problems.append(_problem_at(self.filename, key_node, "", message))
                continue
            if value_node.__class__ is ScalarNode and value_node.tag == _STR:  # most values: no call
                result[key] = value_node.value
            else:
                result[key] = self.value(value_node, depth + 1)
        for source in merged:  # "<<: *defaults": explicit keys win
            for item in source.value if isinstance(source, SequenceNode) else [source]:
                extra = self.value(item, depth + 1)
                if not isinstance(extra, dict):
                    self.problems.append(_problem_at(self.filename, item, "", "'<<' merges only mappings"))
                    continue
                for key, value in extra.items():
                    result.setdefault(key, value)
        return result

    def scalar(self, node: ScalarNode) -> Any:
        """A standard scalar tag must match its value as the implicit tag would (``!!int 5``,
        ``!!str 5``); every other tag is refused."""
        tag = node.tag
        if tag in (_TAG + "int", _TAG + "float", _TAG + "timestamp") and ":" in node.value:
            return node.value  # YAML 1.1 base-60 numbers and times: keep the text (MACs, IPv6)
        pattern = _PATTERN.get(tag)
        if pattern is None:
            self.problems.append(_problem_at(self.filename, node, "", f"unsupported YAML tag {tag!r}"))
            return None
        if not pattern.match(node.value):
            message = f"{node.value!r} is not a valid {tag.removeprefix(_TAG)}"
            self.problems.append(_problem_at(self.filename, node, "", message))
            return None
        if tag == _TAG + "int":
            return _constructor.construct_yaml_int(node)
        if tag == _TAG + "float":
            return _constructor.construct_yaml_float(node)
        if tag == _TAG + "bool":
            return _constructor.construct_yaml_bool(node)
        return None if tag == _TAG + "null" else node.value  # timestamps stay text


def _problem_at(filename: str, node: Node, path: str, message: str) -> Problem:
    return Problem(filename, node.start_mark.line + 1, node.start_mark.column + 1, path, message)


# --- locating paths ------------------------------------------------------------------------------


def _lookup(node: MappingNode, key: str, depth: int = 0) -> tuple[Node, Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key and key_node.tag != _TAG + "merge":
            return key_node, value_node
    if depth < MAX_DEPTH:
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                for item in value_node.value if isinstance(value_node, SequenceNode) else [value_node]:
                    if isinstance(item, MappingNode) and (hit := _lookup(item, key, depth + 1)):
                        return hit
    return None


def _locate(root: Node | None, path: Path, at_key: bool) -> tuple[Path, int, int]:
    """The path as the user wrote it, and the 1-based line/column of its deepest existing part.

    An endpoint written in short form (``network:`` beside its name) has no ``attachments`` key:
    ``attachments[0].X`` is reported as the endpoint's own key ``X``.
    """
    if root is None:
        return path, 1, 1
    node, mark, shown = root, root.start_mark, []
    parts = list(path)
    while parts:
        part = parts[0]
        if isinstance(node, MappingNode) and isinstance(part, str):
            hit = _lookup(node, part)
            if hit is None and part == "attachments" and parts[1:2] == [0] and _lookup(node, "network"):
                parts = parts[2:]  # short form: the attachment is the endpoint mapping itself
                continue
            if hit is None:
                break
            key_node, node = hit
            mark = key_node.start_mark if at_key and len(parts) == 1 else node.start_mark
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        elif isinstance(node, ScalarNode) and part == 0:
            parts.pop(0)  # a single value written where a list may be (to: web-1): it is item 0
            continue
        else:
            break
        shown.append(part)
        parts.pop(0)
    return (*shown, *parts), mark.line + 1, mark.column + 1
