"""Shared helpers for the Linux kernel tests: a deployment fixture that always cleans up, a
two-host VXLAN overlay, and real traffic (ping, TCP/UDP through Python sockets) in namespaces."""

import secrets
import socket
import threading
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_interface

import pytest

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.build import Builder
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.links import VxlanSpec
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.graph import FLOOD_MAC
from netvirt.graph.host import Neighbour


@dataclass(frozen=True)
class Deployment:
    names: Names
    state_dir: object

    def builder(self) -> Builder:
        return Builder(self.names, self.state_dir)

    def namespaces(self) -> list[str]:
        """The namespaces of this deployment that exist now."""
        return [name for name in netns.names() if self.names.owns_namespace(name)]


def new_deployment(state_dir) -> Deployment:
    return Deployment(Names(f"t{secrets.token_hex(3)}", TEST_PREFIX), state_dir)


@pytest.fixture
def deployment(tmp_path):
    """A fresh test deployment (prefix nvt, random name, private state dir), cleaned up after."""
    dep = new_deployment(tmp_path)
    yield dep
    cleanup(dep.names, dep.state_dir)
    assert dep.namespaces() == []


# --- a two-host VXLAN overlay --------------------------------------------------------------

VNI = 100
UNDERLAY = {"h1": "192.168.50.1", "h2": "192.168.50.2"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    local: str
    namespace: str
    mac: str
    ipv4: str
    ipv6: str

    def address(self, version: int) -> str:
        return self.ipv4 if version == 4 else self.ipv6


@dataclass
class Overlay:
    underlay: str
    hosts: dict[str, str] = field(default_factory=dict)  # host -> namespace
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # local name -> endpoint


def build_overlay(build: Builder) -> Overlay:
    """Underlay bridge in one namespace; hosts h1, h2 with a bridge and a VXLAN device (VNI 100,
    static FDB and ARP/ND proxy entries, no learning); two endpoints per host, dual stack."""
    names = build.names
    overlay = Overlay(underlay=build.namespace("ul"))
    build.bridge(overlay.underlay, "ulbr")
    number = 0
    for host, vtep in UNDERLAY.items():
        ns = overlay.hosts[host] = build.namespace(host)
        build.veth(ns, "eth0", overlay.underlay, host)
        build.link(overlay.underlay, host, master="ulbr")
        build.addresses(ns, "eth0", [ip_interface(f"{vtep}/24")])
        build.bridge(ns, "br0")
        build.vxlan(ns, "vx100", VxlanSpec(vni=VNI, local=ip_address(vtep), arp_proxy=True, underlay="eth0"))
        build.link(ns, "vx100", master="br0")
        for side in "ab":
            number += 1
            local = f"{host}{side}"
            ep = Endpoint(host, local, build.namespace(local), names.mac(local),
                          f"10.10.0.{number}", f"fd10::{number}")
            overlay.endpoints[local] = ep
            build.veth(ep.namespace, "eth0", ns, local, mac=ep.mac)
            build.link(ns, local, master="br0")
            build.addresses(ep.namespace, "eth0", [ip_interface(f"{ep.ipv4}/24"), ip_interface(f"{ep.ipv6}/64")])
    for host, ns in overlay.hosts.items():
        remotes = [ep for ep in overlay.endpoints.values() if ep.host != host]
        fdb = [(FLOOD_MAC, ip_address(UNDERLAY[h])) for h in UNDERLAY if h != host]
        fdb += [(ep.mac, ip_address(UNDERLAY[ep.host])) for ep in remotes]
        build.vxlan_fdb(ns, "vx100", fdb)
        build.neighbours(ns, "vx100", [
            Neighbour(ip_address(ep.address(version)), ep.mac, "vx100") for ep in remotes for version in (4, 6)
        ])
    return overlay


# --- traffic ------------------------------------------------------------------------------

def ping(namespace: str, address: str, count: int = 1, timeout: float = 2) -> bool:
    """Whether ``count`` ICMP echo requests from ``namespace`` to ``address`` were answered."""
    done = netns.run(namespace, ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(timeout), address],
                     check=False)
    return done.returncode == 0


class TcpServer:
    """A TCP server in a namespace: it reads each connection to the end, then answers with
    ``name`` followed by the bytes it got."""

    def __init__(self, namespace: str, address: str, port: int, name: bytes = b""):
        family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
        self.sock = netns.socket_in(namespace, family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(64)
        self.name = name
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    chunks = []
                    while chunk := conn.recv(65536):  # until the client's shutdown(SHUT_WR)
                        chunks.append(chunk)
                    conn.sendall(self.name + b"".join(chunks))
                except OSError:
                    pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in the serving thread
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=2)

    def __enter__(self) -> "TcpServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tcp_request(namespace: str, address: str, port: int, payload: bytes, timeout: float = 2) -> bytes:
    """Connect from ``namespace`` to ``address``:``port``, send ``payload``, return the reply.
    Raises OSError (refused, timed out, ...) when the connection fails."""
    family = socket.AF_INET6 if ip_address(address).version == 6 else socket.AF_INET
    sock = netns.socket_in(namespace, family, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
