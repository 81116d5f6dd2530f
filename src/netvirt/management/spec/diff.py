"""What changed between two resolved specs, object by object (for incremental compilation)."""

from dataclasses import dataclass
from typing import Any, Literal

from netvirt.management.spec.model import KINDS, Spec

HEADER = ("version", "name", "description", "service_subnet")


@dataclass(frozen=True, slots=True)
class Change:
    """One object added, removed or changed. ``kind`` is a ``KINDS`` entry, or ``"spec"`` for a
    top-level key (then ``name`` is that key, e.g. ``"name"``: renaming a spec changes its MACs)."""

    kind: str
    name: str
    action: Literal["added", "removed", "changed"]
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class SpecDiff:
    """All changes, in ``KINDS`` order (dependencies first), then by name."""

    changes: tuple[Change, ...]

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of(self, action: str) -> list[tuple[str, str]]:
        """``(kind, name)`` of every change with this action (``added``, ``removed``, ``changed``)."""
        return [(change.kind, change.name) for change in self.changes if change.action == action]

    @property
    def added(self) -> list[tuple[str, str]]:
        return self.of("added")

    @property
    def removed(self) -> list[tuple[str, str]]:
        return self.of("removed")

    @property
    def changed(self) -> list[tuple[str, str]]:
        return self.of("changed")

    def kinds(self) -> set[str]:
        """The kinds with at least one change."""
        return {change.kind for change in self.changes}


def diff(old: Spec, new: Spec) -> SpecDiff:
    """Objects added, removed or changed (by kind and name) going from ``old`` to ``new``.

    Both specs should be resolved (as ``load`` returns them): a change that moves allocated
    values, e.g. a host MTU that lowers a network's derived MTU, then shows on every object it moves.
    """
    changes = [
        Change("spec", key, "changed", getattr(old, key), getattr(new, key))
        for key in HEADER
        if getattr(old, key) != getattr(new, key)
    ]
    for kind in KINDS:
        before, after = old.index[kind], new.index[kind]
        for name in sorted(before.keys() | after.keys()):
            was, now = before.get(name), after.get(name)
            if was is None:
                changes.append(Change(kind, name, "added", None, now))
            elif now is None:
                changes.append(Change(kind, name, "removed", was, None))
            elif was != now:
                changes.append(Change(kind, name, "changed", was, now))
    return SpecDiff(tuple(changes))
