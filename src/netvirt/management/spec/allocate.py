"""Deterministic allocation of what a spec leaves out: VNIs, addresses, MACs, VIPs.

The rule (documented in docs/spec.md): every allocated value is a function of *names*, never of
declaration order. Each item has a preferred value, a stable hash (SHA-256) of its names mapped into
the allowed range; pinned values are taken first; then items are placed in name order, each at its
preferred value or, if that is taken, the next free one upward (wrapping around). So reordering
items, or adding or removing one, moves no other item unless their preferred values collide -- rare
in any range that is not nearly full. Pin a value in the spec to make it permanent.
"""

import hashlib
from collections.abc import Iterable

VNI_FIRST = 10_000
VNI_LAST = 999_999
"""Allocated VNIs/VSIDs lie here; pin values below 10000 and they never meet an allocated one."""


def stable_hash(*names: str) -> int:
    """A 64-bit hash of names that is the same on every machine and every run."""
    return int.from_bytes(hashlib.sha256("\x00".join(names).encode()).digest()[:8], "big")


def place(wanted: Iterable[tuple[str, int]], taken: set[int], first: int, last: int) -> dict[str, int] | None:
    """Give each ``(key, preferred)`` a free value in ``[first, last]`` (the module's rule).

    ``taken`` holds values already in use and grows with every placement. Returns ``None`` when the
    range has fewer free values than keys.
    """
    size = last - first + 1
    wanted = sorted(wanted)
    used = sum(1 for value in taken if first <= value <= last) if size < 2**32 else 0
    if len(wanted) > size - used:
        return None
    placed = {}
    for key, preferred in wanted:
        value = first + preferred % size
        while value in taken:
            value = value + 1 if value < last else first
        taken.add(value)
        placed[key] = value
    return placed


def mac_text(value: int) -> str:
    return value.to_bytes(6, "big").hex(":")


def mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


MAC_FIRST = 0x02_00_00_00_00_00
MAC_LAST = 0x02_FF_FF_FF_FF_FF
"""Derived MACs: first octet 02 (locally administered, unicast), 40 bits from the hash."""
