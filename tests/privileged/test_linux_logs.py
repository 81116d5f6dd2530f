"""`log` rules in the kernel: a logged packet's record reaches `netvirt logs` (NFLOG to netvirt's
group in the endpoint's namespace), with nftables and with iptables."""

import json
import os
import secrets
import subprocess
import sys

import pytest

from netvirt.dataplane.kernel.naming import TEST_PREFIX

SPEC = """
version: 1
name: NAME
hosts:
  - {name: h1, underlay: 192.0.2.41/24}
networks:
  - {name: net, subnet: 10.41.0.0/24}
endpoints:
  - {name: a, host: h1, network: net, ip: 10.41.0.10}
  - {name: b, host: h1, network: net, ip: 10.41.0.11}
policies:
  - name: net-in
    network: net
    direction: ingress
    default: drop
    rules:
      - {action: log, proto: tcp, dst_port: 80}
      - {action: allow, proto: tcp, dst_port: 80}
"""


def netvirt(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netvirt", *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def spec(tmp_path):
    env = {**os.environ, "NETVIRT_PREFIX": TEST_PREFIX, "NETVIRT_STATE_DIR": str(tmp_path / "state")}
    path = tmp_path / "logs.yaml"
    path.write_text(SPEC.replace("NAME", f"t{secrets.token_hex(3)}"))
    yield env, path
    netvirt(env, "down", str(path))


@pytest.mark.parametrize("filter", ["nftables", "iptables"])
def test_a_log_rule_record_appears_in_netvirt_logs(spec, filter):
    env, path = spec
    assert netvirt(env, "up", str(path), "--filter", filter).returncode == 0
    reader = subprocess.Popen([sys.executable, "-m", "netvirt", "logs", str(path), "--count", "1", "--duration", "30",
                               "--format", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening to the log rules" in reader.stderr.readline()
        netvirt(env, "exec", str(path), "b", "--", "timeout", "2", "bash", "-c", "</dev/tcp/10.41.0.10/80")
        out, _ = reader.communicate(timeout=40)
    finally:
        reader.kill()
    record = json.loads(out.splitlines()[0])
    assert (record["host"], record["namespace"], record["hook"]) == ("h1", "a", "input")
    assert record["prefix"].startswith("policy net-in rule 1")
    assert record["in"] == "eth0" and "10.41.0.11" in record["packet"] and "10.41.0.10.80" in record["packet"]
