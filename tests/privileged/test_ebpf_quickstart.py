"""examples/quickstart.yaml (plus a drop list on host-a) in the real kernel through the ``ebpf``
backend: no netfilter rules in endpoint namespaces, the reach matrix equal to the nftables
backend's, the VIP reaching every backend, client-IP affinity, ``verify --all`` against the
simulator, the XDP drop list dropping and counting, and nothing left behind by ``down`` — also
after ``kill -9`` in the middle of ``up``."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from ipaddress import ip_address
from pathlib import Path

import pytest
from linux_network import Servers, bring_up, flows, probe, run_probes, tear_down, use_backend

from netvirt.control.compile import compile_network
from netvirt.dataplane.ebpf import libbpf
from netvirt.dataplane.ebpf.target import links_of
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.management.spec import load

ROOT = Path(__file__).resolve().parents[2]
DROPPED = "198.51.100.0/24"  # RFC 5737: nobody real sends from here


def spec_text(affinity: str = "none") -> str:
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    text = text.replace("    labels: {rack: r1}\n", f"    labels: {{rack: r1}}\n    drop_from: [{DROPPED}]\n", 1)
    return text.replace("    affinity: none\n", f"    affinity: {affinity}\n")


def spec_file(tmp_path: Path, affinity: str = "none"):
    path = tmp_path / f"quickstart-{affinity}.yaml"
    path.write_text(spec_text(affinity))
    return path


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    net = bring_up(load(spec_file(tmp_path_factory.mktemp("spec"))), tmp_path_factory.mktemp("state"), backend="ebpf")
    try:
        yield net
    finally:
        tear_down(net)


def endpoint_namespaces(network) -> list[str]:
    return [network.namespace(name) for name in network.spec.index["endpoints"]]


def vip(network) -> str:
    return str(network.spec.service("web").vip)


def normalised(outcome: str, address: str, network) -> str:
    return "ok:web" if address == vip(network) and outcome in ("ok:web-1", "ok:web-2") else outcome


def test_endpoint_namespaces_hold_programs_and_no_netfilter_rules(network):
    with_rules = 0
    for namespace in endpoint_namespaces(network):
        tables = netns.run(namespace, ["nft", "list", "ruleset"]).stdout.decode()
        chains = netns.run(namespace, ["iptables-save"]).stdout.decode() + netns.run(namespace, ["ip6tables-save"]).stdout.decode()
        assert "table" not in tables and "NV-" not in chains, namespace
        attached = [netns.call_in(namespace, libbpf.tc_attached, index, point)
                    for index in links_of(namespace).values() for point in (libbpf.TC_INGRESS, libbpf.TC_EGRESS)]
        with_rules += all(attached)
    assert with_rules >= 4  # the endpoints with policies or services


@pytest.fixture(scope="module")
def matrices(network):
    """Every flow's outcome under ebpf, then under the linux backend with nftables (re-applied)."""
    wanted = flows(network, extra_targets=(vip(network),))
    found = {}
    with Servers(network):
        for backend in ("ebpf", "linux"):
            use_backend(network, backend)
            found[backend] = {flow: normalised(outcome, flow[1], network)
                              for flow, outcome in run_probes(network, wanted).items()}
    use_backend(network, "ebpf")
    return found


def test_the_reach_matrix_equals_the_nftables_backends(matrices):
    differ = {flow: (matrices["ebpf"][flow], matrices["linux"][flow]) for flow in matrices["ebpf"]
              if matrices["ebpf"][flow] != matrices["linux"][flow]}
    assert differ == {}, "flow: (ebpf, linux)"
    outcomes = set(matrices["ebpf"].values())
    assert len(matrices["ebpf"]) > 200 and outcomes >= {"ok", "ok:web", "blocked", "refused"}


