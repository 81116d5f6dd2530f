"""Remove what netvirt made — exactly that — using the ownership records.

Contract: ``cleanup(names)`` takes the deployment's record lock (so it never races a build; a
build killed with -9 released it), removes every recorded object that still exists and carries
netvirt's name marks, newest first, then deletes the record. Objects inside a recorded namespace
go with the namespace; objects in other namespaces (a veth end or rules netvirt put into a
namespace it does not own) are removed one by one. Anything without a record is never touched;
``unrecorded`` lists namespaces that look like netvirt's but have no record, for people to judge.
Running it again, or on a deployment that has no record, does nothing. With ``select``, only the
objects it picks (from all recorded ones, under the lock) are removed and dropped from the record;
the rest stays recorded (the record is deleted once nothing is left).
"""

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from netvirt.dataplane.kernel import iptables, links, netns, nftables
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.ownership import (
    STATE_DIR,
    CleanupReport,
    Owned,
    OwnedBpfPins,
    OwnedIptChain,
    OwnedIptTable,
    OwnedLink,
    OwnedNamespace,
    OwnedNftTable,
    Record,
    carries_marks,
    journal_path,
    read_journal,
    recorded_names,
)


Selector = Callable[[Sequence[Owned]], Iterable[Owned]]


def cleanup(names: Names, state_dir: Path = STATE_DIR, select: Selector | None = None) -> CleanupReport:
    """Remove every kernel object recorded for ``names.deployment`` (or those ``select`` picks
    from the recorded ones), and their record."""
    report = CleanupReport(names.deployment)
    with Record(names, state_dir) as record:
        chosen = set(record.objects if select is None else select(record.objects))
        objects = [obj for obj in reversed(record.objects) if obj in chosen]
        owned_namespaces = {obj.name for obj in objects if isinstance(obj, OwnedNamespace)}
        for obj in objects:
            if not carries_marks(obj, names):
                report.refused.append(obj)
            elif isinstance(obj, OwnedBpfPins):  # bpffs is global: pins outlive their namespace
                (report.removed if remove_pins(Path(obj.path)) else report.already_gone).append(obj)
            elif isinstance(obj, OwnedNamespace) or obj.namespace in owned_namespaces:
                continue  # goes with its namespace, below
            elif _remove_inside(obj):
                report.removed.append(obj)
            else:
                report.already_gone.append(obj)
        for obj in objects:
            if isinstance(obj, OwnedNamespace) and obj not in report.refused:
                if netns.exists(obj.name):
                    held = netns.pids_in(obj.name)
                    if held:
                        report.held_by[obj.name] = held
                    netns.remove(obj.name)
                    report.removed.append(obj)
                else:
                    netns.remove(obj.name)  # a stale placeholder file, if any
                    report.already_gone.append(obj)
        remove_pins(names.bpf_root, only_empty=True)
        if select is None:
            record.forget()
        else:
            record.discard(chosen - set(report.refused))
    return report


def _remove_inside(obj: OwnedLink | OwnedNftTable | OwnedIptChain | OwnedIptTable) -> bool:
    """Remove one object from a namespace netvirt does not own; False if it is not there."""
    if not netns.exists(obj.namespace):
        return False
    match obj:
        case OwnedLink(namespace=namespace, name=name, kind=kind):
            ipr = netns.netlink(namespace)
            try:
                msg = links.find(ipr, name)
                if msg is None or links.kind(msg) != kind:
                    return False  # a different object by that name is not ours
                return links.delete(ipr, name)
            finally:
                ipr.close()
        case OwnedNftTable(namespace=namespace, name=name, family=family):
            return nftables.delete_table(namespace, name, family)
        case OwnedIptChain(namespace=namespace, version=version, table=table, chain=chain):
            return iptables.remove_chain(namespace, version, table, chain)
        case OwnedIptTable(namespace=namespace, version=version, table=table):
            return iptables.remove_table_if_untouched(namespace, version, table)
    raise AssertionError(f"unhandled owned object {obj!r}")


def remove_pins(path: Path, only_empty: bool = False) -> bool:
    """Unpin everything under bpffs directory ``path`` and remove it (``only_empty``: only an
    empty directory); False when it was not there. A program or map goes once nothing pins,
    attaches or holds it."""
    if not path.is_dir():
        return False
    if only_empty and any(path.iterdir()):
        return False
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        child.rmdir() if child.is_dir() else child.unlink()
    path.rmdir()
    return True


def cleanup_all(state_dir: Path = STATE_DIR) -> list[CleanupReport]:
    """``cleanup`` for every deployment recorded in ``state_dir``."""
    return [cleanup(names, state_dir) for names in recorded_names(state_dir)]


def unrecorded(prefix: str, state_dir: Path = STATE_DIR) -> list[str]:
    """Namespaces named like netvirt's (``{prefix}-...``) that no record in ``state_dir`` lists."""
    known = set()
    for names in recorded_names(state_dir):
        objects = read_journal(journal_path(names, state_dir))
        known |= {obj.name for obj in objects if isinstance(obj, OwnedNamespace)}
    return [name for name in netns.names() if name.startswith(f"{prefix}-") and name not in known]
