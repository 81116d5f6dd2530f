"""The internet checksum (RFC 1071), pseudo-headers (RFC 768, RFC 8200 §8.1) and incremental
update (RFC 1624).

The one's-complement sum of 16-bit words equals the big-endian integer of the bytes modulo 0xFFFF,
because 2**16 = 1 (mod 0xFFFF); ``int.from_bytes`` does the loop in C. The only difference is
one's-complement zero: a non-zero sum that is a multiple of 0xFFFF is 0xFFFF, not 0.
"""

_IPV4 = 4
_IPV6 = 16


def partial(data) -> int:
    """Unfolded sum of ``data`` as 16-bit big-endian words (an odd last byte is padded with zero).

    Partial sums of even-length pieces add up: ``partial(a) + partial(b) == partial(a + b)``
    modulo 0xFFFF when ``len(a)`` is even.
    """
    value = int.from_bytes(data, "big")
    return value << 8 if len(data) & 1 else value


def finish(total: int) -> int:
    """The checksum field for an unfolded sum: the one's complement of the folded sum."""
    if total == 0:
        return 0xFFFF
    return 0xFFFF - ((total - 1) % 0xFFFF + 1)


def compute(data, initial: int = 0) -> int:
    """Internet checksum of ``data`` (RFC 1071), continuing from the unfolded sum ``initial``."""
    return finish(initial + partial(data))


def verifies(data, initial: int = 0) -> bool:
    """True when ``data`` (its checksum field included) sums to one's-complement zero."""
    total = initial + partial(data)
    return total != 0 and total % 0xFFFF == 0


def pseudo_header(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """Unfolded sum of the IPv4 (RFC 768) or IPv6 (RFC 8200 §8.1) pseudo-header.

    The family follows ``len(src)``: 4 bytes for IPv4, 16 for IPv6.
    """
    if len(src) != len(dst) or len(src) not in (_IPV4, _IPV6):
        raise ValueError(
            f"pseudo-header addresses must both be 4 (IPv4) or 16 (IPv6) bytes, "
            f"got {len(src)} and {len(dst)}"
        )
    return int.from_bytes(src, "big") + int.from_bytes(dst, "big") + protocol + length


def update(checksum: int, old, new) -> int:
    """RFC 1624 eqn. 3: the checksum after bytes ``old`` became ``new`` (equal, even lengths).

    ``HC' = ~(~HC + ~m + m')`` — the same result as recomputing from scratch.
    """
    total = (0xFFFF - checksum) + (0xFFFF - int.from_bytes(old, "big") % 0xFFFF)
    total += int.from_bytes(new, "big")
    return 0xFFFF - ((total - 1) % 0xFFFF + 1)


def update_word(checksum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for one 16-bit word that changed from ``old`` to ``new``."""
    total = (0xFFFF - checksum) + (0xFFFF - old) + new
    return 0xFFFF - ((total - 1) % 0xFFFF + 1)

