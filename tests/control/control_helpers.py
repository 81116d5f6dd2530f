"""Helpers for the control-plane tests: waiting for a condition, and small host graphs by hand."""

import time
from collections.abc import Callable
from ipaddress import ip_interface
from typing import TypeVar

from netvirt.graph import Bridge, Device, DeviceKind, HostGraph, Namespace, NamespaceKind, Veth

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (returned) or ``timeout`` passes (fail)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except AssertionError as error:
            last = error
        else:
            if result:
                return result
            last = result
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


def host_with_pods(host: str, pods: int, subnet: int = 1) -> HostGraph:
    """A host namespace with a bridge and ``pods`` pods, each on a veth pair with an address."""
    namespaces = [Namespace(name=host, kind=NamespaceKind.HOST, ip_forward=True)]
    devices = [Device.of(DeviceKind.BRIDGE, "br0", host, config=Bridge(), addresses=(ip_interface(f"10.{subnet}.0.1/24"),))]
    for index in range(pods):
        pod = f"pod{index}"
        namespaces.append(Namespace(name=pod, kind=NamespaceKind.POD))
        devices.append(Device.of(DeviceKind.VETH, f"veth{index}", host, config=Veth("eth0", pod), master="br0"))
        devices.append(
            Device.of(
                DeviceKind.VETH, "eth0", pod, config=Veth(f"veth{index}", host),
                addresses=(ip_interface(f"10.{subnet}.0.{index + 10}/24"),),
            )
        )
    return HostGraph(host=host, namespaces=tuple(namespaces), devices=tuple(devices))
