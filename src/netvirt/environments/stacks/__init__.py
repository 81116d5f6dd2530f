"""A spec stack (host -> hypervisor -> vm -> kubernetes -> pod -> app) as a device graph.

Contract: ``build(spec, stack) -> StackGraph``: one host graph holding the outside world (a
client on the ``lan`` segment), the physical host and every nested environment as namespaces,
wired as the real products wire them, with every device's mode, level and technique set and the
hops grouped in ``graph.Stage``s named in the notes' vocabulary: a Windows host gives the
walkthrough steps of the notes' section 5 ("Physical Entry", "Host OS (Win)", ...), a Linux host
the component names of section 4's paths ("NIC", "Host Bridge", ...). Traffic enters from the
client at the bottom and is forwarded up to the app: bridged networks put the guest on the LAN,
NAT networks forward the port (VirtualBox/VMware/Hyper-V NAT engines, libvirt, the WSL2 port
proxy), containers publish it, Kubernetes exposes it as a NodePort (30000 + port % 2768) that
kube-proxy translates to the pod. docs/trace.md has the table of layers and what each builds.

One module per layer family builds its layers on the shared ``walk.StackWalk``: ``hosts``,
``hypervisors`` (VMs and WSL2), ``kubernetes`` (nodes; one ``Cni`` row per CNI), ``workloads``
(pods, containers), ``apps``. Fixed address plan: LAN 192.168.1.0/24 (or the tied spec host's
underlay), host .10, bridged guests .20, client .254; VirtualBox NAT 10.0.2.0/24, libvirt
192.168.122.0/24, Hyper-V/WSL2 172.28.0.0/20, Docker 172.17.0.0/16, pods 10.244.0.0/24, services
10.96.0.10.
"""

from netvirt.environments.builder import StackError
from netvirt.environments.stacks.apps import app
from netvirt.environments.stacks.hosts import host
from netvirt.environments.stacks.hypervisors import virtual_machine, wsl2
from netvirt.environments.stacks.kubernetes import node
from netvirt.environments.stacks.walk import StackGraph, StackWalk
from netvirt.environments.stacks.workloads import workload
from netvirt.management.spec import AppLayer, ContainerLayer, HypervisorLayer, KubernetesLayer, PodLayer, Spec, \
    Stack, VmLayer

__all__ = ["StackGraph", "build"]


def build(spec: Spec, stack: Stack) -> StackGraph:
    """The graph of ``stack`` (see the module docstring); ``StackError`` if it cannot be built."""
    walk = StackWalk(spec, stack)
    layers = stack.layers
    level = host(walk, layers[0])
    index = 1
    while index < len(layers):
        layer = layers[index]
        if isinstance(layer, HypervisorLayer) and layer.type == "wsl2":
            level = wsl2(walk, layer, level)
        elif isinstance(layer, HypervisorLayer):  # a hypervisor and the vm on it are one step
            guest = layers[index + 1] if index + 1 < len(layers) else None
            if not isinstance(guest, VmLayer):
                raise StackError(f"stacks[{stack.name}].layers[{index + 1}]: a {layer.type} "
                                 "hypervisor needs a vm layer on it")
            level = virtual_machine(walk, layer, guest, level)
            index += 1
        elif isinstance(layer, KubernetesLayer):
            level = node(walk, layer, level)
        elif isinstance(layer, (PodLayer, ContainerLayer)):
            level = workload(walk, layer, level)
        elif isinstance(layer, AppLayer):
            app(walk, layer, level)
        else:
            raise StackError(f"stacks[{stack.name}].layers[{index}]: a {layer.layer} layer cannot sit here")
        index += 1
    return walk.finish()
