"""Packet wire codecs: exact, fast encoders and decoders for the headers netvirt moves.

Contract: every header has a frozen ``Repr`` (``parse(buf) -> Repr``, ``emit() -> bytes``;
lengths and checksums are derived at emit, never stored) and a zero-copy ``View`` over a
``memoryview`` for in-place reads and writes with incremental checksum updates (RFC 1624).
Parsing raises only ``ParseError`` subclasses (``Truncated``, ``Malformed``, ``BadChecksum``)
naming the layer, offset and reason. This package is the leaf: it imports nothing else from
netvirt.
"""
