"""netvirt's two BPF programs as Python objects: load, fill the maps, run on bytes, read counters.

Contract:
- ``EndpointProgram.load(pin_dir=None)``: ``bpf/endpoint.c`` loaded (the maps pinned under
  ``pin_dir`` when given, programs too, so they outlive this process and can be found again by
  ``EndpointProgram.open(pin_dir)``). ``configure(filter chains, NAT rules, ifindex)`` compiles
  and writes the maps (``maps``); ``run(frame, hook, ...)`` is ``BPF_PROG_TEST_RUN`` of the
  input (``nv_ingress``) or output (``nv_egress``) program -> ``Run``; ``counters()`` sums the
  per-CPU counters; ``conntrack()`` lists the connection entries.
- ``XdpDropProgram``: the same for ``bpf/xdp_drop.c``: ``configure(prefixes)``, ``run(frame)``,
  ``counters()`` -> packets and bytes dropped per list entry, and passed.
"""

import ctypes
import os
from ctypes import c_uint32
from dataclasses import dataclass
from pathlib import Path

from netvirt.dataplane.ebpf import layouts as L
from netvirt.dataplane.ebpf import maps
from netvirt.dataplane.ebpf.build import object_file
from netvirt.dataplane.ebpf.libbpf import BpfObject, Pinned, Program, pin, pinned, ring_records, test_run
from netvirt.graph import Chain, IPNetwork, NetfilterHook, Rule

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
XDP_DROP, XDP_PASS = 1, 2
ENDPOINT_MAPS = ("nv_chains", "nv_tuples", "nv_rules", "nv_conntrack", "nv_log", "nv_counters", "nv_lb_services",
                 "nv_lb_backends", "nv_lb_reverse_nat", "nv_lb_affinity", "nv_lb_vips")  # fmt: skip
ENDPOINT_PROGRAMS = ("nv_ingress", "nv_egress")
XDP_MAPS = ("nv_drop4", "nv_drop6", "nv_drop_counters")
XDP_PROGRAMS = ("nv_xdp_drop",)


@dataclass(frozen=True)
class Run:
    """One test run: the program's return code, the bytes it left, and its decision."""

    retval: int
    packet: bytes
    index: int | None  # the deciding rule, None: the chain's policy
    action: int        # layouts.ACCEPT / DROP / REJECT
    ct_state: int
    nat: bool
    ns: int


