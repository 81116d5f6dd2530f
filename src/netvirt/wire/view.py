"""The base of every header's zero-copy ``View``."""

from typing import ClassVar

from netvirt.wire.errors import truncated


class HeaderView:
    """In-place access to one header: ``buffer`` is a memoryview of the given buffer from
    ``offset`` on. At least ``minimum_length`` bytes must be there, else ``Truncated`` naming
    ``layer``. Subclasses add the header's fields as properties."""

    __slots__ = ("buffer",)
    layer: ClassVar[str]
    minimum_length: ClassVar[int]

    def __init__(self, buffer, offset: int = 0) -> None:
        self.buffer = memoryview(buffer)[offset:]
        if len(self.buffer) < self.minimum_length:
            raise truncated(self.layer, offset, offset + len(self.buffer), self.minimum_length)
