"""Every example validates, round-trips, and has what the issue asks of it."""

import ipaddress
import json
from pathlib import Path

import pytest

from netvirt.management.spec import as_data, dump, load, loads

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ALL = sorted(EXAMPLES.rglob("*.yaml"))


def test_the_examples_exist():
    names = {path.relative_to(EXAMPLES).as_posix() for path in ALL}
    assert {
        "quickstart.yaml",
        "encapsulations.yaml",
        "seed/path-physical.yaml",
        "seed/path-vm.yaml",
        "seed/path-container.yaml",
        "seed/path-kubernetes.yaml",
        "seed/anomaly-1-virtualbox-k8s.yaml",
        "seed/anomaly-2-wsl2-k8s.yaml",
    } <= names


@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(EXAMPLES).as_posix() for p in ALL])
def test_example_validates_and_round_trips(path: Path):
    spec = load(path)
    assert loads(dump(spec)) == spec
    assert loads(json.dumps(as_data(spec)), "spec.json") == spec
    assert load(path) == spec  # deterministic
    assert path.read_text().startswith("#"), "examples open with a comment that teaches"


def test_quickstart_has_what_the_issue_asks():
    spec = load(EXAMPLES / "quickstart.yaml")
    documentation = ipaddress.ip_network("192.0.2.0/24")
    assert len(spec.hosts) >= 2 and all(host.underlay.ip in documentation for host in spec.hosts)
    assert {network.encap for network in spec.networks} == {"vxlan"}  # runs without Geneve/GRE
    tenants = {network.tenant for network in spec.networks}
    assert len(tenants) >= 2
    subnets = [(network.tenant, network.subnet) for network in spec.networks]
    assert any(a != b and sa == sb for a, sa in subnets for b, sb in subnets), "overlapping subnets across tenants"
    assert any(network.subnet and network.subnet6 for network in spec.networks), "dual stack"
    assert spec.routers
    assert len(spec.endpoints) >= 6 and len({endpoint.host for endpoint in spec.endpoints}) >= 2
    assert any(endpoint.listen for endpoint in spec.endpoints)
    actions = {rule.action for policy in spec.policies for rule in policy.rules} | {p.default for p in spec.policies}
    assert {"allow", "drop"} <= actions
    assert any(len(service.backends) >= 2 for service in spec.services)
    assert len(spec.stacks) == 1


def test_encapsulations_example_derives_each_overhead():
    spec = load(EXAMPLES / "encapsulations.yaml")
    by_encap = {network.encap: network for network in spec.networks}
    assert set(by_encap) == {"vxlan", "geneve", "nvgre"}
    assert by_encap["vxlan"].mtu == 1500 - 50
    assert by_encap["geneve"].geneve_options and by_encap["geneve"].mtu == 1500 - 50 - 12
    assert by_encap["nvgre"].mtu == 1400  # explicit, below the derived 1458


@pytest.mark.parametrize(
    "name, section, layers",
    [
        ("path-physical", "section 4", ["host", "app"]),
        ("path-vm", "section 4", ["host", "hypervisor", "vm", "app"]),
        ("path-container", "section 4", ["host", "container", "app"]),
        ("path-kubernetes", "section 4", ["host", "kubernetes", "pod", "app"]),
        ("anomaly-1-virtualbox-k8s", "section 5", ["host", "hypervisor", "vm", "kubernetes", "pod", "app"]),
        ("anomaly-2-wsl2-k8s", "section 5", ["host", "hypervisor", "kubernetes", "container", "app"]),
    ],
)
def test_seed_examples_reproduce_the_notes(name: str, section: str, layers: list[str]):
    path = EXAMPLES / "seed" / f"{name}.yaml"
    assert f"Notes {section}" in path.read_text().splitlines()[0]
    (stack,) = load(path).stacks
    assert [layer.layer for layer in stack.layers] == layers


def test_anomaly_stacks_match_the_walkthroughs():
    one = load(EXAMPLES / "seed" / "anomaly-1-virtualbox-k8s.yaml").stacks[0].layers
    assert (one[0].os, one[1].type, one[1].network, one[2].vnic, one[3].proxy) == (
        "windows",
        "virtualbox",
        "bridged",
        "virtio",
        "iptables",
    )
    two = load(EXAMPLES / "seed" / "anomaly-2-wsl2-k8s.yaml").stacks[0].layers
    assert (two[0].os, two[1].type, two[2].proxy) == ("windows", "wsl2", "iptables")
