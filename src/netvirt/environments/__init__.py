"""Environments: nested stack layers (Windows/Linux host, VirtualBox, VMware, Hyper-V, WSL2,
KVM/virtio, SR-IOV, containers, Kubernetes CNIs, DPDK, AF_XDP, XDP) -> device graphs.

Contract: ``build(spec, stack) -> StackGraph``: a pure function of the spec; the graph carries
every device's mode, system level and technique and the walkthrough ``Stage``s that group trace
hops into the rows of the notes' tables. ``StackError`` explains a stack that cannot be
built (layer, reason, fix).
"""

from netvirt.environments.builder import StackError
from netvirt.environments.stacks import StackGraph, build

__all__ = ["StackError", "StackGraph", "build"]
