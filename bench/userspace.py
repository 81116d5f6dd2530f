"""Userspace poll-mode switch benchmark: one JSON line, variants side by side in one run.

Two hosts, one network per encapsulation (VXLAN, Geneve with two options, NVGRE), one endpoint per
host and network, brought up by the real ``UserspaceBackend`` (and, for the kernel baseline, the
VXLAN network alone by the ``LinuxBackend``: bridge + kernel VXLAN). A generator in host-a's
endpoint sends 64-byte frames (60 on the wire without FCS: Ethernet + IPv4 + UDP + 18 bytes) to
host-b's endpoint from an AF_PACKET transmit ring it only re-arms (no per-packet Python), so it
offers far more than the switch forwards; the result is what arrives in host-b's endpoint
(its veth's rx_packets), per second:

- ``userspace_{vxlan,geneve,nvgre}_pps``: through both switches (encapsulation on host-a,
  decapsulation on host-b), batched (rx burst -> batch -> tx burst), adaptive polling;
- ``userspace_unbatched_pps``: the same switch with one recv and one send syscall per frame (VXLAN);
- ``kernel_vxlan_pps``: the kernel bridge + VXLAN device on the same topology;
- ``*_per_core_pps``: delivered pps divided by the CPU share host-a's switch used (the machine's
  cores are shared, so this is what one switch process forwards per CPU-second; its system time
  includes the kernel's transmit work — veth, the underlay bridge, the receiver's ring — done in
  its ``send``); ``*_python_per_core_pps`` the same over its user-space CPU alone;
- ``*_udp_rtt_us``: median UDP request/response round trip between the two endpoints;
- ``cpu_percent_{busy,adaptive}_{idle,loaded}``: host-a's switch CPU in each poll mode, with no
  traffic and while the generator runs (VXLAN).

Run as root: .venv/bin/python bench/userspace.py [--seconds 4]
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux.backend import network_backends
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.userspace.backend import UserspaceBackend
from netvirt.dataplane.userspace.rings import FRAME_SIZE, TxRing, tx_prefix
from netvirt.management.spec import loads
from netvirt.wire import ethernet, ipv4, udp
from netvirt.wire.addresses import mac_to_bytes
from netvirt.wire.builders import build

SPEC = """
version: 1
name: usbench
hosts:
  - {name: ha, underlay: 192.0.2.30/24}
  - {name: hb, underlay: 192.0.2.31/24}
networks:
  - {name: vx, encap: vxlan, subnet: 10.61.0.0/24}
  - name: gen
    encap: geneve
    subnet: 10.62.0.0/24
    geneve_options:
      - {class: 0x0102, type: 0x80, data: "0000abcd"}
      - {class: 0x0102, type: 0x01}
  - {name: nv, encap: nvgre, vni: 6001, subnet: 10.63.0.0/24}
