"""Errors raised while parsing wire bytes.

Parsing raises only these: ``Truncated`` (the buffer ends before the header or a length field says
it does), ``Malformed`` (a field holds a value the RFC forbids or netvirt cannot decode) and
``BadChecksum``. Each names the layer, the byte offset of the problem and the reason; offsets from
``dissect`` are absolute within the frame.
"""


class ParseError(Exception):
    """Wire bytes that do not decode: ``str()`` reads "<layer> at offset <n>: <kind>: <reason>"."""

    kind = "parse error"

    def __init__(self, layer: str, offset: int, reason: str) -> None:
        super().__init__(layer, offset, reason)
        self.layer = layer
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.layer} at offset {self.offset}: {self.kind}: {self.reason}"


class Truncated(ParseError):
    """The bytes end before the header, or before the length its fields announce."""

    kind = "truncated"


class Malformed(ParseError):
    """A field holds a value the RFC forbids, or one netvirt does not decode."""

    kind = "malformed"


class BadChecksum(ParseError):
    """A checksum does not verify."""

    kind = "bad checksum"


def truncated(layer: str, start: int, end: int, size: int) -> Truncated:
    """The ``Truncated`` error for ``size`` bytes wanted at ``start`` where the bytes end at ``end``."""
    return Truncated(layer, start, f"need {size} bytes, have {max(end - start, 0)}")
