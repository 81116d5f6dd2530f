"""Network namespaces: create, remove, and run code or commands inside one.

Contract: namespaces are named files under ``/run/netns`` (bind mounts of a namespace, the same
convention as ``ip netns``, so ``ip netns exec NAME ...`` works on everything netvirt makes).

Entering a namespace is per thread: Linux's ``setns(2)`` and ``unshare(2)`` with CLONE_NEWNET
change only the calling thread. ``call_in(name, fn)`` therefore runs ``fn`` in a fresh thread that
first enters the namespace and then exits; the caller's thread never moves. Everything a thread
creates keeps the namespace it was created in: sockets (netlink, AF_PACKET, TCP/UDP), and child
processes (``run``/``popen`` fork from that thread, so tools like ``nft`` or ``ping`` start inside).
/proc/sys/net is resolved per thread too, so ``sysctl`` writes in the right namespace.
"""

import ctypes
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pyroute2 import IPRoute

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_SHARED = 1 << 20
_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


CAP_NET_ADMIN = 12


def can_admin_network() -> bool:
    """Whether this process holds CAP_NET_ADMIN (and may create namespaces, links and rules)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return False


def path(name: str) -> Path:
    """The bind-mount file of namespace ``name``."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"namespace name {name!r}: must be a plain file name (no '/')")
    return NETNS_DIR / name


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def exists(name: str) -> bool:
    """Whether ``name`` is a live namespace (a mounted nsfs file, not a stale placeholder)."""
    try:
        return path(name).stat().st_dev == _nsfs_dev()
    except FileNotFoundError:
        return False


def names() -> list[str]:
    """The names of all namespaces under /run/netns, sorted."""
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _share_netns_dir() -> None:
    """Make /run/netns a shared mount point, as ``ip netns add`` does (mounts propagate)."""
    NETNS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = str(NETNS_DIR).encode()
    if _libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    _check(_libc.mount(target, target, b"none", _MS_BIND | _MS_REC, None), f"bind-mount {NETNS_DIR}")
    _check(_libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None), f"share {NETNS_DIR}")


