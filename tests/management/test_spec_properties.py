"""Properties of loading, over generated specs (hypothesis).

- valid specs survive dump -> load (YAML and JSON) unchanged, and the order of items changes no
  allocation;
- random text, random YAML and mutated valid specs never raise anything but SpecError, and every
  problem in a parsable file has a position.
"""

import copy
import json
import random

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netvirt.management.spec import KINDS, Spec, SpecError, as_data, diff, dump, loads
from netvirt.management.spec.dump import dump_data

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STACKS = [
    [{"layer": "host", "os": "linux"}, {"layer": "app", "listen": "tcp/80"}],
    [
        {"layer": "host", "os": "windows"},
        {"layer": "hypervisor", "type": "virtualbox", "network": "bridged"},
        {"layer": "vm", "os": "linux", "vnic": "virtio"},
        {"layer": "kubernetes", "proxy": "ipvs"},
        {"layer": "pod"},
        {"layer": "app"},
    ],
    [
        {"layer": "host", "os": "windows"},
        {"layer": "hypervisor", "type": "wsl2"},
        {"layer": "container"},
        {"layer": "app", "io": "af_xdp"},
    ],
    [
        {"layer": "host", "os": "linux", "nic": "sriov"},
        {"layer": "hypervisor", "type": "kvm"},
        {"layer": "vm", "vnic": "sriov-vf"},
        {"layer": "app", "io": "dpdk"},
    ],
]
LISTEN = ["tcp/80", "udp/53", "tcp/5432"]


@st.composite
def spec_data(draw) -> dict:
    """Data of a valid spec, with some values pinned and the rest left to the allocator."""
    v6_underlay = draw(st.booleans())
    hosts = [
        {
            "name": f"host-{i}",
            "underlay": f"2001:db8::{i + 10}/64" if v6_underlay else f"192.0.2.{i + 10}/24",
            "mtu": draw(st.sampled_from([1400, 1500, 9000])),
            "nic": draw(st.sampled_from(["physical", "virtio", "sriov-vf"])),
        }
        for i in range(draw(st.integers(1, 4)))
    ]
    networks = []
    for i in range(draw(st.integers(1, 4))):
        encap = draw(st.sampled_from(["vxlan", "geneve", "nvgre", "none"]))
        network = {"name": f"net-{i}", "tenant": draw(st.sampled_from(["a", "b"])), "encap": encap}
        network["subnet"] = f"10.{i}.0.0/24"
        if draw(st.booleans()):
            network["subnet6"] = f"fd00:{i}::/64"
        if encap != "none" and draw(st.booleans()):
            network["vni"] = 5000 + i
        if encap == "geneve":
            count = draw(st.integers(0, 2))
            network["geneve_options"] = [{"class": 0x0102, "type": j, "data": "00" * 4 * j} for j in range(count)]
        if draw(st.booleans()):
            network["mtu"] = 1280
        networks.append(network)
    endpoints = []
    for i in range(draw(st.integers(0, 10))):
        tenant = draw(st.sampled_from(["a", "b"]))
        mine = [n for n in networks if n["tenant"] == tenant]
        if not mine:
            continue
        chosen = draw(st.lists(st.sampled_from(mine), min_size=1, max_size=2, unique_by=lambda n: n["name"]))
        attachments = []
        for j, network in enumerate(chosen):
            attachment = {"network": network["name"]}
            if draw(st.booleans()):
                attachment["ip"] = f"10.{network['name'][4:]}.0.{100 + i}"
            if draw(st.booleans()):
                attachment["mac"] = f"02:00:00:00:{i:02x}:{j:02x}"
            attachments.append(attachment)
        endpoint = {
            "name": f"ep-{i}",
            "kind": draw(st.sampled_from(["vm", "container", "pod", "host"])),
            "host": draw(st.sampled_from(hosts))["name"],
            "labels": {"app": draw(st.sampled_from(["web", "db"]))},
            "listen": draw(st.lists(st.sampled_from(LISTEN), unique=True)),
        }
        if len(attachments) == 1 and draw(st.booleans()):
            endpoint.update(attachments[0])  # the short form
        else:
            endpoint["attachments"] = attachments
        endpoints.append(endpoint)
    on = {n["name"]: [e["name"] for e in endpoints if n["name"] in _networks(e)] for n in networks}
    policies = []
    for network in networks:
        if not draw(st.booleans()):
            continue
        rules = []
        for _ in range(draw(st.integers(0, 3))):
            proto = draw(st.sampled_from(["tcp", "udp", "icmp", "any"]))
            rule = {"action": draw(st.sampled_from(["allow", "drop", "reject", "log"])), "proto": proto}
            if on[network["name"]] and draw(st.booleans()):
                rule["to"] = draw(st.sampled_from(on[network["name"]]))
            rule["from"] = draw(st.sampled_from(["10.0.0.0/8", "app=web", "fd00::/16", "app=db,tier=x"]))
            if proto in ("tcp", "udp"):
                rule["dst_port"] = draw(st.sampled_from([80, "8000-8080", [53, 5353]]))
            if proto == "icmp" and draw(st.booleans()):
                rule["icmp_type"] = 8
            rules.append(rule)
        direction = draw(st.sampled_from(["ingress", "egress"]))
        if direction == "egress":
            for rule in rules:
                rule["from"], rule["to"] = rule.pop("to", "10.0.0.0/8"), rule["from"]
        policies.append(
            {
                "name": f"pol-{network['name']}",
                "network": network["name"],
                "direction": direction,
                "default": draw(st.sampled_from(["allow", "drop", "reject"])),
                "rules": rules,
            }
        )
    services = []
    for tenant in ("a", "b"):
        web = [e["name"] for e in endpoints if "tcp/80" in e["listen"] and _tenant(e, networks) == tenant]
        if web and draw(st.booleans()):
            services.append(
                {
                    "name": f"svc-{tenant}",
                    "port": "tcp/80",
                    "backends": web[:3],
                    "affinity": draw(st.sampled_from(["none", "client-ip"])),
                }
            )
    routers = []
    joined = [n["name"] for n in networks if n["tenant"] == "a"]
    if joined and draw(st.booleans()):
        routers.append(
            {
                "name": "router-a",
                "networks": joined,
                "snat": draw(st.booleans()),
                "routes": [{"to": "172.16.0.0/12", "via": f"10.{joined[0][4:]}.0.254"}],
            }
        )
    stacks = [
        {"name": f"stack-{i}", "layers": copy.deepcopy(layers)}  # mutate() edits in place
        for i, layers in enumerate(draw(st.lists(st.sampled_from(STACKS), max_size=2)))
    ]
    return {
        "name": draw(st.sampled_from(["lab", "prod-1"])),
        "hosts": hosts,
        "networks": networks,
        "routers": routers,
        "endpoints": endpoints,
        "policies": policies,
        "services": services,
        "stacks": stacks,
    }


