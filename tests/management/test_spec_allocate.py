"""Deterministic allocation: VNIs, addresses (IPv4 and IPv6), MACs, MTUs, VIPs, defaults."""

import ipaddress

import pytest
import yaml

from netvirt.management.spec import SpecError, loads, overhead
from netvirt.management.spec.allocate import VNI_FIRST, VNI_LAST, place, stable_hash


def spec_text(endpoints: list[dict], *, name: str = "alloc", subnet: str = "10.0.0.0/16", **network) -> str:
    return yaml.safe_dump(
        {
            "name": name,
            "hosts": [{"name": "host-a", "underlay": "192.0.2.10/24"}, {"name": "host-b", "underlay": "192.0.2.11/24"}],
            "networks": [{"name": "blue", "subnet": subnet, "subnet6": "fd00:1::/64", **network}],
            "endpoints": endpoints,
        }
    )


def endpoint(name: str, **extra) -> dict:
    return {"name": name, "host": "host-a", "network": "blue", **extra}


def addresses(text: str) -> dict[str, tuple]:
    spec = loads(text)
    return {e.name: (e.attachments[0].ip, e.attachments[0].ip6, e.attachments[0].mac) for e in spec.endpoints}


NAMES = [f"web-{i}" for i in range(30)]


def test_same_file_same_allocations():
    text = spec_text([endpoint(name) for name in NAMES])
    assert addresses(text) == addresses(text)


def test_order_does_not_matter():
    forward = addresses(spec_text([endpoint(name) for name in NAMES]))
    backward = addresses(spec_text([endpoint(name) for name in reversed(NAMES)]))
    assert forward == backward


def test_adding_or_removing_an_endpoint_moves_no_other():
    before = addresses(spec_text([endpoint(name) for name in NAMES]))
    added = addresses(spec_text([endpoint("aaa-new"), *(endpoint(name) for name in NAMES)]))
    removed = addresses(spec_text([endpoint(name) for name in NAMES[1:]]))
    assert {name: added[name] for name in NAMES} == before
    assert {name: removed[name] for name in NAMES[1:]} == {name: before[name] for name in NAMES[1:]}


def test_addresses_are_usable_and_unique():
    spec = loads(spec_text([endpoint(name) for name in NAMES], subnet="10.0.0.0/26"))
    network = spec.network("blue")
    ips = [e.attachments[0].ip for e in spec.endpoints]
    ips6 = [e.attachments[0].ip6 for e in spec.endpoints]
    assert len(set(ips)) == len(ips) and len(set(ips6)) == len(ips6)
    assert network.gateway == ipaddress.ip_address("10.0.0.1") and network.gateway6 == ipaddress.ip_address("fd00:1::1")
    for ip in ips:
        assert ip in network.subnet and ip not in (network.gateway, network.subnet.network_address)
        assert ip != network.subnet.broadcast_address
    assert all(ip6 in network.subnet6 and ip6 != network.gateway6 for ip6 in ips6)


def test_a_full_subnet_is_used_to_the_last_address():
    # /27: 30 host addresses, one of them the gateway: exactly 29 endpoints fit
    spec = loads(spec_text([endpoint(name) for name in NAMES[:29]], subnet="10.0.0.0/27"))
    assert sorted(int(e.attachments[0].ip) & 31 for e in spec.endpoints) == list(range(2, 31))
    with pytest.raises(SpecError, match=r"has 29 free addresses for 30 endpoints"):
        loads(spec_text([endpoint(name) for name in NAMES], subnet="10.0.0.0/27"))


def test_collisions_go_to_the_next_free_address_in_name_order():
    # a /29 holds .1-.6 (.1 is the gateway); each name prefers .1 + hash % 6
    preferred: dict[int, str] = {}
    for i in range(200):
        name = f"ep-{i}"
        slot = stable_hash("blue", name) % 6
        if slot in preferred and 0 < slot < 5:
            a, b = sorted([preferred[slot], name])
            break
        preferred.setdefault(slot, name)
    spec = loads(spec_text([endpoint(b), endpoint(a)], subnet="10.0.0.0/29"))
    got = {e.name: int(e.attachments[0].ip) & 7 for e in spec.endpoints}
    assert got[a] == 1 + slot  # the name that sorts first keeps its preferred address
    assert got[b] == 2 + slot  # the other takes the next free one up


def test_pinned_values_are_kept_and_avoided():
    text = spec_text([endpoint("web-0", ip="10.0.0.77", ip6="fd00:1::77", mac="02:aa:bb:cc:dd:ee"), endpoint("web-1")])
    spec = loads(text)
    pinned, other = (e.attachments[0] for e in spec.endpoints)
    assert (str(pinned.ip), str(pinned.ip6), pinned.mac) == ("10.0.0.77", "fd00:1::77", "02:aa:bb:cc:dd:ee")
    assert other.ip != pinned.ip and other.mac != pinned.mac


