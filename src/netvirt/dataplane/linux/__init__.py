"""The ``linux`` backend: ``backend.LinuxBackend`` realises one host's device graph in the real
kernel with the kernel toolkit (``dataplane.kernel``), and ``readback`` reads it back.

Contract: what is specific to this backend lives here — the layout (a graph namespace per kernel
namespace, a NIC as a veth into its underlay segment's namespace, bridges, veth pairs, VXLAN with
static FDB), incremental converging, and the read-back of that layout. Filtering and NAT go
through one rule target per host (``dataplane.kernel.targets``: nftables or iptables).
"""
