"""Every header's Repr equals only a Repr of its own kind: no two headers with the same field
values compare equal (``udp.Repr(80, 443)`` vs ``nvgre.Repr(80, 443)``), nor a Repr and a plain tuple."""

import pkgutil
from importlib import import_module
from itertools import permutations

import netvirt.wire

REPRS = [module.Repr for module in (import_module(f"netvirt.wire.{info.name}")
                                    for info in pkgutil.iter_modules(netvirt.wire.__path__)) if hasattr(module, "Repr")]


def same_values(cls, values: tuple):
    """An instance of ``cls`` holding ``values`` (whatever its number of fields): the trap's shape."""
    return tuple.__new__(cls, values)


def test_every_header_module_has_a_repr():
    assert len(REPRS) == 12


def test_reprs_of_different_headers_with_equal_fields_are_not_equal():
    from netvirt.wire import nvgre, udp
    assert udp.Repr(80, 443) != nvgre.Repr(80, 443) and not udp.Repr(80, 443) == nvgre.Repr(80, 443)
    values = (80, 443)
    for a, b in permutations(REPRS, 2):
        first, second = same_values(a, values), same_values(b, values)
        assert first != second and not first == second, (a.__module__, b.__module__)


def test_a_repr_equals_its_own_kind_with_equal_fields_and_hashes_alike():
    for cls in REPRS:
        values = tuple(range(len(cls._fields)))
        one, other = same_values(cls, values), cls._make(values)
        assert one == other and not one != other and hash(one) == hash(other), cls.__module__
        assert one != cls._make((*values[:-1], -1)), cls.__module__
        assert one != values and values != one and not one == values, cls.__module__  # nor a plain tuple
        assert {one: 1}[other] == 1
