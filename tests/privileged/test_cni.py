"""netvirt-cni driven for real: by a libcni-like harness (every verb, on the embedded store) and by
Debian's podman 4.3 (its CNI backend) running two busybox containers on two netvirt hosts.

Each test has its own deployment (prefix nvt), state dir, store, controller, two in-process agents
with the linux backend, and (podman) a private containers.conf, storage and CNI config dir: nothing
of the machine's podman state is touched, and everything is removed also on failure."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cni_harness import Libcni, PluginError
from conftest import require_tool

from netvirt.control.agent import Agent, AgentThread
from netvirt.control.compile import compile_network
from netvirt.control.controller import Controller
from netvirt.control.store import open_store
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.kernel.observe import KernelObserver
from netvirt.dataplane.linux.backend import LinuxBackend
from netvirt.management.api import create_app
from netvirt.management.server import Limits, bind, server
from netvirt.management.spec import loads
from netvirt.trace.plan import plan_trace
from netvirt.trace.verify import Verifier

SPEC = """\
version: 1
name: cni-test
hosts:
  - {name: host-a, underlay: 192.168.79.1/24}
  - {name: host-b, underlay: 192.168.79.2/24}
networks:
  - {name: pods, encap: vxlan, vni: 7900, subnet: 10.79.0.0/24}
policies:
  - name: pods-in
    network: pods
    direction: ingress
    default: allow
    rules:
      - {action: drop, proto: tcp, dst_port: 8080}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _eventually(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s")


@dataclass
class World:
    names: Names
    store_url: str
    controller: Controller
    url: str
    plugins: Path
    tmp: Path

    def plugin_conf(self, host: str, **extra) -> dict:
        return {"type": "netvirt-cni", "network": "pods", "host": host, "deployment": self.names.deployment,
                "prefix": TEST_PREFIX, "timeout": 60, **extra}

    def endpoints(self) -> list[dict]:
        return httpx.get(f"{self.url}/v1/endpoints").json()["endpoints"]

    def namespaces(self) -> list[str]:
        return [name for name in netns.names() if self.names.owns_namespace(name)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    names = Names(f"t{secrets.token_hex(3)}", TEST_PREFIX)
    state = tmp_path / "state"
    store_url = f"sqlite://{tmp_path / 'store.db'}"
    store = open_store(store_url)
    controller = Controller(store)
    controller.apply(loads(SPEC, "cni-test.yaml"))
    agents = [
        AgentThread(Agent(host, store, LinuxBackend(host, deployment=names.deployment, prefix=TEST_PREFIX, state_dir=state),
                          heartbeat_interval=1.0)).start()
        for host in ("host-a", "host-b")
    ]
    port = _free_port()
    api = server(create_app(controller), Limits())  # as `netvirt controller` serves it
    thread = threading.Thread(target=api.run, kwargs={"sockets": [bind("127.0.0.1", port)]}, daemon=True)
    thread.start()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "netvirt-cni").symlink_to(Path(sys.executable).parent / "netvirt-cni")
    try:
        _eventually(lambda: api.started, what="the controller's API up")
        controller.wait_converged(30)
        yield World(names, store_url, controller, f"http://127.0.0.1:{port}", plugins, tmp_path)
    finally:
        api.should_exit = True
        thread.join(10)
        try:
            controller.delete()
            controller.wait_converged(30)
        finally:
            for agent in agents:
                agent.stop()
            store.close()
            cleanup(names, state)
    left = [name for name in netns.names() if names.owns_namespace(name)]
    assert left == [], f"namespaces left behind: {left}"


def _links(namespace: str) -> dict[str, list[str]]:
    """Link name -> its addresses, in a namespace."""
    ipr = netns.netlink(namespace)
    try:
        found = {}
        for link in ipr.get_links():
            addresses = ipr.get_addr(index=link["index"])
            found[link.get_attr("IFLA_IFNAME")] = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in addresses]
        return found
    finally:
        ipr.close()


@pytest.fixture
def containers(world: World) -> Iterator[dict[str, Path]]:
    """Two namespaces as a runtime makes them before calling ADD (removed after the test)."""
    made = {name: netns.path(world.names.namespace(name)) for name in ("ctr-1", "ctr-2")}
    try:
        for name in made:
            netns.ensure(world.names.namespace(name))
        yield made
    finally:
        for name in made:
            netns.remove(world.names.namespace(name))


