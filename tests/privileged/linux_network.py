"""Helpers for the privileged tests that run whole specs through the ``linux`` backend: bring a
spec up under a throwaway deployment (prefix nvt, private state dir), start servers in every
endpoint, and probe flows with real sockets (TCP connect, UDP request/response, ICMP echo)."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from linux_testbed import ping

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux.backend import LinuxBackend, network_backends
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.kernel.targets import TARGETS
from netvirt.graph import NetworkGraph
from netvirt.trace.plan import reach_network
from netvirt.management.spec import Spec

TIMEOUT = 0.6  # seconds a probe waits: dropped flows cost this much
RETRY_TIMEOUT = 2.0  # a "blocked" flow is probed once more this long (a loaded machine answers late)
PORTS = (("tcp", 80), ("tcp", 5432), ("tcp", 22), ("udp", 53))


@dataclass
class Network:
    """A spec realised in the kernel by one ``LinuxBackend`` per host."""

    spec: Spec
    graph: NetworkGraph
    names: Names
    state_dir: Path
    backends: dict[str, LinuxBackend]

    def namespace(self, endpoint: str) -> str:
        """The kernel namespace of ``endpoint``."""
        return self.names.graph_namespace(self.spec.endpoint(endpoint).host, endpoint)

    def addresses(self, endpoint: str) -> list[str]:
        """Every address of ``endpoint`` (IPv4 first)."""
        found = []
        for attachment in self.spec.endpoint(endpoint).attachments:
            found += [str(a) for a in (attachment.ip, attachment.ip6) if a is not None]
        return found

    def apply(self, filter: str = "nftables") -> None:
        """(Re)apply every host graph with ``filter`` as a full converge (repairing drift, like
        ``netvirt up``); fails the test on any error."""
        for graph in self.graph.hosts:
            backend = self.backends[graph.host]
            backend.target = TARGETS[filter]
            backend.forget()
            report = backend.apply(graph)
            assert report.ok, report.errors


def bring_up(spec: Spec, state_dir: Path, filter: str = "nftables", backend: str = "linux") -> Network:
    """``spec`` in the kernel with its outside world (the ``external`` server of ``reach``), as
    ``netvirt up`` builds it."""
    names = Names(f"t{secrets.token_hex(3)}", TEST_PREFIX)
    graph = reach_network(compile_network(spec))
    backends = network_backends(graph, names.deployment, {g.host: filter for g in graph.hosts},
                                prefix=TEST_PREFIX, state_dir=state_dir, kinds={g.host: backend for g in graph.hosts})
    network = Network(spec, graph, names, state_dir, backends)
    try:
        network.apply(filter)
    except BaseException:
        tear_down(network)
        raise
    return network


def use_backend(network: Network, backend: str | dict[str, str]) -> None:
    """Re-apply every host with kernel backend ``backend`` (or host -> backend; a full converge:
    the new backend removes what the other made that it does not use)."""
    kinds = backend if isinstance(backend, dict) else {g.host: backend for g in network.graph.hosts}
    network.backends = network_backends(network.graph, network.names.deployment, prefix=TEST_PREFIX,
                                        state_dir=network.state_dir, kinds=kinds)
    network.apply()


@contextmanager
def deployed(spec: Spec, state_dir: Path, filter: str = "nftables") -> Iterator[Network]:
    """``bring_up`` for a ``with`` block (module fixtures): torn down also on failure."""
    network = bring_up(spec, state_dir, filter)
    try:
        yield network
    finally:
        tear_down(network)


def tear_down(network: Network) -> None:
    cleanup(network.names, network.state_dir)
    left = [name for name in netns.names() if network.names.owns_namespace(name)]
    assert left == [], f"namespaces left behind: {left}"
    pins = sorted(str(path) for path in network.names.bpf_root.rglob("*")) if network.names.bpf_root.exists() else []
    assert pins == [] and not network.names.bpf_root.exists(), f"eBPF pins left behind: {pins}"


# --- servers --------------------------------------------------------------------------------------


@dataclass
class Servers:
    """TCP and UDP servers on ``PORTS`` in every endpoint namespace (IPv4 and IPv6), each
    answering with its endpoint's name (TCP: on accept; UDP: to every datagram)."""

    network: Network
    sockets: list[socket.socket] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> "Servers":
        for endpoint in self.network.spec.index["endpoints"]:
            namespace = self.network.namespace(endpoint)
            for family, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                for proto, port in PORTS:
                    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
                    sock = netns.socket_in(namespace, family, kind)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((anywhere, port))
                    if proto == "tcp":
                        sock.listen(64)
                    thread = threading.Thread(target=_serve, args=(sock, proto, endpoint.encode()), daemon=True)
                    thread.start()
                    self.sockets.append(sock)
                    self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self.threads:
            thread.join(timeout=2)


def _serve(sock: socket.socket, proto: str, name: bytes) -> None:
    while True:
        try:
            if proto == "tcp":
                conn, _ = sock.accept()
                with conn:
                    conn.sendall(name)
            else:
                _, peer = sock.recvfrom(2048)
                if peer is None:  # shut down
                    return
                sock.sendto(name, peer)
        except OSError:
            return


# --- probes ---------------------------------------------------------------------------------------


def probe(namespace: str, address: str, proto: str, port: int = 0, timeout: float = TIMEOUT) -> str:
    """What a real probe from ``namespace`` gets: ``ok:<endpoint that answered>``, ``ok`` (ICMP
    echo answered), ``refused`` (TCP reset or ICMP unreachable) or ``blocked`` (no answer, or no
    route)."""
    if proto == "icmp":
        return "ok" if ping(namespace, address, timeout=1) else "blocked"
    family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = netns.socket_in(namespace, family, kind)
    with sock:
        sock.settimeout(timeout)
        try:
            if proto == "tcp":
                sock.connect((address, port))
            else:
                sock.sendto(b"probe", (address, port))
            return "ok:" + sock.recv(64).decode()
        except ConnectionRefusedError:
            return "refused"
        except OSError:  # timeout, host/network unreachable
            return "blocked"


Flow = tuple[str, str, str, int]  # (source endpoint, destination address, proto, port)


def flows(network: Network, extra_targets: tuple[str, ...] = ()) -> list[Flow]:
    """Every (source endpoint, other endpoint's address or extra target, proto, port) combination."""
    endpoints = sorted(network.spec.index["endpoints"])
    out = []
    for source in endpoints:
        own = set(network.addresses(source))
        targets = [a for e in endpoints if e != source for a in network.addresses(e) if a not in own]
        targets += list(extra_targets)
        for address in targets:
            out += [(source, address, proto, port) for proto, port in PORTS] + [(source, address, "icmp", 0)]
    return out


def run_probes(network: Network, wanted: list[Flow]) -> dict[Flow, str]:
    """The outcome of every flow, probed concurrently; a flow that got no answer is probed once
    more with a longer wait, so a slow answer on a loaded machine is not taken for a drop."""
    with ThreadPoolExecutor(max_workers=48) as pool:
        outcomes = dict(zip(wanted, pool.map(lambda f: probe(network.namespace(f[0]), *f[1:]), wanted), strict=True))
        silent = [flow for flow, outcome in outcomes.items() if outcome == "blocked"]
        again = pool.map(lambda f: probe(network.namespace(f[0]), *f[1:], timeout=RETRY_TIMEOUT), silent)
        outcomes.update(zip(silent, again, strict=True))
        return outcomes
