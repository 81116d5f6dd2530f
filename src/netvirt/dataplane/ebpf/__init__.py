"""The ``ebpf`` data plane: netvirt's filtering, service load balancing and host drop lists as
eBPF programs in the kernel (C in ``bpf/``, compiled by ``build``, loaded through libbpf by
``libbpf``; rules become map entries in ``maps``; ``programs`` wraps the loaded objects).
docs/ebpf.md describes the programs, the maps and the counters.
"""