endpoints:
"""
ENCAPS = {"vxlan": "vx", "geneve": "gen", "nvgre": "nv"}


def spec_text(networks) -> str:
    text = SPEC if len(networks) == 3 else SPEC.split("  - name: gen")[0] + "endpoints:\n"
    for net in networks:
        text += f"  - {{name: {net}-a, host: ha, network: {net}, listen: [udp/9]}}\n"
        text += f"  - {{name: {net}-b, host: hb, network: {net}, listen: [udp/9]}}\n"
    return text


def generate(device: str, frame_hex: str, seconds: float) -> None:
    """(In a subprocess inside the sender's namespace.) Fill a transmit ring with copies of the
    frame once, then only re-arm the frames the kernel has sent and kick it, until ``seconds``."""
    frame = bytes.fromhex(frame_hex)
    ring = TxRing(device)
    data = tx_prefix(len(frame)) + frame
    memory, end = ring.memory, ring.end
    for offset in range(0, end, FRAME_SIZE):
        memory[offset:offset + len(data)] = data
    armed, deadline = b"\x01\0\0\0", time.monotonic() + seconds
    while time.monotonic() < deadline:
        for offset in range(0, end, FRAME_SIZE):
            if not memory[offset] & 0x03:
                memory[offset:offset + 4] = armed
        try:
            ring.sock.send(b"")
        except OSError:
            pass


def udp_rtt_us(client: str, server: str, address: str, rounds: int) -> tuple[float, int]:
    """Median round trip of a 64-byte UDP request answered by an echo server in ``server``, in
    µs, and how many requests got no answer within 0.5 s (skipped: one lost frame must not end
    the run)."""
    srv = netns.socket_in(server, socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((address, 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def echo() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(2048)
            except TimeoutError:
                continue
            srv.sendto(data, peer)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    cli = netns.socket_in(client, socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(0.5)
    samples, lost = [], 0
    try:
        for number in range(rounds):
            start = time.perf_counter()
            cli.sendto(number.to_bytes(4, "big") + bytes(60), (address, port))
            try:
                while int.from_bytes(cli.recv(2048)[:4], "big") != number:
                    pass  # a late answer to an earlier request
            except TimeoutError:
                lost += 1
                continue
            samples.append(time.perf_counter() - start)
    finally:
        stop.set()
        thread.join(2)
        cli.close()
        srv.close()
    return statistics.median(samples[len(samples) // 10:]) * 1e6, lost  # skip the warm-up (slow path, ARP)


def rx_packets(namespace: str, device: str) -> int:
    with netns.netlink(namespace) as ipr:
        return ipr.get_links(ipr.link_lookup(ifname=device)[0])[0].get_attr("IFLA_STATS64")["rx_packets"]


class Bench:
    def __init__(self, networks, state_dir: Path) -> None:
        self.spec = loads(spec_text(networks), "usbench.yaml")
        self.graph = compile_network(self.spec)
        self.names = Names("usbench", TEST_PREFIX)
        self.state_dir = state_dir

    def namespace(self, endpoint: str) -> str:
        return self.names.graph_namespace(self.spec.endpoint(endpoint).host, endpoint)

    def endpoint(self, endpoint: str) -> tuple[bytes, bytes]:
        attachment = self.spec.endpoint(endpoint).attachments[0]
        return mac_to_bytes(str(attachment.mac)), attachment.ip.packed

    def frame(self, net: str) -> bytes:
        (src_mac, src), (dst_mac, dst) = self.endpoint(f"{net}-a"), self.endpoint(f"{net}-b")
        return build([ethernet.Repr(dst=dst_mac, src=src_mac, ethertype=0x0800),
                      ipv4.Repr(src=src, dst=dst, protocol=17), udp.Repr(src_port=4000, dst_port=9)], bytes(18))

    def blast(self, net: str, seconds: float) -> tuple[float, float]:
        """(delivered pps, offered pps) of a generator run from net-a to net-b."""
        sender, receiver = self.namespace(f"{net}-a"), self.namespace(f"{net}-b")
        gen = netns.popen(sender, [sys.executable, __file__, "--generate", "eth0", self.frame(net).hex(),
                                   str(seconds + 1.5)])
        try:
            time.sleep(1.0)  # the flow's first packet takes the slow path; rings fill
            first, start = rx_packets(receiver, "eth0"), time.monotonic()
            offered_first = rx_packets(self.names.graph_namespace("ha", "ha"), _host_port(self, net))
            time.sleep(seconds)
            last, end = rx_packets(receiver, "eth0"), time.monotonic()
            offered_last = rx_packets(self.names.graph_namespace("ha", "ha"), _host_port(self, net))
        finally:
            gen.wait(timeout=seconds + 20)
        return (last - first) / (end - start), (offered_last - offered_first) / (end - start)

    def rtt(self, net: str, rounds: int) -> tuple[float, int]:
        """(median UDP round trip in µs, requests lost) between net-a and net-b."""
        return udp_rtt_us(self.namespace(f"{net}-a"), self.namespace(f"{net}-b"),
                          str(self.spec.endpoint(f"{net}-b").attachments[0].ip), rounds)


def _host_port(bench: Bench, net: str) -> str:
    """The host-side veth of net-a's endpoint on host ha (what the generator's frames enter by)."""
    graph = next(g for g in bench.graph.hosts if g.host == "ha")
    return next(dev.config.peer for dev in graph.devices if dev.namespace == f"{net}-a" and dev.name == "eth0")


STARTED: list[UserspaceBackend] = []  # every switch this run started: stopped however it ends


def userspace(bench: Bench, mode: str, batched: bool) -> dict[str, UserspaceBackend]:
    backends = {g.host: UserspaceBackend(g.host, network=bench.graph, deployment=bench.names.deployment, mode=mode,
                                         batched=batched, prefix=TEST_PREFIX, state_dir=bench.state_dir)
                for g in bench.graph.hosts}
    STARTED.extend(backends.values())
    for graph in bench.graph.hosts:
        report = backends[graph.host].apply(graph)
        assert report.ok, report.errors
    return backends


def switch_cpu(backend: UserspaceBackend, seconds: float) -> float:
    """CPU % of the switch over ``seconds`` (from its cumulative CPU seconds)."""
    first = backend.counters()
    time.sleep(seconds)
    last = backend.counters()
    return 100 * (last["cpu_seconds"] - first["cpu_seconds"]) / seconds


def loaded_cpu(bench: Bench, backend: UserspaceBackend, net: str, seconds: float) -> tuple[float, float, float, float]:
    """(delivered pps, offered pps, switch CPU %, its user-space part %) while the generator runs."""
    first = backend.counters()
    started = time.monotonic()
    delivered, offered = bench.blast(net, seconds)
    last = backend.counters()
    elapsed = time.monotonic() - started
    cpu = 100 * (last["cpu_seconds"] - first["cpu_seconds"]) / elapsed
    user = 100 * (last["cpu_user_seconds"] - first["cpu_user_seconds"]) / elapsed
    return delivered, offered, cpu, user


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--generate", nargs=3, metavar=("DEVICE", "FRAME", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        device, frame, seconds = args.generate
        return generate(device, frame, float(seconds))
    result: dict[str, float | str] = {"frame_bytes": 60}
    state = Path(tempfile.mkdtemp(prefix="netvirt-bench-"))
    bench = Bench(list(ENCAPS.values()), state)
    try:
        for mode in ("busy", "adaptive"):
            backends = userspace(bench, mode, batched=True)
            time.sleep(1.0)
            result[f"cpu_percent_{mode}_idle"] = round(switch_cpu(backends["ha"], 2.0), 1)
            for encap, net in ENCAPS.items():
                delivered, offered, cpu, user = loaded_cpu(bench, backends["ha"], net, args.seconds)
                if mode == "adaptive":
                    result[f"userspace_{encap}_pps"] = round(delivered)
                    result[f"userspace_{encap}_offered_pps"] = round(offered)
                    result[f"userspace_{encap}_switch_cpu_percent"] = round(cpu, 1)
                    result[f"userspace_{encap}_per_core_pps"] = round(delivered / max(cpu / 100, 1e-3))
                    result[f"userspace_{encap}_python_per_core_pps"] = round(delivered / max(user / 100, 1e-3))
                    rtt, lost = bench.rtt(net, args.rounds)
                    result[f"userspace_{encap}_udp_rtt_us"] = round(rtt, 1)
                    result[f"userspace_{encap}_udp_lost"] = lost
                elif encap == "vxlan":
                    result["userspace_vxlan_busy_pps"] = round(delivered)
                if encap == "vxlan":
                    result[f"cpu_percent_{mode}_loaded"] = round(cpu, 1)
            for backend in backends.values():
                backend.teardown()
        backends = userspace(bench, "adaptive", batched=False)
        delivered, offered, cpu, user = loaded_cpu(bench, backends["ha"], "vx", args.seconds)
        result["userspace_unbatched_pps"] = round(delivered)
        result["userspace_unbatched_python_per_core_pps"] = round(delivered / max(user / 100, 1e-3))
        result["userspace_unbatched_switch_cpu_percent"] = round(cpu, 1)
        result["userspace_unbatched_per_core_pps"] = round(delivered / max(cpu / 100, 1e-3))
        rtt, lost = bench.rtt("vx", args.rounds)
        result["userspace_unbatched_udp_rtt_us"] = round(rtt, 1)
        result["userspace_unbatched_udp_lost"] = lost
        for backend in backends.values():
            backend.teardown()
        kernel = Bench(["vx"], state)
        linux = network_backends(kernel.graph, kernel.names.deployment, prefix=TEST_PREFIX, state_dir=state)
        for graph in kernel.graph.hosts:
            assert linux[graph.host].apply(graph).ok
        delivered, offered = kernel.blast("vx", args.seconds)
        result["kernel_vxlan_pps"] = round(delivered)
        result["kernel_vxlan_offered_pps"] = round(offered)
        rtt, lost = kernel.rtt("vx", args.rounds)
        result["kernel_vxlan_udp_rtt_us"] = round(rtt, 1)
        result["kernel_vxlan_udp_lost"] = lost
    finally:
        for backend in STARTED:
            backend.teardown()
        cleanup(bench.names, state)
    result["batched_over_unbatched"] = round(float(result["userspace_vxlan_pps"]) / max(
        float(result["userspace_unbatched_pps"]), 1.0), 2)
    result["batched_over_unbatched_per_core"] = round(float(result["userspace_vxlan_per_core_pps"]) / max(
        float(result["userspace_unbatched_per_core_pps"]), 1.0), 2)
    result["userspace_over_kernel_vxlan"] = round(float(result["userspace_vxlan_pps"]) / max(
        float(result["kernel_vxlan_pps"]), 1.0), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