def test_libcni_harness_add_check_gc_status_del(world: World, containers: dict[str, Path]):
    """Every CNI verb as libcni sends it, through the embedded store (the plugin opens the same
    SQLite file the controller and agents use)."""
    conflist = {"cniVersion": "1.1.0", "name": "nvt-pods", "plugins": [world.plugin_conf("host-a", store=world.store_url)]}
    cni = Libcni(conflist, [world.plugins, Path("/usr/lib/cni")], world.tmp / "cache")
    assert cni.version() == {"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    cni.status()
    first = "c1" + secrets.token_hex(31)
    result = cni.add(first, str(containers["ctr-1"]))
    mac, address = result["interfaces"][1]["mac"], result["ips"][0]["address"]
    assert result["cniVersion"] == "1.1.0" and result["interfaces"][1]["name"] == "eth0"
    assert result["interfaces"][1]["sandbox"] == str(containers["ctr-1"]) and result["interfaces"][1]["mtu"] == 1450
    assert result["interfaces"][0] == {"name": result["interfaces"][0]["name"]} and result["interfaces"][0]["name"].startswith("ve-")
    assert address.startswith("10.79.0.") and address.endswith("/24") and result["ips"][0]["interface"] == 1
    assert "version" not in result["ips"][0]  # 1.x results have none
    inside = _links(world.names.namespace("ctr-1"))
    assert address in inside["eth0"] and set(inside) == {"lo", "eth0"}
    endpoint = f"cni-{first[:12]}"
    assert [e["name"] for e in world.endpoints()] == [endpoint]
    assert world.endpoints()[0]["labels"] == {"cni-network": "nvt-pods", "cni-container": first[:63], "cni-ifname": "eth0"}
    cni.check(first, str(containers["ctr-1"]))

    # CHECK compares with what is realised: an address taken away is reported
    ipr = netns.netlink(world.names.namespace("ctr-1"))
    try:
        ipr.addr("del", index=ipr.link_lookup(ifname="eth0")[0], address=address.split("/")[0], prefixlen=24)
    finally:
        ipr.close()
    with pytest.raises(PluginError) as raised:
        cni.check(first, str(containers["ctr-1"]))
    assert raised.value.code == 100 and f"lacks address {address}" in raised.value.error["details"]

    # GC: the runtime lost the second container (no cache): its endpoint goes, the first stays
    second = "c2" + secrets.token_hex(31)
    cni.add(second, str(containers["ctr-2"]))
    (world.tmp / "cache" / "results" / f"nvt-pods-{second}-eth0").unlink()
    cni.gc([(first, "eth0")])
    assert [e["name"] for e in world.endpoints()] == [endpoint]
    assert set(_links(world.names.namespace("ctr-2"))) == {"lo"}

    # DEL is idempotent and leaves the runtime's namespace as it found it
    cni.delete(first, str(containers["ctr-1"]))
    cni.delete(first, str(containers["ctr-1"]))
    assert world.endpoints() == []
    assert set(_links(world.names.namespace("ctr-1"))) == {"lo"}
    assert not any(".cni-" in name for name in world.namespaces())

    # chained host-local IPAM: the address comes from its range, DEL releases it
    ipam_dir = world.tmp / "ipam"
    ipam = {"type": "host-local", "dataDir": str(ipam_dir),
            "ranges": [[{"subnet": "10.79.0.0/24", "rangeStart": "10.79.0.200", "rangeEnd": "10.79.0.210"}]]}
    chained = Libcni({**conflist, "cniVersion": "1.0.0",  # Debian's host-local speaks up to 1.0.0
                      "plugins": [world.plugin_conf("host-a", store=world.store_url, ipam=ipam)]},
                     [world.plugins, Path("/usr/lib/cni")], world.tmp / "cache")
    third = "c3" + secrets.token_hex(31)
    assert chained.add(third, str(containers["ctr-1"]))["ips"][0]["address"] == "10.79.0.200/24"
    assert (ipam_dir / "nvt-pods" / "10.79.0.200").exists()
    chained.check(third, str(containers["ctr-1"]))
    chained.delete(third, str(containers["ctr-1"]))
    assert not (ipam_dir / "nvt-pods" / "10.79.0.200").exists() and world.endpoints() == []

    # STATUS and errors in the spec's format
    lost = Libcni({**conflist, "plugins": [world.plugin_conf("host-z", store=world.store_url)]}, [world.plugins], world.tmp / "c")
    with pytest.raises(PluginError) as raised:
        lost.status()
    assert raised.value.code == 50 and raised.value.error["msg"] == "the applied spec has no host 'host-z'"
    with pytest.raises(PluginError) as raised:
        lost.add("c4" + secrets.token_hex(31), str(containers["ctr-2"]))
    assert raised.value.code == 7 and "unknown host 'host-z'" in raised.value.error["details"]
    assert raised.value.error["cniVersion"] == "1.1.0" and world.endpoints() == []


# --- podman ---------------------------------------------------------------------------------------


@dataclass
class Podman:
    root: Path
    env: dict[str, str]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = ["podman", "--runtime", "runc", "--root", str(self.root / "root"), "--runroot", str(self.root / "runroot"), *args]
        ran = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check:
            assert ran.returncode == 0, f"{' '.join(args)}: {ran.stderr}"
        return ran


@pytest.fixture
def podman(world: World) -> Iterator[Podman]:
    require_tool("podman")
    require_tool("runc")
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("busybox-static is not installed (scripts/setup installs it)")
    root = Path(tempfile.mkdtemp(prefix="nvt-pod-", dir="/tmp"))  # podman refuses a runroot over 50 characters
    rootfs = root / "rootfs"
    for directory in ("bin", "www", "tmp", "net.d", "root", "runroot"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    (rootfs / "www" / "index.html").write_text("served by netvirt-cni\n")
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    for applet in ("sh", "ping", "nc", "httpd", "sleep", "printf"):
        (rootfs / "bin" / applet).symlink_to("busybox")
    (root / "containers.conf").write_text(f"""\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["{world.plugins}", "/usr/lib/cni"]
network_config_dir = "{root / 'net.d'}"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "{root / 'tmp'}"
""")
    (root / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{root / "runroot"}"\ngraphroot = "{root / "root"}"\n')
    for host in ("host-a", "host-b"):
        conflist = {"cniVersion": "1.0.0", "name": f"nvt-{host}", "plugins": [world.plugin_conf(host, controller=world.url)]}
        (root / "net.d" / f"nvt-{host}.conflist").write_text(json.dumps(conflist))
    env = {**os.environ, "CONTAINERS_CONF": str(root / "containers.conf"), "CONTAINERS_STORAGE_CONF": str(root / "storage.conf")}
    run = Podman(root, env)
    try:
        yield run
    finally:
        run("rm", "--force", "--all", "--time", "0", check=False)
        subprocess.run(["umount", "-R", str(root / "runroot")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_podman_runs_two_containers_on_two_hosts(world: World, podman: Podman):
    links_before = set(_root_links())
    rootfs = str(podman.root / "rootfs")
    podman("run", "-d", "--name", "nvt-web", "--network", "nvt-host-a", "--rootfs", rootfs,
           "/bin/sh", "-c", "httpd -p 80 -h /www; httpd -p 8080 -h /www; exec sleep 600")
    podman("run", "-d", "--name", "nvt-client", "--network", "nvt-host-b", "--rootfs", rootfs, "/bin/sleep", "600")
    endpoints = {e["host"]: e for e in world.endpoints()}
    assert set(endpoints) == {"host-a", "host-b"}
    web_ip = endpoints["host-a"]["attachments"][0]["ip"]
    inspect = json.loads(podman("inspect", "nvt-web").stdout)[0]["NetworkSettings"]["Networks"]["nvt-host-a"]
    assert inspect["IPAddress"] == web_ip  # podman took the address netvirt allocated

    # they reach each other over VXLAN: the tunnel of host-b counts the packets
    tunnel_before = _tx_packets(world.names.graph_namespace("host-b", "host-b"), "vxlan-pods")
    ping = podman("exec", "nvt-client", "ping", "-c", "3", "-W", "2", web_ip)
    assert " 0% packet loss" in ping.stdout
    assert _tx_packets(world.names.graph_namespace("host-b", "host-b"), "vxlan-pods") >= tunnel_before + 3
    served = podman("exec", "nvt-client", "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {web_ip} 80")
    assert served.stdout.startswith("HTTP/1.") and served.stdout.endswith("served by netvirt-cni\n")
    # and the policy drops tcp/8080 (a timeout, not a refusal: the packet is dropped on the way in)
    dropped = podman("exec", "nvt-client", "sh", "-c", f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web_ip} 8080", check=False)
    assert dropped.returncode != 0 and dropped.stdout == "" and "refused" not in dropped.stderr, dropped

    # the endpoints are like any other: status, trace and verify know them
    hosts = httpx.get(f"{world.url}/v1/hosts").json()
    assert hosts["converged"] and [h["state"] for h in hosts["hosts"]] == ["converged", "converged"]
    client, web = endpoints["host-b"]["name"], endpoints["host-a"]["name"]
    trace = httpx.post(f"{world.url}/v1/trace", json={"from": client, "to": web, "proto": "tcp", "dport": 8080}).json()
    assert trace["disposition"] == "dropped"
    spec = world.controller.current().spec
    with Verifier(compile_network(spec), KernelObserver(world.names)) as verifier:
        flows = [plan_trace(spec, client, web, proto, port, sport, None, compile=compile_network)[1]
                 for proto, port, sport in (("icmp", None, 41001), ("tcp", 8080, 41002))]
        results = verifier.verify_all(flows)
    assert [r.agrees for r in results] == [True, True], [r.problems for r in results]
    assert [r.observed.disposition for r in results] == ["delivered", "dropped"]

    # podman rm leaves no veth, address or netvirt endpoint behind
    podman("rm", "--force", "--time", "0", "nvt-web", "nvt-client")
    _eventually(lambda: world.endpoints() == [], what="the endpoints removed")
    world.controller.wait_converged(30)
    for host in ("host-a", "host-b"):
        assert set(_links(world.names.graph_namespace(host, host))) == {"lo", "eth0"}
    assert not any(".cni-" in name for name in world.namespaces())
    assert set(_root_links()) == links_before


def _root_links() -> list[str]:
    return [line.split(":")[1].strip() for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.splitlines()]


def _tx_packets(namespace: str, link: str) -> int:
    ipr = netns.netlink(namespace)
    try:
        found = ipr.get_links(ipr.link_lookup(ifname=link)[0])[0]
        return int(found.get_attr("IFLA_STATS64")["tx_packets"])
    finally:
        ipr.close()
