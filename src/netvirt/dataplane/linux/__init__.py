"""The ``linux`` backend (``backend.LinuxBackend``: one host's device graph in the real kernel,
read back by ``readback``) and the kernel toolkit it is built with.

Contract: everything here talks to the real kernel, inside network namespaces only, and owns
exactly what it creates. ``build.Builder`` is the one way to change the kernel: it records each
object in the deployment's ownership journal (``ownership``) before creating it and converges
("ensure") from any partial state; ``cleanup.cleanup`` / ``cleanup_all`` remove exactly the
recorded objects, also after a crash. Underneath: ``naming`` (deterministic names within kernel
limits), ``netns`` (namespaces; code and commands inside one), ``links`` (netlink via pyroute2),
``rulesets`` + ``nftables`` / ``iptables`` (one rule vocabulary, two filter backends, drift
read-back), ``probe`` (what this kernel can create) and ``capture`` (AF_PACKET observation).
docs/linux.md explains names, ownership, cleanup guarantees and how to inspect the result.
"""
