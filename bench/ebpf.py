"""eBPF data plane benchmark, everything side by side in one run: one JSON line.

- 64-byte flood dropped on a veth by XDP (``bpf/xdp_drop.c``) vs an nftables ``netdev`` ingress
  chain vs iptables ``raw PREROUTING``. The sender is an AF_PACKET TPACKET_V2 transmit ring of
  4096 frames handed to the kernel by one ``send`` each (PACKET_QDISC_BYPASS: straight to the
  veth), refilled by one copy: batches, not a packet per syscall. (BPF_F_TEST_XDP_LIVE_FRAMES
  would be faster, but this kernel refuses it with EPERM.) Dropped packets per second are read
  from each variant's own counter (XDP per-CPU counters, nft rule counter, iptables rule
  counter);
- UDP request/response RTT with 10,000 non-matching rules on the receiver's input, as a ratio to
  no rules: eBPF (tc, tuple-space maps) vs nftables vs iptables as netvirt renders them (rules
  per peer and port: nftables cannot fold them into one set);
- TCP connect latency to the last of 10,000 service VIPs: eBPF load balancer (lb.h maps) vs an
  nftables DNAT map (kube-proxy's nftables mode) vs an iptables chain of DNAT rules (kube-proxy's
  iptables mode); and eBPF with one service, for flatness;
- BPF_PROG_TEST_RUN ns per packet of each program (``prog_ns``).

Run as root: .venv/bin/python bench/ebpf.py [--seconds 2 --rules 10000 --services 10000]
"""

import argparse
import json
import mmap
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from linux import udp_rtt_us  # noqa: E402

from netvirt.dataplane.ebpf import libbpf  # noqa: E402
from netvirt.dataplane.ebpf.programs import EndpointProgram, XdpDropProgram  # noqa: E402
from netvirt.dataplane.kernel import netns  # noqa: E402
from netvirt.dataplane.kernel.build import Builder  # noqa: E402
from netvirt.dataplane.kernel.cleanup import cleanup  # noqa: E402
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names  # noqa: E402
from netvirt.dataplane.kernel.rulesets import Ruleset  # noqa: E402
from netvirt.dataplane.sim import packets  # noqa: E402
from netvirt.wire import builders  # noqa: E402
from netvirt.dataplane.userspace import rings  # noqa: E402
from netvirt.graph import (  # noqa: E402
    DROP,
    Chain,
    Dnat,
    Match,
    NatTarget,
    NetfilterHook,
    PortRange,
    Proto,
    Route,
    Rule,
    Verdict,
)

FLOOD_SOURCE = "198.51.100.7"  # RFC 5737: never a real sender
SERVER, CLIENT = "10.97.0.2", "10.97.0.1"


def pair(build: Builder) -> tuple[str, str]:
    a, b = build.namespace("ebpf-a"), build.namespace("ebpf-b")
    build.veth(a, "eth0", b, "eth0")
    build.addresses(a, "eth0", [ip_interface(f"{CLIENT}/24")])
    build.addresses(b, "eth0", [ip_interface(f"{SERVER}/24")])
    return a, b


def ifindex(namespace: str, device: str = "eth0") -> int:
    return netns.call_in(namespace, socket.if_nametoindex, device)


def mac(namespace: str, device: str = "eth0") -> bytes:
    def read() -> str:
        with netns.netlink(namespace) as ipr:
            return ipr.link("get", ifname=device)[0].get_attr("IFLA_ADDRESS")

    return bytes.fromhex(netns.call_in(namespace, read).replace(":", ""))


# --- 1. the drop flood ------------------------------------------------------------------------


TX_FRAME, TX_FRAMES = 128, 4096  # small slots: one copy re-arms the whole ring