class _Loaded:
    """A loaded object whose maps and programs may be pinned in one directory."""

    source = ""
    map_names: tuple[str, ...] = ()
    program_names: tuple[str, ...] = ()

    def __init__(self, obj: BpfObject | Pinned):
        self.obj = obj
        self.programs = {name: obj.program(name) for name in self.program_names}

    @classmethod
    def open(cls, pin_dir: Path):
        """What ``load(pin_dir)`` pinned, opened again (BpfError when it is not there)."""
        pinned_ = Pinned(pin_dir)
        try:
            return cls(pinned_)
        except BaseException:
            pinned_.close()
            raise

    @classmethod
    def load(cls, pin_dir: Path | None = None, reuse_pins: bool = False):
        """Load the program; with ``pin_dir``, pin its maps and programs there. ``reuse_pins``:
        share the maps already pinned there (a re-load keeps connection tracking and counters)."""
        reuse: dict[str, int] = {}
        if pin_dir is not None and reuse_pins:
            reuse = {name: pinned(pin_dir / name) for name in cls.map_names if (pin_dir / name).exists()}
        try:
            self = cls(BpfObject(object_file(cls.source), reuse))
        finally:
            for fd in reuse.values():
                os.close(fd)
        if pin_dir is not None:
            for name in cls.map_names:
                if name not in reuse:
                    pin(self.obj.map(name, c_uint32, c_uint32).fd, pin_dir / name)
            for name, program in self.programs.items():
                pin(program.fd, pin_dir / name)
        return self

    def close(self) -> None:
        self.obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EndpointProgram(_Loaded):
    source = "endpoint"
    map_names = ENDPOINT_MAPS
    program_names = ENDPOINT_PROGRAMS

    @staticmethod
    def entries(filter_chains: tuple[Chain, ...], nat_rules: tuple[Rule, ...], ifindex, *, reroute: bool = False):
        """The map entries of an endpoint namespace's input/output chains and output NAT rules
        (``maps.endpoint_entries``); raises ``maps.MapError`` for what the maps cannot hold."""
        compiled = {}
        for chain in filter_chains:
            if chain.hook not in (NetfilterHook.INPUT, NetfilterHook.OUTPUT):
                raise maps.MapError(f"a {chain.hook} filter chain: the eBPF backend filters at input and output only")
            number = L.CHAIN_INPUT if chain.hook is NetfilterHook.INPUT else L.CHAIN_OUTPUT
            compiled[number] = maps.compile_chain(chain.rules, chain.policy, ifindex, number)
        services = maps.compile_services(nat_rules)
        logs = {number: entries.logs for number, entries in compiled.items()}
        return maps.endpoint_entries(compiled.get(L.CHAIN_INPUT), compiled.get(L.CHAIN_OUTPUT), services, reroute), logs

    def configure(self, filter_chains: tuple[Chain, ...], nat_rules: tuple[Rule, ...], ifindex, *, reroute: bool = False) -> None:
        """Compile and write the maps (see ``entries``; nothing is written when it raises)."""
        entries, self.logs = self.entries(filter_chains, nat_rules, ifindex, reroute=reroute)
        maps.write_endpoint(self.obj, entries)

    def run(self, frame: bytes, hook: NetfilterHook, *, ifindex: int = 1, mark: int = 0, repeat: int = 1) -> Run:
        name = "nv_ingress" if hook is NetfilterHook.INPUT else "nv_egress"
        ctx = L.SkBuff(mark=mark, ifindex=ifindex)
        retval, packet, out, ns = test_run(self.programs[name], frame, ctx, repeat)
        index = out.cb[0]
        return Run(retval, packet, None if index == L.POLICY_INDEX else index, out.cb[1] & 0xFF, out.cb[1] >> 8 & 0xFF,
                   bool(out.cb[1] >> 16 & 1), ns)

    def counters(self) -> dict[str, int]:
        values = self.obj.map("nv_counters", c_uint32, ctypes.c_uint64, per_cpu=True)
        return {name: sum(v.value if hasattr(v, "value") else v for v in values.lookup(c_uint32(i)))
                for i, name in enumerate(L.COUNTERS)}

    def conntrack(self):
        table = self.obj.map("nv_conntrack", L.Flow, L.Conntrack)
        return [(key, table.lookup(key)) for key in table.keys()]

    def log_records(self, timeout: float = 0.0) -> list[L.LogRecord]:
        """The records ``log`` rules wrote to the ring buffer since the last read (consumed)."""
        return ring_records(self.obj.map("nv_log", c_uint32, c_uint32), L.LogRecord, timeout)

    def clear_conntrack(self) -> None:
        self.obj.map("nv_conntrack", L.Flow, L.Conntrack).clear()
        self.obj.map("nv_lb_affinity", L.LbAffinityKey, L.LbAffinityValue).clear()

    def program(self, hook: NetfilterHook) -> Program:
        return self.programs["nv_ingress" if hook is NetfilterHook.INPUT else "nv_egress"]


class XdpDropProgram(_Loaded):
    source = "xdp_drop"
    map_names = XDP_MAPS
    program_names = XDP_PROGRAMS

    def configure(self, prefixes: tuple[IPNetwork, ...]) -> None:
        maps.write_drop_list(self.obj, maps.compile_drop_list(prefixes))

    def run(self, frame: bytes, repeat: int = 1) -> tuple[int, int]:
        """(XDP verdict, ns per run)."""
        retval, _, _, ns = test_run(self.programs["nv_xdp_drop"], frame, None, repeat)
        return retval, ns

    def counters(self, entries: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
        """(packets, bytes) dropped by each of the first ``entries`` list entries, and passed."""
        table = self.obj.map("nv_drop_counters", c_uint32, L.DropCounter, per_cpu=True)

        def total(slot: int) -> tuple[int, int]:
            values = table.lookup(c_uint32(slot))
            return sum(v.packets for v in values), sum(v.bytes for v in values)

        return [total(i) for i in range(entries)], total(L.DROP_MAX)

