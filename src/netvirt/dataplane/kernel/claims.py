"""Which spec a deployment belongs to: ``<state_dir>/<deployment>.spec.json``.

Contract: a deployment is claimed by the spec that built it — its name, the resolved path of its
file and the SHA-256 of the file's content (``SpecClaim.of``). Two specs are the same when either
the path or the content hash matches: editing the file and running ``up`` again converges (and
updates the claim), a copy of the same file elsewhere is the same spec; a different file with a
different content that happens to reuse the ``name`` is another spec (``conflict`` says how).
``up`` writes the claim before it builds anything; ``down`` drops it with the deployment. A
deployment without a claim (built by an agent, or by an older netvirt) belongs to no spec file.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

SUFFIX = ".spec.json"


@dataclass(frozen=True, slots=True)
class SpecClaim:
    spec: str  # the spec's name
    path: str  # the resolved path of its file
    sha256: str  # of the file's content

    @classmethod
    def of(cls, name: str, path: Path) -> "SpecClaim":
        return cls(name, str(Path(path).resolve()), hashlib.sha256(Path(path).read_bytes()).hexdigest())

    def same_spec(self, other: "SpecClaim") -> bool:
        return self.path == other.path or self.sha256 == other.sha256

    def describe(self) -> str:
        return f"spec {self.spec!r} from {self.path} (content sha256 {self.sha256[:12]})"


def claim_path(state_dir: Path, deployment: str) -> Path:
    return Path(state_dir) / f"{deployment}{SUFFIX}"


def read(state_dir: Path, deployment: str) -> SpecClaim | None:
    """The claim on ``deployment``, or None (unclaimed, or the record is unreadable)."""
    try:
        data = json.loads(claim_path(state_dir, deployment).read_text(encoding="utf-8"))
        return SpecClaim(str(data["spec"]), str(data["path"]), str(data["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def conflict(state_dir: Path, deployment: str, claim: SpecClaim) -> SpecClaim | None:
    """The other spec's claim when ``deployment`` belongs to a spec other than ``claim``'s."""
    held = read(state_dir, deployment)
    return held if held is not None and not held.same_spec(claim) else None


def write(state_dir: Path, deployment: str, claim: SpecClaim) -> None:
    """Record ``claim`` on ``deployment`` (atomically: a reader sees the old or the new one)."""
    path = claim_path(state_dir, deployment)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fresh = path.with_suffix(".tmp")
    fresh.write_text(json.dumps(asdict(claim)) + "\n", encoding="utf-8")
    os.replace(fresh, path)


def drop(state_dir: Path, deployment: str) -> None:
    claim_path(state_dir, deployment).unlink(missing_ok=True)


def claimed(state_dir: Path) -> dict[str, SpecClaim]:
    """deployment -> claim, for every claimed deployment in ``state_dir``."""
    found = {}
    for path in sorted(Path(state_dir).glob(f"*{SUFFIX}")):
        deployment = path.name[: -len(SUFFIX)]
        if (held := read(state_dir, deployment)) is not None:
            found[deployment] = held
    return found