def test_macs_are_locally_administered_unicast_and_seeded_by_the_spec_name():
    one = addresses(spec_text([endpoint(name) for name in NAMES]))
    other = addresses(spec_text([endpoint(name) for name in NAMES], name="another"))
    for _, _, mac in one.values():
        first = int(mac[:2], 16)
        assert first == 0x02  # locally administered (bit 1), unicast (bit 0 clear)
    assert len({mac for _, _, mac in one.values()}) == len(NAMES)
    assert {n: v[2] for n, v in one.items()} != {n: v[2] for n, v in other.items()}
    assert {n: v[:2] for n, v in one.items()} == {n: v[:2] for n, v in other.items()}  # IPs: not seeded by it


def test_vnis_are_allocated_in_range_around_pinned_ones():
    text = yaml.safe_dump(
        {
            "name": "vnis",
            "networks": [
                {"name": f"net-{i}", "subnet": f"10.{i}.0.0/24", **({"vni": 10_000 + i} if i % 2 else {})}
                for i in range(20)
            ]
            + [{"name": "flat", "encap": "none", "subnet": "10.99.0.0/24"}],
        }
    )
    spec = loads(text)
    vnis = {network.name: network.vni for network in spec.networks}
    assert vnis.pop("flat") is None
    assert len(set(vnis.values())) == len(vnis)
    assert all(VNI_FIRST <= vni <= VNI_LAST for vni in vnis.values())
    assert all(vnis[f"net-{i}"] == 10_000 + i for i in range(1, 20, 2))


@pytest.mark.parametrize(
    "encap, underlay, options, expected",
    [
        ("vxlan", "192.0.2.10/24", [], 50),
        ("vxlan", "2001:db8::10/64", [], 70),
        ("geneve", "192.0.2.10/24", [], 50),
        ("geneve", "192.0.2.10/24", [{"class": 1, "type": 2, "data": "00112233"}], 58),
        ("geneve", "2001:db8::10/64", [{"class": 1, "type": 2}], 74),
        ("nvgre", "192.0.2.10/24", [], 42),
        ("nvgre", "2001:db8::10/64", [], 62),
        ("none", "192.0.2.10/24", [], 0),
    ],
)
def test_network_mtu_is_the_smallest_host_mtu_minus_the_overhead(encap, underlay, options, expected):
    text = yaml.safe_dump(
        {
            "name": "mtu",
            "hosts": [
                {"name": "big", "underlay": underlay, "mtu": 9000},
                {"name": "small", "underlay": underlay.replace("10", "11", 1), "mtu": 1500},
            ],
            "networks": [
                {
                    "name": "n",
                    "encap": encap,
                    "subnet": "10.0.0.0/24",
                    **({"geneve_options": options} if options else {}),
                }
            ],
            "endpoints": [{"name": "a", "host": "big", "network": "n"}, {"name": "b", "host": "small", "network": "n"}],
        }
    )
    network = loads(text).network("n")
    assert network.mtu == 1500 - expected
    assert overhead(encap, ipaddress.ip_interface(underlay).version, network.options_length) == expected


def test_mtu_counts_only_the_hosts_a_network_spans():
    text = yaml.safe_dump(
        {
            "name": "span",
            "hosts": [
                {"name": "jumbo", "underlay": "192.0.2.10/24", "mtu": 9000},
                {"name": "small", "underlay": "192.0.2.11/24", "mtu": 1400},
            ],
            "networks": [{"name": "n", "subnet": "10.0.0.0/24"}, {"name": "empty", "subnet": "10.1.0.0/24"}],
            "endpoints": [{"name": "a", "host": "jumbo", "network": "n"}],
        }
    )
    spec = loads(text)
    assert spec.network("n").mtu == 9000 - 50
    assert spec.network("empty").mtu == 1400 - 50  # spans no host yet: every host counts


def test_service_defaults_are_resolved():
    text = yaml.safe_dump(
        {
            "name": "svc",
            "service_subnet": "10.96.0.0/24",
            "hosts": [{"name": "host-a", "underlay": "192.0.2.10/24"}],
            "networks": [{"name": "blue", "tenant": "acme", "subnet": "10.0.0.0/24"}],
            "endpoints": [{"name": "web-1", "host": "host-a", "network": "blue", "listen": ["tcp/80"]}],
            "services": [{"name": f"web-{i}", "port": "tcp/80", "backends": ["web-1"]} for i in range(2, 40)],
            "stacks": [
                {
                    "name": "s",
                    "layers": [
                        {"layer": "host", "os": "windows"},
                        {"layer": "hypervisor", "type": "hyperv"},
                        {"layer": "vm", "os": "linux"},
                        {"layer": "app"},
                    ],
                }
            ],
        }
    )
    spec = loads(text)
    vips = [service.vip for service in spec.services]
    assert len(set(vips)) == len(vips) and all(vip in ipaddress.ip_network("10.96.0.0/24") for vip in vips)
    assert {(s.target_port, s.tenant) for s in spec.services} == {(80, "acme")}
    assert spec.stacks[0].layers[1].network == "nat"


def test_place_reports_a_full_range():
    assert place([("a", 0), ("b", 0)], {5}, 5, 6) is None
    assert place([("b", 0), ("a", 0)], {5}, 5, 7) == {"a": 6, "b": 7}
