"""Which stack layer may sit on which: the order rules of ``stacks[].layers``.

A stack is written bottom (the physical host) to top (the app). The rules, each with the reason a
reader can act on, are checked layer by layer against the layer directly below.
"""

from collections.abc import Iterator, Sequence

from netvirt.management.spec.model import HostLayer, HypervisorLayer, Layer, VmLayer

NEEDS_WINDOWS = ("hyperv", "wsl2")
NEEDS_LINUX = ("kvm",)


def describe(layer: Layer) -> str:
    if isinstance(layer, (HostLayer, VmLayer)):
        return f"a {layer.os} {layer.layer}"
    if isinstance(layer, HypervisorLayer):
        return f"a {layer.type} hypervisor"
    return f"{'an' if layer.layer == 'app' else 'a'} {layer.layer}"


def linux_kernel(layer: Layer) -> bool:
    """Whether this layer runs a Linux kernel that namespaces, containers and kubelets can use."""
    if isinstance(layer, (HostLayer, VmLayer)):
        return layer.os == "linux"
    return isinstance(layer, HypervisorLayer) and layer.type == "wsl2"  # WSL2's utility VM is Linux


def order_problems(layers: Sequence[Layer]) -> Iterator[tuple[int, str, str]]:
    """``(layer index, key, message)`` for every layer that cannot sit where it is."""
    if layers and not any(layer.layer == "app" for layer in layers):
        yield (
            len(layers) - 1,
            "layer",
            (f"the top layer is {describe(layers[-1])}; a stack ends with an app layer (where packets are delivered)"),
        )
    bottom = layers[0] if layers and isinstance(layers[0], HostLayer) else None
    for index, layer in enumerate(layers):
        below = layers[index - 1] if index else None
        kind = layer.layer
        if below is None:
            if kind != "host":
                yield index, "layer", f"a stack starts with a host layer (the physical machine), found {kind}"
            continue
        under = describe(below)
        if below.layer == "app":
            continue  # reported at the app: it must be the last layer
        if kind == "host":
            yield index, "layer", "a host can only be the bottom layer"
        elif kind == "hypervisor":
            assert isinstance(layer, HypervisorLayer)
            if not isinstance(below, (HostLayer, VmLayer)):
                yield index, "layer", f"a hypervisor runs on a host or a vm, not on {under}"
            elif layer.type in NEEDS_WINDOWS and below.os != "windows":
                yield index, "type", f"{layer.type} runs on Windows, but it sits on {under}"
            elif layer.type in NEEDS_LINUX and below.os != "linux":
                yield index, "type", f"{layer.type} runs on Linux, but it sits on {under}"
        elif kind == "vm":
            assert isinstance(layer, VmLayer)
            if not isinstance(below, HypervisorLayer):
                yield index, "layer", f"a vm needs a hypervisor directly below it, found {under}"
            elif below.type == "wsl2":
                yield (
                    index,
                    "layer",
                    ("wsl2 runs its own Linux utility VM: put kubernetes, a container or an app directly on it"),
                )
            elif layer.vnic == "netvsc" and below.type != "hyperv":
                yield index, "vnic", f"netvsc is Hyper-V's vNIC; this vm runs on {under}"
            if layer.vnic == "sriov-vf" and (bottom is None or bottom.nic != "sriov"):
                yield index, "vnic", "vnic sriov-vf needs an SR-IOV NIC: set nic: sriov on the host layer"
        elif kind == "kubernetes":
            if not linux_kernel(below):
                yield (
                    index,
                    "layer",
                    (f"kubernetes needs a Linux kernel below it (a linux host, a linux vm or wsl2), found {under}"),
                )
        elif kind == "pod":
            if below.layer != "kubernetes":
                yield index, "layer", f"a pod must sit on a kubernetes layer, found {under}"
        elif kind == "container":
            if not (linux_kernel(below) or below.layer in ("kubernetes", "pod")):
                yield index, "layer", (f"a container needs a Linux kernel, kubernetes or a pod below it, found {under}")
        elif kind == "app":
            if index != len(layers) - 1:
                above = len(layers) - 1 - index
                yield index, "layer", f"an app must be the last layer, but {above} layer(s) sit on it"
            elif below.layer in ("hypervisor", "kubernetes"):
                yield index, "layer", f"an app runs on a host, vm, container or pod, not directly on {under}"
