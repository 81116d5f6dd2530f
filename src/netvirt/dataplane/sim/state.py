"""What a simulated network remembers between packets: one explicit object, shared by L2 and L3.

Contract: ``State`` holds everything a walk may change — connection tracking (per host,
namespace and zone), fragments awaiting reassembly, learned switch FDB entries, learned tunnel
remotes, neighbour caches and the neighbour-resolution domains (what one silent broadcast from a
device heard). The graph indexes (``Topology``) never change; this does. ``reset`` forgets it all,
or with ``connections_only`` only conntrack and fragments (what a network that has run a while
keeps warm stays). The ``Simulator`` (L2) and its ``Stack`` (L3) are given the same ``State``; it
is the only thing either changes.
"""

from netvirt.dataplane.sim.topology import Place


class State:
    """See the module docstring."""

    __slots__ = ("conntrack", "reassembly", "learned", "tunnel_learned", "neighbours", "domains")

    def __init__(self) -> None:
        self.reset()

    def reset(self, *, connections_only: bool = False) -> None:
        """Forget conntrack and fragments and — unless ``connections_only`` — everything learned."""
        self.conntrack: dict[tuple[str, str, int], dict] = {}
        self.reassembly: dict[tuple, list[bytes]] = {}
        if not connections_only:
            self.learned: dict[Place, dict[bytes, Place]] = {}
            self.tunnel_learned: dict[Place, dict[bytes, bytes]] = {}
            self.neighbours: dict[Place, dict[bytes, bytes]] = {}
            self.domains: dict[tuple[Place, int], dict[bytes, tuple]] = {}
