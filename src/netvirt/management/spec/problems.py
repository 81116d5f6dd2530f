"""Problems found in a spec, and the exception that carries all of them at once."""

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Path = tuple[str | int, ...]
"""A spec path as keys and list indices: ``("endpoints", 2, "network")``."""


def format_path(path: Path) -> str:
    """``("endpoints", 2, "network")`` -> ``endpoints[2].network``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@dataclass(frozen=True, order=True, slots=True)
class Problem:
    """One thing wrong with a spec, where it is (1-based line and column; 0 = the whole file)."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: error: {self.path}: {self.message}" if self.path else f"{where}: error: {self.message}"

    def as_dict(self) -> dict[str, str | int]:
        return {"file": self.file, "line": self.line, "col": self.col, "path": self.path, "message": self.message}


class SpecError(Exception):
    """The spec is invalid; ``problems`` lists every problem found, sorted by file and position."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems)
        count = len(self.problems)
        super().__init__("\n".join(map(str, self.problems)) or "invalid spec")
        self.summary = f"{count} problem{'s' * (count != 1)}"


def did_you_mean(word: object, candidates: Iterable[str]) -> str:
    """`` (did you mean 'blue'?)`` when a candidate is close to ``word``, else ``""``: similar by
    ``difflib``'s ratio, or one edit away (a letter changed, added, dropped or two swapped), which
    the ratio misses in short names (``e9`` for ``e1``)."""
    if not isinstance(word, str):
        return ""
    pool: Sequence[str] = candidates if isinstance(candidates, Sequence) else list(candidates)
    match = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not match and len(word) > 1:
        match = [candidate for candidate in pool if _one_edit(word, candidate)][:1]
    return f" (did you mean {match[0]!r}?)" if match else ""


def _one_edit(word: str, other: str) -> bool:
    if abs(len(word) - len(other)) > 1 or word == other:
        return False
    start = 0
    while start < min(len(word), len(other)) and word[start] == other[start]:
        start += 1
    a, b = word[start:], other[start:]
    return a[1:] == b[1:] or a[1:] == b or a == b[1:] or (a[:2] == b[1::-1] and a[2:] == b[2:])
