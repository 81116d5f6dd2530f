"""The kernel toolkit: what every kernel-based backend (``linux``, and ``ebpf``/``userspace``
beside it) uses to realise graphs in real Linux network namespaces.

Contract: everything here talks to the real kernel, inside network namespaces only, and owns
exactly what it creates. ``build.Builder`` is the one way to change the kernel: it records each
object in the deployment's ownership journal (``ownership``) before creating it and converges
("ensure") from any partial state; ``cleanup.cleanup`` / ``cleanup_all`` remove exactly the
recorded objects, also after a crash. Underneath: ``naming`` (deterministic names within kernel
limits), ``netns`` (namespaces; code and commands inside one), ``links`` (netlink via pyroute2),
``rulesets`` (one rule vocabulary, checked up front) realised by the rule targets of ``targets``
(``RuleTarget``: ``nftables``, ``iptables``), ``probe`` (what this kernel can create),
``capture`` (AF_PACKET) and ``observe.KernelObserver`` (the ``dataplane.api.Observer`` of every
kernel backend). docs/linux.md explains names, ownership, cleanup guarantees and inspection.
"""
