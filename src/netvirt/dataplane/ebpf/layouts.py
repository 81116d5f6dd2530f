"""The map layouts of ``bpf/netvirt.h``, ``bpf/endpoint.c`` and ``bpf/xdp_drop.c`` as ctypes
structures (field for field, same order and sizes; tests/dataplane/ebpf checks the sizes against
the BTF of the compiled objects). Constants mirror the C ``#define``s."""

import ctypes
from ctypes import c_uint8, c_uint16, c_uint32, c_uint64

NONE = 0x10000  # NV_NONE: a port / ICMP field the packet does not carry
MAX_TUPLES = 128
BUCKET_RULES = 8
POLICY_INDEX = 0xFFFFFFFF
CHAIN_INPUT, CHAIN_OUTPUT = 0, 1
ACCEPT, DROP, REJECT = 1, 2, 3
PORT_WILD, PORT_EXACT, PORT_RANGE = 0, 1, 2
OPT_FIB = 1
LB_AFFINITY = 1
DROP_MAX = 1024
COUNTERS = ("accepted", "dropped", "rejected", "dnat", "reverse_nat", "logged")


class Key(ctypes.Structure):
    """struct nv_key: a packet's fields as one mask tuple sees them."""

    _fields_ = [
        ("tuple", c_uint32), ("src", c_uint32 * 4), ("dst", c_uint32 * 4), ("src_port", c_uint32),
        ("dst_port", c_uint32), ("icmp_type", c_uint32), ("icmp_code", c_uint32), ("in_ifindex", c_uint32),
        ("out_ifindex", c_uint32), ("mark", c_uint32), ("family", c_uint8), ("proto", c_uint8),
        ("ct_state", c_uint8), ("pad", c_uint8),
    ]  # fmt: skip


class Tuple(ctypes.Structure):
    _fields_ = [("mask", Key), ("min_index", c_uint32), ("src_port", c_uint8), ("dst_port", c_uint8), ("pad", c_uint8 * 2)]


class Rule(ctypes.Structure):
    _fields_ = [
        ("index", c_uint32), ("mark", c_uint32), ("src_lo", c_uint16), ("src_hi", c_uint16), ("dst_lo", c_uint16),
        ("dst_hi", c_uint16), ("action", c_uint8), ("reject", c_uint8), ("log", c_uint8), ("set_mark", c_uint8),
    ]  # fmt: skip


class Bucket(ctypes.Structure):
    _fields_ = [("count", c_uint32), ("rules", Rule * BUCKET_RULES)]


class Chain(ctypes.Structure):
    _fields_ = [("tuples", c_uint32), ("flags", c_uint32), ("active", c_uint8), ("policy", c_uint8), ("pad", c_uint8 * 2)]


class Flow(ctypes.Structure):
    """struct nv_flow: a connection-tracking tuple (sim netfilter.Flow)."""

    _fields_ = [
        ("src", c_uint32 * 4), ("dst", c_uint32 * 4), ("src_port", c_uint16), ("dst_port", c_uint16),
        ("family", c_uint8), ("proto", c_uint8), ("pad", c_uint8 * 2),
    ]  # fmt: skip


class Conntrack(ctypes.Structure):
    _fields_ = [("other", Flow), ("rev_nat_index", c_uint16), ("is_reply", c_uint8), ("seen_reply", c_uint8)]


class LogRecord(ctypes.Structure):
    _fields_ = [("chain", c_uint32), ("index", c_uint32), ("flow", Flow), ("action", c_uint32)]


class LbKey(ctypes.Structure):
    _fields_ = [("address", c_uint32 * 4), ("dport", c_uint16), ("backend_slot", c_uint16), ("proto", c_uint8),
                ("family", c_uint8), ("pad", c_uint8 * 2)]  # fmt: skip


class LbService(ctypes.Structure):
    _fields_ = [("backend_id", c_uint32), ("count", c_uint16), ("rev_nat_index", c_uint16), ("flags", c_uint8),
                ("pad", c_uint8 * 3)]  # fmt: skip


class LbBackend(ctypes.Structure):
    _fields_ = [("address", c_uint32 * 4), ("port", c_uint16), ("family", c_uint8), ("pad", c_uint8)]


class LbReverseNat(ctypes.Structure):
    _fields_ = [("address", c_uint32 * 4), ("port", c_uint16), ("family", c_uint8), ("pad", c_uint8)]


class LbAffinityKey(ctypes.Structure):
    _fields_ = [("client", c_uint32 * 4), ("rev_nat_id", c_uint16), ("family", c_uint8), ("pad", c_uint8)]


class LbAffinityValue(ctypes.Structure):
    _fields_ = [("last_used", c_uint64), ("backend_id", c_uint32), ("pad", c_uint32)]


class Lpm4(ctypes.Structure):
    _fields_ = [("prefixlen", c_uint32), ("address", c_uint8 * 4)]


class Lpm6(ctypes.Structure):
    _fields_ = [("prefixlen", c_uint32), ("address", c_uint8 * 16)]


class DropCounter(ctypes.Structure):
    _fields_ = [("packets", c_uint64), ("bytes", c_uint64)]


class SkBuff(ctypes.Structure):
    """The writable head of ``struct __sk_buff`` BPF_PROG_TEST_RUN takes and returns (to ``cb``)."""

    _fields_ = [
        ("len", c_uint32), ("pkt_type", c_uint32), ("mark", c_uint32), ("queue_mapping", c_uint32),
        ("protocol", c_uint32), ("vlan_present", c_uint32), ("vlan_tci", c_uint32), ("vlan_proto", c_uint32),
        ("priority", c_uint32), ("ingress_ifindex", c_uint32), ("ifindex", c_uint32), ("tc_index", c_uint32),
        ("cb", c_uint32 * 5),
    ]  # fmt: skip


def address_words(packed: bytes) -> "ctypes.Array[c_uint32]":
    """An address as the four network-order words of ``nv_key``/``nv_flow`` (IPv4 in word 0)."""
    words = (c_uint32 * 4)()
    ctypes.memmove(words, packed, len(packed))
    return words
