"""The ownership record: which kernel objects netvirt made for a deployment, written before each.

Contract: ``Record(names)`` is the journal ``/run/netvirt/<deployment>.jsonl`` (one JSON header line,
then one line per object), held under an exclusive lock while open. ``add(obj)`` appends and
flushes the line *before* the caller creates the object, so a crash (even kill -9) can leave a
recorded object that does not exist, never an existing object that is not recorded. A torn last
line (a crash mid-write) names an object that was never created and is ignored.

Objects live only in namespaces: netvirt never creates links or rules in the namespace it runs in.
``cleanup`` removes exactly the recorded objects that still exist, and only if their names carry
netvirt's marks (namespace/link prefix, ``netvirt*`` tables, ``NV-*`` chains), then the record.
Objects inside a recorded namespace go with it; objects in other (foreign) namespaces are removed
one by one. The state directory is on tmpfs: records and namespaces both vanish at reboot.
"""

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netvirt.dataplane.kernel.naming import IPT_CHAIN_PREFIX, NFT_TABLE_PREFIX, Names

STATE_DIR = Path("/run/netvirt")
FORMAT = 1
SUFFIX = ".jsonl"


@dataclass(frozen=True, slots=True)
class OwnedNamespace:
    name: str
    type = "namespace"


@dataclass(frozen=True, slots=True)
class OwnedLink:
    namespace: str
    name: str
    kind: str
    type = "link"


@dataclass(frozen=True, slots=True)
class OwnedNftTable:
    namespace: str
    name: str
    family: str = "inet"
    type = "nft_table"


@dataclass(frozen=True, slots=True)
class OwnedIptChain:
    """Chain ``chain`` of iptables ``table`` (IP ``version`` 4 or 6), jumped to from ``hook``."""

    namespace: str
    version: int
    table: str
    chain: str
    hook: str
    type = "ipt_chain"


@dataclass(frozen=True, slots=True)
class OwnedIptTable:
    """An iptables-nft table (``filter``/``nat`` of IP ``version``) that did not exist before netvirt
    used iptables in ``namespace``: iptables-nft creates it on first use. Cleanup removes it only
    while it holds nothing but empty built-in chains with policy ACCEPT (nobody else used it)."""

    namespace: str
    version: int
    table: str
    type = "ipt_table"


@dataclass(frozen=True, slots=True)
class OwnedBpfPins:
    """The bpffs directory ``path`` of the eBPF programs and maps netvirt pinned for kernel
    namespace ``namespace``. bpffs is not per namespace: removing the namespace detaches the
    programs from its links, but the pins (and so the programs and maps) stay until removed."""

    namespace: str
    path: str
    type = "bpf_pins"


Owned = OwnedNamespace | OwnedLink | OwnedNftTable | OwnedIptChain | OwnedIptTable | OwnedBpfPins
_TYPES = {cls.type: cls for cls in (OwnedNamespace, OwnedLink, OwnedNftTable, OwnedIptChain, OwnedIptTable, OwnedBpfPins)}


class RecordError(RuntimeError):
    """The ownership record cannot be used (corrupt, foreign, or locked by a live process)."""


def to_json(obj: Owned) -> dict:
    return {"type": obj.type, **asdict(obj)}


def from_json(data: dict) -> Owned:
    data = dict(data)
    cls = _TYPES[data.pop("type")]
    return cls(**data)


def carries_marks(obj: Owned, names: Names) -> bool:
    """Whether ``obj``'s name has netvirt's marks for ``names`` (cleanup touches nothing else)."""
    match obj:
        case OwnedNamespace(name=name):
            return names.owns_namespace(name)
        case OwnedLink(namespace=ns, name=name):
            return names.owns_namespace(ns) or names.owns_link(name)
        case OwnedNftTable(name=name):
            return name.startswith(NFT_TABLE_PREFIX)
        case OwnedIptChain(chain=chain):
            return chain.startswith(IPT_CHAIN_PREFIX)
        case OwnedIptTable(table=table):
            return table in ("filter", "nat")  # removed only while untouched (see the class)
        case OwnedBpfPins(path=path):
            return Path(path).parent == names.bpf_root
    return False


