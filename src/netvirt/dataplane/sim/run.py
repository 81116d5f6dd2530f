"""A walk in progress: the simulator's scratch state for one injected packet.

Contract: ``Run`` collects the events (unless silent) and the outcome; ``finish`` keeps the first
ending, except that a delivery wins over any other. The finished walk is a ``dataplane.events.Walk``.
"""

from netvirt.dataplane.events import Disposition, Event


class Run:
    """One walk in progress: its events (unless silent), outcome, overhead and budgets."""

    __slots__ = ("events", "record", "result", "hops", "overhead", "in_reply", "answers", "heard", "where")

    def __init__(self, record: bool = True) -> None:
        self.events: list[Event] = []
        self.record = record
        self.result: tuple[Disposition, str] | None = None
        self.hops = 0
        self.overhead = 0
        self.in_reply = False
        self.answers = 1  # at most one generated answer (RST / ICMP error) per walk
        self.heard: dict[bytes, tuple] | None = None  # neighbour resolution: address -> (MAC, place) that answers
        self.where: tuple[str, str] | None = None  # (host, namespace) the packet was delivered in

    def finish(self, disposition: Disposition, reason: str, where: tuple[str, str] | None = None) -> None:
        """Record how the sent packet ended (delivery, ``where``, wins over any other ending)."""
        if self.in_reply:
            return
        if self.result is None or disposition is Disposition.DELIVERED and self.result[0] is not Disposition.DELIVERED:
            self.result = (disposition, reason)
            self.where = where