def connect_from(namespace: str, source: str, port: int, address: str) -> str:
    """The name the service answers with to a connection from ``source``:``port``."""
    sock = netns.socket_in(namespace, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((source, port))
        sock.connect((address, 80))
        return sock.recv(64).decode()


def test_linux_and_ebpf_hosts_share_the_overlay(network, matrices):
    """host-a on ebpf, host-b on linux: the flows across hosts (and the VIP) get what both backends
    give alone."""
    across = [flow for flow in matrices["ebpf"] if flow[2] in ("tcp", "icmp") and flow[0] in ("client-1", "web-1", "db-1")]
    try:
        use_backend(network, {"host-a": "ebpf", "host-b": "linux"})
        assert network.backends["host-b"].rules_in_use("db-1") == "nftables"
        assert network.backends["host-a"].rules_in_use("client-1") == "ebpf"
        with Servers(network):
            mixed = {flow: normalised(outcome, flow[1], network) for flow, outcome in run_probes(network, across).items()}
        assert {flow: outcome for flow, outcome in mixed.items() if outcome != matrices["ebpf"][flow]} == {}
    finally:
        use_backend(network, "ebpf")


def test_a_removed_endpoint_takes_its_pins_along(network, tmp_path):
    pins = network.names.bpf_pins(network.namespace("client-1"))
    assert pins.exists()
    text = spec_text()
    start = text.index("  - name: client-1\n")
    end = text.index("  - name: db-1\n")
    path = tmp_path / "without-client.yaml"
    path.write_text(text[:start] + text[end:])
    graph = compile_network(load(path)).host("host-a")
    try:
        assert network.backends["host-a"].apply(graph).ok
        assert not pins.exists()
    finally:
        assert network.backends["host-a"].apply(network.graph.host("host-a")).ok
    assert pins.exists()


def test_the_vip_reaches_every_backend(network):
    # the backend is the CRC-32 of the flow modulo 2, as the simulator picks it: consecutive source
    # ports (the kernel's own choices are all even) cover both backends
    client = network.addresses("client-1")[0]
    with Servers(network):
        seen = {connect_from(network.namespace("client-1"), client, port, vip(network)) for port in range(42000, 42008)}
    assert seen == {"web-1", "web-2"}


def test_client_ip_affinity_keeps_a_client_on_one_backend(network, tmp_path):
    sticky = compile_network(load(spec_file(tmp_path, "client-ip")))
    try:
        for graph in sticky.hosts:
            assert network.backends[graph.host].apply(graph).ok
        with Servers(network):
            answers = {probe(network.namespace("client-1"), vip(network), "tcp", 80) for _ in range(15)}
        assert len(answers) == 1 and answers <= {"ok:web-1", "ok:web-2"}
    finally:
        for graph in network.graph.hosts:
            assert network.backends[graph.host].apply(graph).ok


def test_verify_all_agrees_with_the_simulator(network):
    from netvirt.dataplane.kernel.observe import KernelObserver
    from netvirt.trace.plan import verify_probes
    from netvirt.trace.verify import Verifier

    probes = verify_probes(network.spec, 23000)
    with Verifier(network.graph, KernelObserver(network.names)) as verifier:
        results = verifier.verify_all([p.flow for p in probes])
    assert [(p.source, p.target, r.problems) for p, r in zip(probes, results) if not r.agrees] == []
    assert len(results) == 42 and {r.observed.disposition for r in results} >= {"delivered", "dropped", "rejected"}


def spoofed_udp(namespace: str, source: str, target: str, count: int) -> None:
    """``count`` UDP datagrams from ``source`` (a raw socket writes the IP header) to ``target``."""
    from netvirt.wire import builders

    packet = builders.probe(ip_address(source), ip_address(target), "udp", src_port=7, dst_port=7, size=64)
    sock = netns.socket_in(namespace, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with sock:
        for _ in range(count):
            sock.sendto(packet, (target, 0))


def test_the_xdp_drop_list_drops_and_counts(network):
    host_a = network.spec.host("host-a").underlay.ip
    backend = network.backends["host-a"]
    graph = network.graph.host("host-a")
    before = backend.xdp_counters(graph)["host-a/eth0"]
    spoofed_udp(network.names.graph_namespace("host-b", "host-b"), "198.51.100.9", str(host_a), 25)
    spoofed_udp(network.names.graph_namespace("host-b", "host-b"), str(network.spec.host("host-b").underlay.ip),
                str(host_a), 5)
    time.sleep(0.3)
    after = backend.xdp_counters(graph)["host-a/eth0"]
    assert after[0][0] == DROPPED and after[0][1] - before[0][1] == 25
    assert after[-1][0] == "passed" and after[-1][1] - before[-1][1] >= 5


def cli(args: list[str], state: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "NETVIRT_PREFIX": TEST_PREFIX, "NETVIRT_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "netvirt", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def named_spec(tmp_path: Path, prefix: str) -> tuple[Path, Names]:
    """The test spec under a deployment name of its own (the CLI names deployments after specs)."""
    name = f"{prefix}{os.getpid() % 100000}"
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(spec_text().replace("name: quickstart", f"name: {name}", 1))
    return spec, Names(name, TEST_PREFIX)


def left_behind(names: Names) -> list[str]:
    pins = [str(p) for p in names.bpf_root.rglob("*")] if names.bpf_root.exists() else []
    return [n for n in netns.names() if names.owns_namespace(n)] + pins


def test_cli_up_status_down_with_the_ebpf_backend(tmp_path):
    spec, names = named_spec(tmp_path, "e")
    state = tmp_path / "state"
    try:
        up = cli(["up", str(spec), "--backend", "ebpf"], state)
        assert up.returncode == 0, up.stdout + up.stderr
        status = cli(["status", str(spec), "--format", "json"], state)
        report = json.loads(status.stdout)
        assert report["in_sync"], status.stdout
        host_a = next(host for host in report["hosts"] if host["host"] == "host-a")
        assert host_a["backend"] == "ebpf" and host_a["xdp_drop"]["host-a/eth0"][0]["prefix"] == DROPPED
        assert set(host_a["programs"]) >= {"client-1", "web-1"}
        # green-in logs tcp/5432 from anyone but the web servers: client-1 -> db-1 writes a record
        db = next(str(e.attachments[0].ip) for e in load(spec).endpoints if e.name == "db-1")
        client = names.graph_namespace("host-a", "client-1")
        assert probe(client, db, "tcp", 5432) == "blocked"
        logged = json.loads(cli(["log", str(spec), "--format", "json"], state).stdout)["records"]
        assert any(r["namespace"] == "db-1" and r["chain"] == "input" and r["flow"].endswith(f"{db}:5432")
                   and r["action"] == "drop" for r in logged), logged
    finally:
        down = cli(["down", str(spec)], state)
    assert down.returncode == 0, down.stderr
    assert left_behind(names) == []


def test_kill_9_during_up_then_down_leaves_nothing(tmp_path):
    spec, names = named_spec(tmp_path, "k")
    state = tmp_path / "state"
    env = {**os.environ, "NETVIRT_PREFIX": TEST_PREFIX, "NETVIRT_STATE_DIR": str(state)}
    child = subprocess.Popen([sys.executable, "-m", "netvirt", "up", str(spec), "--backend", "ebpf"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (names.bpf_root.exists() and any(names.bpf_root.rglob("nv_*"))):
            time.sleep(0.02)
        assert names.bpf_root.exists(), "up never pinned a program"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    down = cli(["down", str(spec)], state)
    assert down.returncode == 0, down.stderr
    assert left_behind(names) == []


def test_the_linux_backend_drops_the_list_at_netdev_ingress(network):
    from netvirt.dataplane.kernel import nftables

    host_a = network.names.graph_namespace("host-a", "host-a")
    try:
        use_backend(network, "linux")
        assert netns.call_in(host_a, libbpf.xdp_attached, links_of(host_a)["eth0"]) is None
        spoofed_udp(network.names.graph_namespace("host-b", "host-b"), "198.51.100.9", str(network.spec.host("host-a").underlay.ip), 7)
        time.sleep(0.3)
        table = nftables.drop_list_table(network.names.nft_table, "eth0")
        listing = netns.run(host_a, ["nft", "list", "table", "netdev", table]).stdout.decode()
        assert "ip saddr 198.51.100.0/24 counter packets 7 " in listing, listing
    finally:
        use_backend(network, "ebpf")
