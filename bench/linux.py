"""Linux kernel data plane benchmark: one JSON line.

- bring-up / converge / teardown of a generated spec of HOSTS x ENDPOINTS through the real path
  (compile, one ``LinuxBackend`` per host: namespaces, veths, bridges, VXLAN with static FDB,
  distributed router, nftables policies, service DNAT, read-back);
- the same size built with the bare ``Builder`` (a VXLAN overlay without router or rules), whose
  endpoints carry the traffic measurements below;
- iperf3 TCP throughput and UDP request/response RTT endpoint-to-endpoint on the same host and
  across hosts over VXLAN, as ratios to a bare veth pair measured in the same run;
- the same through a router namespace holding 10,000 non-matching rules: nftables (consecutive
  rules differing only in source prefix become one set lookup) vs iptables (a linear chain).

Run as root: .venv/bin/python bench/linux.py [--hosts 10 --endpoints 20 --seconds 2]
"""

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux.backend import network_backends
from netvirt.dataplane.kernel.build import Builder
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.links import VxlanSpec
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.graph import FLOOD_MAC
from netvirt.graph.host import Neighbour, Route
from netvirt.graph.rules import DROP, Chain, Match, NetfilterHook, PortRange, Proto, Rule
from netvirt.management.spec import generate


def overlay(build: Builder, hosts: int, endpoints: int) -> dict[str, tuple[str, str]]:
    """hosts x endpoints on one VXLAN segment; returns endpoint -> (namespace, IPv4 address)."""
    names, underlay = build.names, build.namespace("ul")
    build.bridge(underlay, "ulbr")
    vteps = {f"h{h}": f"192.168.0.{h + 1}" for h in range(hosts)}
    where: dict[str, tuple[str, str]] = {}
    macs: dict[str, tuple[str, str, str]] = {}  # endpoint -> (host, mac, ip)
    for h, (host, vtep) in enumerate(vteps.items()):
        ns = build.namespace(host)
        build.veth(ns, "eth0", underlay, host)
        build.link(underlay, host, master="ulbr")
        build.addresses(ns, "eth0", [ip_interface(f"{vtep}/16")])
        build.bridge(ns, "br0")
        build.vxlan(ns, "vx", VxlanSpec(vni=100, local=ip_address(vtep), arp_proxy=True, underlay="eth0"))
        build.link(ns, "vx", master="br0")
        for e in range(endpoints):
            local = f"{host}e{e}"
            address = f"10.{h}.{e // 250}.{e % 250 + 1}"
            ep = build.namespace(local)
            build.veth(ep, "eth0", ns, f"e{e}", mac=names.mac(local))
            build.link(ns, f"e{e}", master="br0")
            build.addresses(ep, "eth0", [ip_interface(f"{address}/8")])
            where[local] = (ep, address)
            macs[local] = (host, names.mac(local), address)
    for host in vteps:
        ns = names.namespace(host)
        remote = [(h, mac, ip) for h, mac, ip in macs.values() if h != host]
        fdb = [(FLOOD_MAC, ip_address(v)) for h, v in vteps.items() if h != host]
        build.vxlan_fdb(ns, "vx", fdb + [(mac, ip_address(vteps[h])) for h, mac, _ in remote])
        build.neighbours(ns, "vx", [Neighbour(ip_address(ip), mac, "vx") for _, mac, ip in remote])
    return where


def routed(build: Builder) -> tuple[str, str, str]:
    client, router, server = (build.namespace(n) for n in ("client", "router", "server"))
    build.veth(client, "eth0", router, "c")
    build.veth(server, "eth0", router, "s")
    build.forwarding(router, ipv4=True, ipv6=False)
    for ns, link, address in ((client, "eth0", "10.99.1.2/24"), (router, "c", "10.99.1.1/24"),
                              (router, "s", "10.99.2.1/24"), (server, "eth0", "10.99.2.2/24")):
        build.addresses(ns, link, [ip_interface(address)])
    build.routes(client, [Route(dst=ip_network("0.0.0.0/0"), via=ip_address("10.99.1.1"))])
    build.routes(server, [Route(dst=ip_network("0.0.0.0/0"), via=ip_address("10.99.2.1"))])
    return client, router, server


def bare_veth(build: Builder) -> tuple[str, str]:
    a, b = build.namespace("bare-a"), build.namespace("bare-b")
    build.veth(a, "eth0", b, "eth0")
    build.addresses(a, "eth0", [ip_interface("10.98.0.1/24")])
    build.addresses(b, "eth0", [ip_interface("10.98.0.2/24")])
    return a, b


def iperf3_bps(client: str, server: str, address: str, seconds: float) -> float:
    daemon = netns.popen(server, ["iperf3", "-s", "-1", "-B", address], stdout=-3, stderr=-3)
    try:
        for _ in range(50):
            done = netns.run(client, ["iperf3", "-c", address, "-t", str(seconds), "-J"], check=False,
                             timeout=seconds + 20)
            report = json.loads(done.stdout or b"{}")
            if done.returncode == 0 and "error" not in report:
                return report["end"]["sum_received"]["bits_per_second"]
            time.sleep(0.05)  # the server was not listening yet
        raise RuntimeError(report.get("error") or done.stderr.decode())
    finally:
        daemon.kill()
        daemon.wait()


