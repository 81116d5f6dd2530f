"""The agents' records in the store: an ``AgentStatus`` report and a ``Heartbeat`` (keys: ``keys``)."""

import json
import time
from dataclasses import asdict, dataclass
from enum import StrEnum


class AgentState(StrEnum):
    CONVERGED = "converged"
    """The backend realizes the desired graph of ``desired_revision``."""
    FAILED = "failed"
    """The desired graph could not be realized (``errors`` says why); the last good state is kept."""
    IDLE = "idle"
    """Nothing is desired for this host; the backend holds nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStatus:
    """An agent's report. Revisions are the desired key's ``mod_revision`` (0: none)."""

    host: str
    backend: str
    state: AgentState
    desired_revision: int
    realized_revision: int
    errors: tuple[str, ...] = ()
    agent: str = ""
    """Who reports: ``pid@machine``."""
    since: float = 0.0
    """Unix time the report last changed (other than this field)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "AgentStatus":
        fields = json.loads(data)
        fields["state"] = AgentState(fields["state"])
        fields["errors"] = tuple(fields["errors"])
        return cls(**fields)

    def same_report(self, other: "AgentStatus | None") -> bool:
        """Equal but for ``since``."""
        return other is not None and asdict(self) | {"since": 0} == asdict(other) | {"since": 0}


STALE_AFTER = 3
"""A heartbeat is stale when this many of its intervals passed without a new one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """An agent's sign of life: ``agent`` (``pid@machine``) was running at unix time ``at`` and
    refreshes this every ``interval`` seconds. Compared with the reader's clock: hosts need
    synchronised clocks (NTP) to within a fraction of ``STALE_AFTER x interval``."""

    agent: str
    at: float
    interval: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Heartbeat":
        return cls(**json.loads(data))

    def age(self, now: float | None = None) -> float:
        """Seconds since the agent was last seen (never negative)."""
        return max(0.0, (time.time() if now is None else now) - self.at)

    def stale(self, now: float | None = None) -> bool:
        return self.age(now) > STALE_AFTER * self.interval
