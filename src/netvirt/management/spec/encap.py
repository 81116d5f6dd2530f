"""Encapsulation overhead: how many bytes of the underlay MTU an overlay packet loses.

An overlay network's MTU is the largest inner IP packet that fits in one underlay IP packet, so
the overhead counts every byte the tunnel adds around the inner IP packet, including the inner
Ethernet header the tunnel carries (the outer Ethernet header is not part of the underlay IP MTU):

=============  =====================================================  ==========  ==========
encapsulation  bytes added                                            IPv4 outer  IPv6 outer
=============  =====================================================  ==========  ==========
vxlan          outer IP + UDP 8 + VXLAN 8 + inner Ethernet 14          50          70
geneve         outer IP + UDP 8 + Geneve 8 + options + inner Eth 14    50 + opts   70 + opts
nvgre          outer IP + GRE with key 8 + inner Ethernet 14           42          62
none           nothing (the network is bridged onto the underlay)     0           0
=============  =====================================================  ==========  ==========

Outer IP is 20 bytes (IPv4, RFC 791) or 40 (IPv6, RFC 8200). VXLAN is RFC 7348, Geneve RFC 8926
(each option: 4-byte option header + data, a multiple of 4 bytes; at most 252 bytes in all), NVGRE
RFC 7637 (GRE with the key bit: 4-byte base header + 4-byte key carrying VSID and FlowID). These are
the numbers Linux uses too (VXLAN_HEADROOM 50 / VXLAN6_HEADROOM 70, GENEVE_IPV4_HLEN 50).
"""

from typing import Literal

Encap = Literal["vxlan", "geneve", "nvgre", "none"]

OUTER_IP = {4: 20, 6: 40}
INNER_ETHERNET = 14
TUNNEL_HEADER = {"vxlan": 8 + 8, "geneve": 8 + 8, "nvgre": 8, "none": 0}  # UDP + VXLAN/Geneve; GRE+key

IPV4_MIN_MTU = 68  # RFC 791
IPV6_MIN_MTU = 1280  # RFC 8200 section 5
MAX_MTU = 65535
GENEVE_MAX_OPTIONS = 252  # 6-bit option length field, in 4-byte words (RFC 8926 section 3.4)


def overhead(encap: Encap, underlay_version: int, options_length: int = 0) -> int:
    """Bytes the encapsulation adds around the inner IP packet (see the module table)."""
    if encap == "none":
        return 0
    extra = options_length if encap == "geneve" else 0
    return OUTER_IP[underlay_version] + TUNNEL_HEADER[encap] + INNER_ETHERNET + extra
