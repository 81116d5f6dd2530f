"""Edits of examples/quickstart.yaml for the linux backend's incremental tests: each changes the
spec data the way a user's next ``apply`` would, and ``compiled`` turns the result into graphs."""

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.linux.backend import LinuxBackend
from netvirt.graph import DeviceKind, HostGraph, NetworkGraph
from netvirt.management.spec import Spec
from netvirt.management.spec.loader import build
from netvirt.management.spec.source import Source, read

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
BASE = read(QUICKSTART).data


def spec_of(data: dict) -> Spec:
    return build(Source(data, [], "quickstart"))


def edited(change: Callable[[dict], None]) -> dict:
    data = copy.deepcopy(BASE)
    change(data)
    return data


def compiled(change: Callable[[dict], None] | None = None) -> NetworkGraph:
    return compile_network(spec_of(edited(change) if change is not None else copy.deepcopy(BASE)))


def add_endpoint(data: dict) -> None:
    data["endpoints"].append({"name": "web-3", "kind": "container", "host": "host-b", "network": "blue",
                              "labels": {"app": "web"}, "listen": ["tcp/80"]})


def remove_endpoint(data: dict) -> None:
    data["endpoints"] = [e for e in data["endpoints"] if e["name"] != "client-1"]


def change_policy(data: dict) -> None:
    policy = next(p for p in data["policies"] if p["name"] == "blue-in")
    policy["rules"][0]["dst_port"] = 8080
    policy["default"] = "allow"


def remove_network(data: dict) -> None:
    data["networks"] = [n for n in data["networks"] if n["name"] != "orange"]
    data["endpoints"] = [e for e in data["endpoints"] if e.get("network") != "orange"]


def change_vni(data: dict) -> None:
    """Re-creates the VXLAN devices of green (a VNI cannot change in place)."""
    next(n for n in data["networks"] if n["name"] == "green")["vni"] = 5030


EDITS = {"add_endpoint": add_endpoint, "remove_endpoint": remove_endpoint, "change_policy": change_policy,
         "remove_network": remove_network, "change_vni": change_vni}


def without_sockets(graph: HostGraph) -> HostGraph:
    """Nothing listens in these tests: sockets are not read back."""
    return replace(graph, devices=tuple(d for d in graph.devices if d.kind is not DeviceKind.SOCKET))


def apply_all(backends: dict[str, LinuxBackend], network: NetworkGraph) -> None:
    for graph in network.hosts:
        report = backends[graph.host].apply(graph)
        assert report.ok, report.errors
