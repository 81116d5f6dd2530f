"""Mixed-MTU underlays: each host's devices of a network carry what that host's underlay can, the
underlay segment carries jumbo frames between jumbo hosts, and the linux backend refuses at plan
time only a tunnel its underlay cannot carry."""

from dataclasses import replace

from netvirt.control.compile import compile_network
from netvirt.dataplane.linux.backend import LinuxBackend
from netvirt.dataplane.events import Disposition
from netvirt.management.spec import loads
from netvirt.trace import Flow, Tracer

SPEC = loads("""
version: 1
name: mixed
hosts:
  - {name: h1, underlay: 192.0.2.21/24}
  - {name: h2, underlay: 192.0.2.22/24, mtu: 9000}
  - {name: h3, underlay: 192.0.2.23/24, mtu: 9000}
networks:
  - {name: web, subnet: 10.31.0.0/24}
  - {name: bulk, subnet: 10.32.0.0/24}
routers:
  - {name: r, networks: [web, bulk]}
endpoints:
  - {name: w1, host: h1, network: web}
  - {name: b2, host: h2, network: bulk}
  - {name: b3, host: h3, network: bulk}
""", "mixed.yaml")
NETWORK = compile_network(SPEC)


def mtus(host: str, network: str) -> dict[str, int]:
    graph = NETWORK.host(host)
    names = {f"br-{network}", f"vxlan-{network}", f"gw-{network}"}
    return {f"{d.namespace}/{d.name}": d.mtu for d in graph.devices if d.name in names}


def test_a_router_copy_on_a_small_host_is_clamped_the_jumbo_hosts_keep_the_network_mtu():
    assert set(mtus("h1", "bulk").values()) == {1450}  # h1's 1500-byte NIC carries no more
    assert set(mtus("h2", "bulk").values()) == set(mtus("h3", "bulk").values()) == {8950}
    assert NETWORK.segments[0].mtu == 9000


def test_the_sim_drops_a_jumbo_frame_at_the_port_of_a_small_nic():
    tracer = Tracer(NETWORK)
    b2 = SPEC.endpoint("b2").attachments[0].ip
    ok = tracer.trace(Flow("h2", "b2", b2, SPEC.endpoint("b3").attachments[0].ip, "icmp", size=8950))
    assert ok.disposition is Disposition.DELIVERED
    underlay = tracer.trace(Flow("h2", "h2", SPEC.host("h2").underlay.ip, SPEC.host("h1").underlay.ip, "icmp",
                                 size=9000))
    assert underlay.disposition is Disposition.DROPPED
    assert "exceeds the MTU 1500 of h1:h1/eth0" in underlay.reason


def test_the_linux_backend_refuses_a_tunnel_bigger_than_its_underlay(tmp_path):
    graph = NETWORK.host("h1")
    backend = LinuxBackend("h1", deployment="mtucheck", state_dir=tmp_path)
    assert not [p for p in backend.check(graph) if "mtu" in p.message]
    too_big = replace(graph, devices=tuple(replace(d, mtu=1451) if d.name == "vxlan-bulk" else d
                                           for d in graph.devices))
    problem = next(p for p in backend.check(too_big) if "mtu" in p.message)
    assert problem.where == "h1:h1/vxlan-bulk"
    assert "mtu 1451 does not fit its underlay eth0 (mtu 1500 minus 50 bytes of VXLAN leaves 1450)" in problem.message