def udp_rtt_us(client: str, server: str, address: str, rounds: int) -> float:
    """Median round trip of a 64-byte UDP request answered by an echo server, in microseconds."""
    srv = netns.socket_in(server, socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((address, 0))
    port = srv.getsockname()[1]

    def echo():
        while True:
            data, peer = srv.recvfrom(2048)
            if data == b"stop":
                return
            srv.sendto(data, peer)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    cli = netns.socket_in(client, socket.AF_INET, socket.SOCK_DGRAM)
    cli.settimeout(2)
    samples = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            cli.sendto(b"x" * 64, (address, port))
            cli.recvfrom(2048)
            samples.append(time.perf_counter() - start)
    finally:
        cli.sendto(b"stop", (address, port))
        thread.join(2)
        cli.close()
        srv.close()
    return statistics.median(samples[rounds // 10:]) * 1e6  # skip the warm-up (ARP, caches)


def non_matching_rules(count: int) -> Ruleset:
    """``count`` drop rules for sources that never send (172.16.0.0/12, /32 each)."""
    rules = tuple(
        Rule(match=Match(src=ip_network(f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32"),
                         proto=Proto.UDP, dst_ports=PortRange(1, 65535)), action=DROP)
        for i in range(count)
    )
    return Ruleset(filter=[Chain(hook=NetfilterHook.FORWARD, rules=rules)])


def spec_lifecycle(hosts: int, endpoints: int, state: Path) -> dict:
    """Seconds to bring a generated spec up with LinuxBackend, converge again, and tear it down."""
    spec = generate(hosts, endpoints)
    network = compile_network(spec)
    deployment = f"spec{int(time.time()) % 100000}"
    backends = network_backends(network, deployment, prefix=TEST_PREFIX, state_dir=state)
    out: dict = {"spec_namespaces": sum(len(g.namespaces) for g in network.hosts) + len(network.segments),
                 "spec_devices": sum(len(g.devices) for g in network.hosts)}
    try:
        for label in ("spec_up_s", "spec_converge_noop_s"):
            for backend in backends.values():
                backend.forget()  # both passes full converges (see bench/linux_converge.py for incremental)
            start = time.perf_counter()
            for graph in network.hosts:
                report = backends[graph.host].apply(graph)
                if not report.ok:
                    raise RuntimeError(f"{graph.host}: {report.errors}")
            out[label] = round(time.perf_counter() - start, 3)
    finally:
        start = time.perf_counter()
        cleanup(Names(deployment, TEST_PREFIX), state)
        out["spec_down_s"] = round(time.perf_counter() - start, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--rules", type=int, default=10_000)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="netvirt-bench-"))
    names = Names(f"bench{int(time.time()) % 100000}", TEST_PREFIX)
    result: dict = {"bench": "linux", "hosts": args.hosts, "endpoints_per_host": args.endpoints}
    try:
        result |= spec_lifecycle(args.hosts, args.endpoints, state)
        start = time.perf_counter()
        with Builder(names, state) as build:
            where = overlay(build, args.hosts, args.endpoints)
        result["up_s"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        with Builder(names, state) as build:
            overlay(build, args.hosts, args.endpoints)
        result["converge_noop_s"] = round(time.perf_counter() - start, 3)
        with Builder(names, state) as build:
            bare = bare_veth(build)
            client, router, server = routed(build)

        paths = {
            "bare_veth": (bare[0], bare[1], "10.98.0.2"),
            "same_host": (where["h0e0"][0], where["h0e1"][0], where["h0e1"][1]),
            "cross_host_vxlan": (where["h0e0"][0], where["h1e0"][0], where["h1e0"][1]),
            "routed_no_rules": (client, server, "10.99.2.2"),
        }
        rules = non_matching_rules(args.rules)
        measured = {}
        for label, (a, b, address) in paths.items():
            measured[label] = (iperf3_bps(a, b, address, args.seconds), udp_rtt_us(a, b, address, args.rounds))
        for backend in ("nftables", "iptables"):
            with Builder(names, state) as build:
                start = time.perf_counter()
                (build.nftables if backend == "nftables" else build.iptables)(router, rules)
                result[f"apply_{args.rules}_rules_{backend}_s"] = round(time.perf_counter() - start, 3)
            measured[f"routed_{args.rules}_rules_{backend}"] = (
                iperf3_bps(client, server, "10.99.2.2", args.seconds),
                udp_rtt_us(client, server, "10.99.2.2", args.rounds),
            )
            cleanup_rules = ["nft", "flush", "ruleset"]
            netns.run(router, cleanup_rules)
        bare_bps, bare_rtt = measured["bare_veth"]
        routed_bps, routed_rtt = measured["routed_no_rules"]
        for label, (bps, rtt) in measured.items():
            result[f"{label}_tcp_gbps"] = round(bps / 1e9, 2)
            result[f"{label}_udp_rtt_us"] = round(rtt, 1)
            base_bps, base_rtt = (routed_bps, routed_rtt) if label.startswith("routed_") else (bare_bps, bare_rtt)
            result[f"{label}_tcp_ratio"] = round(bps / base_bps, 3)
            result[f"{label}_rtt_ratio"] = round(rtt / base_rtt, 3)
    finally:
        start = time.perf_counter()
        cleanup(names, state)
        result["down_s"] = round(time.perf_counter() - start, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