def _networks(endpoint: dict) -> list[str]:
    return [a["network"] for a in endpoint.get("attachments", [endpoint])]


def _tenant(endpoint: dict, networks: list[dict]) -> str:
    tenants = {n["tenant"] for n in networks if n["name"] in _networks(endpoint)}
    return tenants.pop() if len(tenants) == 1 else ""


@SETTINGS
@given(spec_data())
def test_valid_specs_survive_dump_and_load(data):
    spec = loads(dump_data(data))
    assert isinstance(spec, Spec)
    assert loads(dump(spec)) == spec
    assert loads(json.dumps(as_data(spec)), "spec.json") == spec
    assert dump(loads(dump(spec))) == dump(spec)
    assert not diff(spec, loads(dump(spec)))


@SETTINGS
@given(spec_data(), st.randoms(use_true_random=False))
def test_the_order_of_items_changes_no_allocation(data, rng):
    spec = loads(dump_data(data))
    shuffled = {**data, **{kind: rng.sample(data[kind], len(data[kind])) for kind in KINDS}}
    assert loads(dump_data(shuffled)).index == spec.index


def assert_only_spec_errors(text: str, filename: str = "fuzz.yaml") -> None:
    try:
        loads(text, filename)
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == filename and problem.message
            assert problem.line >= 1 and problem.col >= 1, str(problem)


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_random_text_gives_only_spec_errors(text):
    assert_only_spec_errors(text)
    assert_only_spec_errors(text, "fuzz.json")


KEYS = sorted(
    {
        "name",
        "version",
        "description",
        "service_subnet",
        *KINDS,
        "underlay",
        "mtu",
        "nic",
        "labels",
        "tenant",
        "encap",
        "vni",
        "subnet",
        "subnet6",
        "gateway",
        "gateway6",
        "geneve_options",
        "class",
        "type",
        "data",
        "networks",
        "routes",
        "to",
        "via",
        "snat",
        "kind",
        "host",
        "network",
        "ip",
        "ip6",
        "mac",
        "attachments",
        "listen",
        "action",
        "from",
        "proto",
        "src_port",
        "dst_port",
        "icmp_type",
        "icmp_code",
        "direction",
        "rules",
        "default",
        "vip",
        "port",
        "target_port",
        "backends",
        "affinity",
        "layers",
        "layer",
        "os",
        "endpoint",
        "runtime",
        "cni",
        "proxy",
        "xdp",
        "io",
        "<<",
    }
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 70_000),
    st.text(max_size=12),
    st.sampled_from(
        [
            "10.0.0.0/24",
            "10.0.0.5",
            "fd00::/64",
            "tcp/80",
            "udp/99999",
            "blue",
            "host-a",
            "vxlan",
            "geneve",
            "02:00:00:00:00:01",
            "app=web",
            "8000-8080",
            "kubernetes",
            "pod",
            "app",
            "web-1",
        ]
    ),
)
SPECISH = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), SPECISH, max_size=8))
def test_random_spec_shaped_yaml_gives_only_spec_errors(data):
    assert_only_spec_errors(yaml.safe_dump(data))
    assert_only_spec_errors(json.dumps(data), "fuzz.json")


@SETTINGS
@given(spec_data(), st.randoms(use_true_random=False), st.lists(LEAVES, min_size=1, max_size=4))
def test_mutated_valid_specs_give_only_spec_errors(data, rng: random.Random, replacements):
    for replacement in replacements:
        mutate(data, rng, replacement)
    assert_only_spec_errors(dump_data(data))


def mutate(data: dict, rng: random.Random, replacement) -> None:
    """Replace, delete or duplicate one value somewhere in the data."""
    node, key = data, rng.choice(list(data)) if data else None
    while key is not None and isinstance(node[key], (dict, list)) and node[key] and rng.random() < 0.7:
        node = node[key]
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
    if key is None:
        return
    action = rng.choice(["replace", "delete", "duplicate"])
    if action == "replace":
        node[key] = replacement
    elif action == "delete":
        del node[key]
    elif isinstance(node, list):
        node.append(node[key])
