"""Packet wire codecs: exact, fast encoders and decoders for the headers netvirt moves.

Contract: every header has a frozen ``Repr`` (``parse(buf) -> Repr``, ``emit() -> bytes``;
lengths and checksums are derived at emit, never stored) and a zero-copy ``View`` over a
``memoryview`` for in-place reads and writes with incremental checksum updates (RFC 1624).
Parsing raises only ``ParseError`` subclasses (``Truncated``, ``Malformed``, ``BadChecksum``)
naming the layer, offset and reason. This package is the leaf: it imports nothing else from
netvirt.

Whole frames: ``dissect`` (bytes -> layer Reprs), ``to_json``, ``summary``, ``build`` (Reprs ->
bytes), ``encapsulate`` (VXLAN/Geneve/NVGRE over IPv4/IPv6) and ``flow_entropy``. A data plane's
per-hop decision fields (addresses, protocol, ports, flags): ``fields.headers``, read in place
without a ``Repr``. docs/wire.md is the guide.
"""

from netvirt.wire import (addresses, arp, checksum, ethernet, fields, geneve, gre, icmpv4, icmpv6, ipv4, ipv6,
                          nvgre, tcp, udp, vxlan)
from netvirt.wire.builders import build, encapsulate, flow_entropy
from netvirt.wire.errors import BadChecksum, Malformed, ParseError, Truncated
from netvirt.wire.stack import dissect, summary, to_json

__all__ = [
    "BadChecksum", "Malformed", "ParseError", "Truncated",
    "addresses", "arp", "build", "checksum", "dissect", "encapsulate", "ethernet", "fields", "flow_entropy",
    "geneve", "gre", "icmpv4", "icmpv6", "ipv4", "ipv6", "nvgre", "summary", "tcp", "to_json",
    "udp", "vxlan",
]