def ensure(name: str) -> None:
    """Create namespace ``name`` unless it exists (a stale placeholder file is replaced)."""
    if exists(name):
        return
    _share_netns_dir()
    target = path(name)
    target.unlink(missing_ok=True)  # placeholder of a creation that crashed before its mount
    target.touch(mode=0o444, exist_ok=False)

    def bind_new_namespace() -> None:
        _check(_libc.unshare(CLONE_NEWNET), f"unshare a network namespace for {name}")
        _check(
            _libc.mount(b"/proc/thread-self/ns/net", str(target).encode(), b"none", _MS_BIND, None),
            f"bind-mount namespace {name}",
        )

    try:
        _in_thread(bind_new_namespace)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def adopt(name: str, source: str | Path) -> None:
    """Make ``name`` a bind mount of the existing namespace file ``source`` (a container runtime's
    ``/proc/PID/ns/net`` or ``/run/netns/...``), unless ``name`` already is a namespace: ``ensure``
    then keeps it, so what is built in ``name`` lands in that namespace. ``remove`` unmounts it
    and leaves the namespace itself to its owner. OSError when ``source`` is not a namespace."""
    if exists(name):
        return
    if os.stat(source).st_dev != _nsfs_dev():
        raise OSError(f"{source} is not a network namespace file")
    _share_netns_dir()
    target = path(name)
    target.touch(mode=0o444, exist_ok=True)
    try:
        _check(_libc.mount(str(source).encode(), str(target).encode(), b"none", _MS_BIND, None), f"bind-mount {source} as {name}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def same(name: str, source: str | Path) -> bool:
    """Whether namespace ``name`` is the namespace file ``source`` (one inode)."""
    try:
        return path(name).stat().st_ino == os.stat(source).st_ino and exists(name)
    except OSError:
        return False


def remove(name: str) -> None:
    """Unmount and delete namespace ``name`` (absent is fine). Its links and rules go with it once
    no process is left inside (``pids_in`` tells which are)."""
    target = path(name)
    _libc.umount2(str(target).encode(), _MNT_DETACH)  # fails harmlessly on a stale placeholder
    target.unlink(missing_ok=True)


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (they keep it alive after ``remove``)."""
    try:
        ns = path(name).stat()
    except FileNotFoundError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino):
            found.append(int(entry.name))
    return sorted(found)


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread and return its result (or raise its exception)."""
    outcome: list = []

    def body() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as error:  # handed to the caller below
            outcome.append((False, error))

    thread = threading.Thread(target=body, name="netvirt-netns", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _enter(name: str) -> None:
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"enter namespace {name}")
    finally:
        os.close(fd)


def call_in(name: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``fn(*args, **kwargs)`` run inside namespace ``name`` (in a thread of its own)."""

    def entered() -> T:
        _enter(name)
        return fn(*args, **kwargs)

    return _in_thread(entered)


def call_in_anonymous(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` run in a brand-new unnamed namespace that vanishes when ``fn`` returns
    (nothing to clean up, even after kill -9): for throwaway probes."""

    def isolated() -> T:
        _check(_libc.unshare(CLONE_NEWNET), "unshare a throwaway network namespace")
        return fn(*args)

    return _in_thread(isolated)


def socket_in(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace ``name`` (usable from any thread)."""
    return call_in(name, socket.socket, family, kind, proto)


def netlink(name: str) -> IPRoute:
    """An rtnetlink handle (pyroute2 ``IPRoute``) for namespace ``name``; close it when done.
    Use it from the thread that opened it (pyroute2 keeps per-thread state)."""
    sock = socket_in(name, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    return IPRoute(fileno=sock.detach())


def run(
    name: str, argv: Sequence[str], *, input: bytes | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Run the command ``argv`` inside namespace ``name``; stdout and stderr are captured.
    With ``check``, a non-zero exit raises ``CommandFailed`` carrying the command's stderr."""
    done = call_in(
        name, subprocess.run, list(argv), input=input, capture_output=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise CommandFailed(name, argv, done.returncode, done.stderr.decode(errors="replace"))
    return done


def popen(name: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen:
    """Start ``argv`` inside namespace ``name`` (``subprocess.Popen`` keyword arguments apply)."""
    return call_in(name, subprocess.Popen, list(argv), **kwargs)


class CommandFailed(RuntimeError):
    """A command run inside a namespace exited non-zero."""

    def __init__(self, namespace: str, argv: Sequence[str], returncode: int, stderr: str):
        self.namespace, self.argv, self.returncode, self.stderr = namespace, list(argv), returncode, stderr
        super().__init__(
            f"in namespace {namespace}: {' '.join(argv)} exited {returncode}: {stderr.strip()}"
        )


def _sysctl_file(key: str) -> Path:
    parts = key.split("/") if "/" in key else key.split(".")
    if parts[0] != "net" or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"sysctl {key!r}: only net.* keys are per namespace")
    return Path("/proc/sys", *parts)


def sysctls(name: str, values: dict[str, str | int]) -> None:
    """Write several sysctls inside namespace ``name`` at once (keys as for ``sysctl``),
    skipping those that already hold their value."""
    files = {_sysctl_file(key): f"{value}" for key, value in values.items()}

    def access() -> None:
        for file, value in files.items():
            if file.read_text().strip() != value:
                file.write_text(f"{value}\n")

    call_in(name, access)


def read_sysctls(name: str, keys: Sequence[str]) -> dict[str, str | None]:
    """The values of ``keys`` inside namespace ``name`` (None for a key that does not exist)."""
    return call_in(name, read_sysctls_here, keys)


def read_sysctls_here(keys: Sequence[str]) -> dict[str, str | None]:
    """``read_sysctls`` for the namespace of the calling thread (inside ``call_in``)."""
    found: dict[str, str | None] = {}
    for key in keys:
        try:
            found[key] = _sysctl_file(key).read_text().strip()
        except FileNotFoundError:
            found[key] = None
    return found


def exec_in(name: str, argv: Sequence[str]) -> None:
    """Replace this process with ``argv`` running inside namespace ``name`` (like ``ip netns
    exec``); the calling thread enters the namespace, so call it only from the main thread
    right before exiting. Raises OSError when the namespace or the command cannot be entered."""
    _enter(name)
    os.execvp(argv[0], list(argv))


def sysctl(name: str, key: str, value: str | int | None = None) -> str:
    """Read (and, with ``value``, first write) sysctl ``key`` inside namespace ``name``.

    ``key`` is dotted (``net.ipv4.ip_forward``) or, when a part contains a dot such as an interface
    name, slashed (``net/ipv6/conf/eth0.5/disable_ipv6``). Only ``net`` keys are per namespace.
    """
    file = _sysctl_file(key)

    def access() -> str:
        if value is not None:
            file.write_text(f"{value}\n")
        return file.read_text().strip()

    return call_in(name, access)
