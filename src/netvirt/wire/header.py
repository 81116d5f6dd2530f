"""What every header's ``Repr`` shares: equality within its own kind of header only.

Contract: a ``Repr`` is a named tuple (cheap to build, immutable, positional), and tuples compare
by value alone, so ``udp.Repr(80, 443) == nvgre.Repr(80, 443)`` would hold, and both would equal
the plain tuple ``(80, 443)``: a trap for diffs and caches. Every ``Repr`` class therefore sets
``__eq__, __ne__, __hash__ = same_header, other_header, tuple.__hash__``: a Repr equals only a
Repr of its own class with equal fields. The hash stays the tuple's: equal Reprs hash equal, and
different headers with equal fields share a hash, which dict and set lookups settle with ``__eq__``.
"""

_equal = tuple.__eq__
_unequal = tuple.__ne__


def same_header(self: tuple, other: object) -> bool:
    return type(other) is type(self) and _equal(self, other)


def other_header(self: tuple, other: object) -> bool:
    return type(other) is not type(self) or _unequal(self, other)