class Record:
    """The ownership journal of one deployment; use as a context manager (takes the lock)."""

    def __init__(self, names: Names, state_dir: Path = STATE_DIR, lock_timeout: float = 30.0):
        self.names = names
        state_dir = Path(state_dir)
        self.path = journal_path(names, state_dir)
        self.lock_path = state_dir / f"{names.deployment}.lock"
        self.lock_timeout = lock_timeout
        self._objects: dict[Owned, None] = {}
        self._lock_fd: int | None = None
        self._journal = None

    @property
    def objects(self) -> tuple[Owned, ...]:
        """Recorded objects, in the order they were recorded."""
        return tuple(self._objects)

    def __enter__(self) -> "Record":
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = _lock(self.lock_path, self.lock_timeout)
        try:
            self._objects = dict.fromkeys(read_journal(self.path, self.names))
            _drop_torn_tail(self.path)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def add(self, *objs: Owned) -> None:
        """Record ``objs`` durably (call before creating them); already recorded ones are skipped."""
        new = [obj for obj in objs if obj not in self._objects]
        if not new:
            return
        for obj in new:
            if not carries_marks(obj, self.names):
                raise RecordError(f"{obj} lacks netvirt's name marks; cleanup could not remove it")
        if self._lock_fd is None:
            raise RecordError("Record.add outside 'with Record(...)': the record must be locked")
        if self._journal is None:
            fresh = not self.path.exists()
            self._journal = open(self.path, "a", encoding="utf-8")
            if fresh:
                header = {"format": FORMAT, "deployment": self.names.deployment, "prefix": self.names.prefix}
                self._journal.write(json.dumps(header) + "\n")
        self._journal.write("".join(json.dumps(to_json(obj)) + "\n" for obj in new))
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._objects.update(dict.fromkeys(new))

    def discard(self, objs: Iterable[Owned]) -> None:
        """Drop ``objs`` from the record (call after removing them): the journal is rewritten
        without them and atomically renamed into place; an empty record is forgotten."""
        gone = set(objs) & set(self._objects)
        if not gone:
            return
        if self._lock_fd is None:
            raise RecordError("Record.discard outside 'with Record(...)': the record must be locked")
        keep = [obj for obj in self._objects if obj not in gone]
        if not keep:
            self.forget()
            return
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        header = {"format": FORMAT, "deployment": self.names.deployment, "prefix": self.names.prefix}
        fresh = self.path.with_suffix(".tmp")
        with open(fresh, "w", encoding="utf-8") as out:
            out.write("".join(json.dumps(line) + "\n" for line in [header, *map(to_json, keep)]))
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, self.path)
        self._objects = dict.fromkeys(keep)

    def forget(self) -> None:
        """Delete the journal and the lock file (after everything recorded is gone)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.path.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)
        self._objects = {}


def _drop_torn_tail(path: Path) -> None:
    """Cut a torn last line (a crash mid-write; its object was never created) so appends stay whole."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        os.truncate(path, data.rfind(b"\n") + 1)


def journal_path(names: Names, state_dir: Path = STATE_DIR) -> Path:
    """Where the ownership journal of ``names.deployment`` lives."""
    return state_dir / f"{names.deployment}{SUFFIX}"


def _lock(path: Path, timeout: float) -> int:
    """An fd holding an exclusive flock on ``path`` (the same inode that is at ``path`` now)."""
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() > deadline:
                raise RecordError(
                    f"{path}: another netvirt process is changing this deployment; "
                    f"wait for it to finish (or stop it) and retry"
                ) from None
            time.sleep(0.05)
            continue
        try:  # the holder before us may have deleted the file after we opened it
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def read_journal(path: Path, names: Names | None = None) -> list[Owned]:
    """The objects recorded in journal ``path`` (none if it does not exist)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []
    if not lines:
        return []
    header = _header(path, lines[0])
    if names is not None and (header["deployment"], header["prefix"]) != (names.deployment, names.prefix):
        raise RecordError(
            f"{path}: records deployment {header['deployment']!r} with prefix {header['prefix']!r}, "
            f"not {names.deployment!r} with {names.prefix!r}"
        )
    objects = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            objects.append(from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as error:
            if number == len(lines) and not line.endswith("\n"):
                break  # torn write: that object was never created
            raise RecordError(f"{path}:{number}: unreadable ownership line ({error})") from None
    return objects


def _header(path: Path, line: str) -> dict:
    try:
        header = json.loads(line)
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')!r}, expected {FORMAT}")
        Names(header["deployment"], header["prefix"])
        return header
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise RecordError(f"{path}:1: not a netvirt ownership record ({error})") from None


def recorded_names(state_dir: Path = STATE_DIR) -> list[Names]:
    """The naming schemes of every deployment with a record in ``state_dir``."""
    found = []
    for path in sorted(state_dir.glob(f"*{SUFFIX}")):
        try:
            first = path.open(encoding="utf-8").readline()
        except FileNotFoundError:
            continue
        if not first.endswith("\n"):
            continue  # a header being written right now; its process holds the lock
        header = _header(path, first)
        found.append(Names(header["deployment"], header["prefix"]))
    return found


@dataclass
class CleanupReport:
    """What ``cleanup`` did: objects removed, recorded objects already gone, objects it refused
    to touch (names without netvirt's marks), and processes still inside removed namespaces
    (they keep an unnamed copy alive until they exit; netvirt never kills them)."""

    deployment: str
    removed: list[Owned] = field(default_factory=list)
    already_gone: list[Owned] = field(default_factory=list)
    refused: list[Owned] = field(default_factory=list)
    held_by: dict[str, list[int]] = field(default_factory=dict)