def flood(sender: str, receiver: str, seconds: float) -> float:
    """Send 64-byte frames from ``sender`` for about ``seconds``; returns the elapsed time."""
    ip = builders.probe(ip_address(FLOOD_SOURCE), ip_address(SERVER), "udp", src_port=9, dst_port=9, size=46)
    frame = packets.frame(mac(receiver), mac(sender), ip).ljust(64, b"\0")
    sock = netns.socket_in(sender, socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind(("eth0", 0))
        sock.setsockopt(rings.SOL_PACKET, rings.PACKET_VERSION, rings.TPACKET_V2)
        sock.setsockopt(rings.SOL_PACKET, rings.PACKET_QDISC_BYPASS, 1)
        sock.setsockopt(rings.SOL_PACKET, rings.PACKET_LOSS, 1)
        size = TX_FRAME * TX_FRAMES
        sock.setsockopt(rings.SOL_PACKET, rings.PACKET_TX_RING, struct.pack("=4I", 1 << 16, size >> 16, TX_FRAME, TX_FRAMES))
        ring = mmap.mmap(sock.fileno(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        armed = (rings.tx_prefix(len(frame)) + frame).ljust(TX_FRAME, b"\0") * TX_FRAMES
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            ring[:] = armed
            sock.send(b"")
        elapsed = time.perf_counter() - start
        ring.close()
        return elapsed
    finally:
        sock.close()


def nft_counter(namespace: str) -> int:
    listing = json.loads(netns.run(namespace, ["nft", "-j", "list", "table", "netdev", "nvbench"]).stdout)
    for item in listing["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return expr["counter"]["packets"]
    return 0


def ipt_counter(namespace: str) -> int:
    out = netns.run(namespace, ["iptables", "-t", "raw", "-nvxL", "PREROUTING"]).stdout.decode().splitlines()
    return sum(int(line.split()[0]) for line in out[2:] if "198.51.100.0/24" in line)


def drop_rates(sender: str, receiver: str, seconds: float) -> dict:
    out = {}
    where = ifindex(receiver)
    with XdpDropProgram.load() as xdp:
        netns.call_in(receiver, libbpf.xdp_attach, where, xdp.programs["nv_xdp_drop"])
        try:
            xdp.configure((ip_network("198.51.100.0/24"),))
            elapsed = flood(sender, receiver, seconds)
            out["xdp_drop_pps"] = round(xdp.counters(1)[0][0][0] / elapsed)
        finally:
            netns.call_in(receiver, libbpf.xdp_detach, where)
    netns.run(receiver, ["nft", "-f", "-"], input=(
        "table netdev nvbench {\n chain ingress {\n  type filter hook ingress device \"eth0\" priority -500;\n"
        "  ip saddr 198.51.100.0/24 counter drop\n }\n}\n").encode())
    elapsed = flood(sender, receiver, seconds)
    out["nft_ingress_drop_pps"] = round(nft_counter(receiver) / elapsed)
    netns.run(receiver, ["nft", "delete", "table", "netdev", "nvbench"])
    netns.run(receiver, ["iptables", "-t", "raw", "-A", "PREROUTING", "-s", "198.51.100.0/24", "-j", "DROP"])
    elapsed = flood(sender, receiver, seconds)
    out["iptables_drop_pps"] = round(ipt_counter(receiver) / elapsed)
    netns.run(receiver, ["iptables", "-t", "raw", "-F", "PREROUTING"])
    return out


# --- 2. 10,000 rules: UDP RTT ratio -----------------------------------------------------------


def peer_rules(count: int) -> tuple[Rule, ...]:
    """``count`` drop rules, one per (peer that never sends, port): no two differ in one field only."""
    return tuple(Rule(match=Match(src=ip_network(f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32"), proto=Proto.UDP,
                                  dst_ports=PortRange.single(20000 + i % 40000)), action=DROP, comment=f"peer {i}")
                 for i in range(count))  # fmt: skip


def rule_rtts(client: str, server: str, build: Builder, count: int, rounds: int) -> dict:
    chain = Chain(hook=NetfilterHook.INPUT, rules=peer_rules(count), policy=Verdict.ACCEPT)
    base = udp_rtt_us(client, server, SERVER, rounds)
    out = {}
    with EndpointProgram.load() as program:
        program.configure((chain,), (), lambda name: ifindex(server, name))
        where = ifindex(server)
        netns.call_in(server, libbpf.tc_attach, where, libbpf.TC_INGRESS, program.programs["nv_ingress"])
        try:
            out["ebpf_10k_rules_rtt_ratio"] = round(udp_rtt_us(client, server, SERVER, rounds) / base, 3)
        finally:
            netns.call_in(server, libbpf.tc_detach, where, libbpf.TC_INGRESS)
    for target, key in (("nftables", "nft_10k_rules_rtt_ratio"), ("iptables", "iptables_10k_rules_rtt_ratio")):
        ruleset = Ruleset(filter=[chain])
        (build.nftables if target == "nftables" else build.iptables)(server, ruleset)
        out[key] = round(udp_rtt_us(client, server, SERVER, rounds) / base, 3)
        (build.no_nftables if target == "nftables" else build.no_iptables)(server)
    out["rules_base_rtt_us"] = round(base, 1)
    return out


# --- 3. 10,000 services: connect latency ------------------------------------------------------


def vip(i: int) -> str:
    return f"10.96.{i // 256 % 256}.{i % 256}"


def connect_us(client: str, address: str, port: int, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        sock = netns.socket_in(client, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(2)
        start = time.perf_counter()
        sock.connect((address, port))
        samples.append(time.perf_counter() - start)
        sock.close()
    return statistics.median(samples[rounds // 10:]) * 1e6


def service_rules(count: int) -> tuple[Rule, ...]:
    return tuple(Rule(match=Match(dst=ip_network(f"{vip(i)}/32"), proto=Proto.TCP, dst_ports=PortRange.single(80)),
                      action=Dnat(targets=(NatTarget(ip_address(SERVER), 8080),)), comment=f"service {i}")
                 for i in range(count))  # fmt: skip


def service_connects(client: str, server: str, build: Builder, count: int, rounds: int) -> dict:
    listener = netns.socket_in(server, socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((SERVER, 8080))
    listener.listen(512)
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    build.routes(client, [Route(dst=ip_network("10.96.0.0/16"), via=ip_address(SERVER))])
    last = vip(count - 1)
    out = {}
    try:
        where = ifindex(client)
        for services, key in ((service_rules(count), "ebpf_10k_services_connect_us"),
                              (service_rules(1), "ebpf_1_service_connect_us")):
            with EndpointProgram.load() as program:
                program.configure((), services, lambda name: where, reroute=True)
                netns.call_in(client, libbpf.tc_attach, where, libbpf.TC_EGRESS, program.programs["nv_egress"])
                netns.call_in(client, libbpf.tc_attach, where, libbpf.TC_INGRESS, program.programs["nv_ingress"])
                try:
                    out[key] = round(connect_us(client, vip(len(services) - 1), 80, rounds), 1)
                finally:
                    for point in (libbpf.TC_EGRESS, libbpf.TC_INGRESS):
                        netns.call_in(client, libbpf.tc_detach, where, point)
        elements = ", ".join(f"{vip(i)} . 80 : {SERVER} . 8080" for i in range(count))
        netns.run(client, ["nft", "-f", "-"], input=(
            "table ip nvbench {\n map services {\n  type ipv4_addr . inet_service : ipv4_addr . inet_service\n"
            f"  elements = {{ {elements} }}\n }}\n chain output {{\n  type nat hook output priority -100;\n"
            "  dnat ip to ip daddr . tcp dport map @services\n }\n}\n").encode())
        out["nft_10k_services_connect_us"] = round(connect_us(client, last, 80, rounds), 1)
        netns.run(client, ["nft", "delete", "table", "ip", "nvbench"])
        restore = "*nat\n:NVBENCH - [0:0]\n-A OUTPUT -j NVBENCH\n" + "".join(
            f"-A NVBENCH -d {vip(i)}/32 -p tcp --dport 80 -j DNAT --to-destination {SERVER}:8080\n" for i in range(count)
        ) + "COMMIT\n"
        netns.run(client, ["iptables-restore", "--noflush"], input=restore.encode(), timeout=120)
        out["iptables_10k_services_connect_us"] = round(connect_us(client, last, 80, rounds), 1)
        netns.run(client, ["iptables", "-t", "nat", "-F"])
    finally:
        stop.set()
        listener.close()
    return out


# --- 4. ns per packet -----------------------------------------------------------------------------


def program_ns(rules: int, services: int) -> dict:
    frame = packets.frame(b"\2" * 6, b"\4" * 6, builders.probe(ip_address("10.0.0.1"), ip_address(vip(services - 1)), "tcp",
                                                              src_port=40000, dst_port=80))
    found = {}
    with EndpointProgram.load() as program:
        chain = Chain(hook=NetfilterHook.INPUT, rules=peer_rules(rules))
        program.configure((chain,), service_rules(services), lambda name: 1)
        found["nv_ingress_10k_rules"] = program.run(frame, NetfilterHook.INPUT, repeat=100_000).ns
        found["nv_egress_10k_services"] = program.run(frame, NetfilterHook.OUTPUT, repeat=100_000).ns
    with XdpDropProgram.load() as xdp:
        xdp.configure((ip_network("10.0.0.0/24"),))
        found["nv_xdp_drop"] = xdp.run(frame, repeat=100_000)[1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--connects", type=int, default=500)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=10_000)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="netvirt-bench-"))
    names = Names(f"ebpf{int(time.time()) % 100000}", TEST_PREFIX)
    result: dict = {"bench": "ebpf", "rules": args.rules, "services": args.services}
    try:
        with Builder(names, state) as build:
            a, b = pair(build)
            result |= drop_rates(a, b, args.seconds)
            result |= rule_rtts(a, b, build, args.rules, args.rounds)
            result |= service_connects(a, b, build, args.services, args.connects)
        result["prog_ns"] = program_ns(args.rules, args.services)
    finally:
        cleanup(names, state)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
