"""Environment stack layers (host OS, hypervisors, VMs, containers, Kubernetes CNIs, SR-IOV, DPDK,
XDP) turned into device sub-graphs.

Contract: pure functions from a spec's stack layers to ``graph`` objects; each device they produce
declares its mode, system level, technique and the backends that can realise it.
"""
