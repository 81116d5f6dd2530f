"""The ``userspace`` data plane: a DPDK-style poll-mode switch process per host.

``rings`` (AF_PACKET TPACKET_V2 receive and transmit rings), ``flows`` (the exact-match
flow cache and the actions compiled into it), ``oracle`` (the slow path: the simulator's decision),
``switch`` (the burst loop, poll modes, counters), ``process`` (the supervised switch process and
its ownership records), ``offloads`` (complete frames from the kernel), ``backend``
(``UserspaceBackend``). docs/userspace.md describes the whole.
"""
