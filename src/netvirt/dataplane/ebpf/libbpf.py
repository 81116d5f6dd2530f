"""libbpf (Debian's ``libbpf1``) through ctypes: load objects, use maps, run, attach and pin programs.

Contract: ``BpfObject(path)`` opens and loads a compiled object (the verifier runs here: a
rejection raises ``BpfError`` with the kernel's message); ``program(name)`` and ``map(name)``
give its parts. ``Map`` reads and writes entries as ctypes structures (``update``, ``lookup``,
``delete``, ``keys``; per-CPU maps return one value per possible CPU). ``test_run`` is
``BPF_PROG_TEST_RUN``: a program run on packet bytes, with no traffic (output bytes, return
code, ``__sk_buff`` context out, ns per run). ``tc_attach``/``tc_detach`` use clsact hooks and
``xdp_attach``/``xdp_detach`` the XDP hook, both in the calling thread's network namespace;
``pin``/``unpin`` manage bpffs paths. Errors are ``BpfError`` naming what failed and errno.
"""

import ctypes
import errno
import os
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint32, c_void_p, sizeof
from functools import cache
from pathlib import Path

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
TC_INGRESS, TC_EGRESS = 1, 2  # enum bpf_tc_attach_point
XDP_FLAGS_UPDATE_IF_NOEXIST, XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 1, 2, 4
BPFFS = Path("/sys/fs/bpf")


class BpfError(OSError):
    """A libbpf call failed: ``what`` and the errno it gave."""


@cache
def lib() -> ctypes.CDLL:
    try:
        handle = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as exc:
        raise BpfError(errno.ENOENT, f"libbpf.so.1 not found ({exc}): install libbpf1 (./scripts/setup)") from None
    for name, restype, argtypes in (
        ("bpf_object__open_file", c_void_p, [c_char_p, c_void_p]),
        ("bpf_object__load", c_int, [c_void_p]),
        ("bpf_object__close", None, [c_void_p]),
        ("bpf_object__find_program_by_name", c_void_p, [c_void_p, c_char_p]),
        ("bpf_object__find_map_by_name", c_void_p, [c_void_p, c_char_p]),
        ("bpf_object__next_map", c_void_p, [c_void_p, c_void_p]),
        ("bpf_map__name", c_char_p, [c_void_p]),
        ("bpf_map__reuse_fd", c_int, [c_void_p, c_int]),
        ("bpf_program__fd", c_int, [c_void_p]),
        ("bpf_map__fd", c_int, [c_void_p]),
        ("bpf_map_update_elem", c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
        ("bpf_map_lookup_elem", c_int, [c_int, c_void_p, c_void_p]),
        ("bpf_map_delete_elem", c_int, [c_int, c_void_p]),
        ("bpf_map_get_next_key", c_int, [c_int, c_void_p, c_void_p]),
        ("bpf_obj_pin", c_int, [c_int, c_char_p]),
        ("bpf_obj_get", c_int, [c_char_p]),
        ("bpf_obj_get_info_by_fd", c_int, [c_int, c_void_p, POINTER(c_uint32)]),
        ("bpf_prog_test_run_opts", c_int, [c_int, c_void_p]),
        ("bpf_tc_hook_create", c_int, [c_void_p]),
        ("bpf_tc_hook_destroy", c_int, [c_void_p]),
        ("bpf_tc_attach", c_int, [c_void_p, c_void_p]),
        ("bpf_tc_detach", c_int, [c_void_p, c_void_p]),
        ("bpf_tc_query", c_int, [c_void_p, c_void_p]),
        ("bpf_xdp_attach", c_int, [c_int, c_int, c_uint32, c_void_p]),
        ("bpf_xdp_detach", c_int, [c_int, c_uint32, c_void_p]),
        ("bpf_xdp_query_id", c_int, [c_int, c_int, POINTER(c_uint32)]),
        ("libbpf_num_possible_cpus", c_int, []),
        ("ring_buffer__new", c_void_p, [c_int, c_void_p, c_void_p, c_void_p]),
        ("ring_buffer__poll", c_int, [c_void_p, c_int]),
        ("ring_buffer__free", None, [c_void_p]),
        ("libbpf_set_print", c_void_p, [c_void_p]),
    ):
        function = getattr(handle, name)
        function.restype = restype
        function.argtypes = argtypes
    return handle


def _check(result: int, what: str) -> int:
    """libbpf returns -errno (or -1 with errno set) on failure."""
    if result < 0:
        code = -result if result != -1 else (ctypes.get_errno() or errno.EINVAL)
        raise BpfError(code, f"{what}: {os.strerror(code)}")
    return result


def possible_cpus() -> int:
    return _check(lib().libbpf_num_possible_cpus(), "counting possible CPUs")


# libbpf's print callback: libbpf_print_fn_t(enum libbpf_print_level, const char *fmt, va_list)
_PRINT = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_vsnprintf = ctypes.CDLL(None).vsnprintf
_vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
_log: list[str] = []


@_PRINT
def _collect(level: int, fmt: bytes, args: int) -> int:
    buffer = ctypes.create_string_buffer(4096)
    _vsnprintf(buffer, len(buffer), fmt, args)
    _log.append(buffer.value.decode(errors="replace"))
    return 0


class Map:
    """One BPF map (by fd): entries are ctypes structures (or c_uint32 and such)."""

    def __init__(self, fd: int, name: str, key_type: type, value_type: type, per_cpu: bool = False):
        self.fd, self.name, self.key_type, self.value_type, self.per_cpu = fd, name, key_type, value_type, per_cpu

    def _value_buffer(self):
        return (self.value_type * possible_cpus())() if self.per_cpu else self.value_type()

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        _check(lib().bpf_map_update_elem(self.fd, byref(key), byref(value), flags), f"updating map {self.name}")

    def lookup(self, key):
        """The value at ``key`` (per-CPU maps: an array, one per possible CPU), or None."""
        value = self._value_buffer()
        if lib().bpf_map_lookup_elem(self.fd, byref(key), byref(value)) < 0:
            if ctypes.get_errno() == errno.ENOENT:
                return None
            _check(-1, f"reading map {self.name}")
        return value

    def delete(self, key) -> bool:
        if lib().bpf_map_delete_elem(self.fd, byref(key)) < 0:
            if ctypes.get_errno() == errno.ENOENT:
                return False
            _check(-1, f"deleting from map {self.name}")
        return True

    def keys(self) -> list:
        found, previous = [], None
        while True:
            key = self.key_type()
            if lib().bpf_map_get_next_key(self.fd, None if previous is None else byref(previous), byref(key)) < 0:
                return found
            found.append(key)
            previous = key

    def clear(self) -> None:
        for key in self.keys():
            self.delete(key)


class Program:
    def __init__(self, fd: int, name: str):
        self.fd, self.name = fd, name


def program_id(program: Program) -> int:
    """The kernel's id of a loaded program (what ``bpftool prog`` lists and tc reports)."""
    info = ctypes.create_string_buffer(256)  # struct bpf_prog_info: type, id, ...
    size = c_uint32(len(info))
    _check(lib().bpf_obj_get_info_by_fd(program.fd, info, byref(size)), f"info of program {program.name}")
    return int.from_bytes(info.raw[4:8], "little")


class TestRun(ctypes.Structure):
    _fields_ = [
        ("sz", c_size_t), ("data_in", c_void_p), ("data_out", c_void_p), ("data_size_in", c_uint32),
        ("data_size_out", c_uint32), ("ctx_in", c_void_p), ("ctx_out", c_void_p), ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32), ("retval", c_uint32), ("repeat", c_int), ("duration", c_uint32),
        ("flags", c_uint32), ("cpu", c_uint32), ("batch_size", c_uint32),
    ]  # fmt: skip


def test_run(program: Program, packet: bytes, ctx: ctypes.Structure | None = None, repeat: int = 1):
    """``BPF_PROG_TEST_RUN``: (return code, output bytes, context out, ns per run)."""
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(len(packet) + 256)
    opts = TestRun(sz=sizeof(TestRun), data_in=ctypes.cast(data_in, c_void_p), data_out=ctypes.cast(data_out, c_void_p),
                   data_size_in=len(packet), data_size_out=len(data_out), repeat=repeat)
    # the kernel fills a context as large as its own struct (it may be newer than our headers)
    out_buffer = ctypes.create_string_buffer(1024)
    if ctx is not None:
        opts.ctx_in, opts.ctx_size_in = ctypes.addressof(ctx), sizeof(ctx)
        opts.ctx_out, opts.ctx_size_out = ctypes.addressof(out_buffer), len(out_buffer)
    _check(lib().bpf_prog_test_run_opts(program.fd, byref(opts)), f"BPF_PROG_TEST_RUN of {program.name}")
    ctx_out = type(ctx).from_buffer_copy(out_buffer) if ctx is not None else None
    return opts.retval, data_out.raw[: opts.data_size_out], ctx_out, opts.duration


class BpfObject:
    """A compiled object opened and loaded into the kernel; closing frees what nothing pins or attaches."""

    def __init__(self, path: Path, reuse: dict[str, int] | None = None):
        """``reuse``: map name -> fd of an existing (pinned) map this object shares instead of making its own."""
        handle = lib()
        del _log[:]
        handle.libbpf_set_print(ctypes.cast(_collect, c_void_p))
        obj = handle.bpf_object__open_file(str(path).encode(), None)
        if not obj:
            _check(-1, f"opening BPF object {path}")
        self._obj = obj
        try:
            for name, fd in (reuse or {}).items():
                _check(handle.bpf_map__reuse_fd(self._find_map(name), fd), f"sharing map {name}")
            result = handle.bpf_object__load(obj)
            if result < 0:
                log = "\n".join(_log[-40:]).strip()
                code = -result if result != -1 else ctypes.get_errno()
                raise BpfError(code, f"loading {path.name} (the verifier or the kernel refused it): "
                                     f"{os.strerror(code)}\n{log}")
        except BaseException:
            self.close()
            raise

    def _find_map(self, name: str) -> int:
        found = lib().bpf_object__find_map_by_name(self._obj, name.encode())
        if not found:
            raise BpfError(errno.ENOENT, f"no map {name!r} in this object")
        return found

    def program(self, name: str) -> Program:
        found = lib().bpf_object__find_program_by_name(self._obj, name.encode())
        if not found:
            raise BpfError(errno.ENOENT, f"no program {name!r} in this object")
        return Program(_check(lib().bpf_program__fd(found), f"fd of program {name}"), name)

    def map(self, name: str, key_type: type, value_type: type, per_cpu: bool = False) -> Map:
        return Map(_check(lib().bpf_map__fd(self._find_map(name)), f"fd of map {name}"), name, key_type, value_type, per_cpu)

    def map_names(self) -> list[str]:
        names, current = [], None
        while current := lib().bpf_object__next_map(self._obj, current):
            names.append(lib().bpf_map__name(current).decode())
        return names

    def close(self) -> None:
        if self._obj:
            lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Pinned:
    """Programs and maps pinned in one bpffs directory (by their names), with ``BpfObject``'s
    ``program``/``map`` interface; the fds are opened on first use and closed by ``close``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._fds: dict[str, int] = {}

    def _fd(self, name: str) -> int:
        if name not in self._fds:
            self._fds[name] = pinned(self.directory / name)
        return self._fds[name]

    def program(self, name: str) -> Program:
        return Program(self._fd(name), name)

    def map(self, name: str, key_type: type, value_type: type, per_cpu: bool = False) -> Map:
        return Map(self._fd(name), name, key_type, value_type, per_cpu)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


_SAMPLE = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)  # ring_buffer_sample_fn


def ring_records(ring: Map, record_type: type, timeout: float = 0.0) -> list:
    """The records waiting in ring buffer ``ring`` (and those arriving within ``timeout`` seconds)."""
    found: list = []

    @_SAMPLE
    def keep(ctx: int, data: int, size: int) -> int:
        found.append(record_type.from_buffer_copy(ctypes.string_at(data, min(size, sizeof(record_type)))))
        return 0

    handle = lib().ring_buffer__new(ring.fd, ctypes.cast(keep, c_void_p), None, None)
    if not handle:
        _check(-1, f"reading ring buffer {ring.name}")
    try:
        deadline = max(int(timeout * 1000), 0)
        _check(lib().ring_buffer__poll(handle, deadline), f"polling ring buffer {ring.name}")
    finally:
        lib().ring_buffer__free(handle)
    return found


# --- pins ----------------------------------------------------------------------------------------


def pin(fd: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    _check(lib().bpf_obj_pin(fd, str(path).encode()), f"pinning {path}")


def pinned(path: Path) -> int:
    """The fd of the object pinned at ``path`` (the caller closes it)."""
    return _check(lib().bpf_obj_get(str(path).encode()), f"opening pin {path}")


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf when nothing is mounted there."""
    if any(line.split()[1] == str(BPFFS) and line.split()[2] == "bpf" for line in Path("/proc/mounts").read_text().splitlines()):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpffs", str(BPFFS).encode(), b"bpf", 0, None) != 0:
        _check(-1, f"mounting bpffs at {BPFFS}")


# --- tc (clsact) and XDP attachments, in the calling thread's network namespace ----------------


class _TcHook(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_int), ("parent", c_uint32), ("_end", c_size_t * 0)]


class _TcOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("prog_fd", c_int), ("flags", c_uint32), ("prog_id", c_uint32),
                ("handle", c_uint32), ("priority", c_uint32), ("_end", c_size_t * 0)]  # fmt: skip


TC_HANDLE, TC_PRIORITY = 0x6E76, 1  # "nv": netvirt's filter handle, recognisable in `tc filter show`
BPF_TC_F_REPLACE = 1


def _hook(ifindex: int, point: int) -> _TcHook:
    return _TcHook(sz=sizeof(_TcHook), ifindex=ifindex, attach_point=point)


def tc_attach(ifindex: int, point: int, program: Program) -> None:
    """Attach ``program`` at clsact ingress/egress of ``ifindex`` (replacing netvirt's previous one)."""
    hook = _hook(ifindex, point)
    result = lib().bpf_tc_hook_create(byref(hook))
    if result < 0 and -result != errno.EEXIST:
        _check(result, f"creating clsact on ifindex {ifindex}")
    opts = _TcOpts(sz=sizeof(_TcOpts), prog_fd=program.fd, flags=BPF_TC_F_REPLACE, handle=TC_HANDLE, priority=TC_PRIORITY)
    _check(lib().bpf_tc_attach(byref(hook), byref(opts)), f"attaching {program.name} to ifindex {ifindex}")


def tc_attached(ifindex: int, point: int) -> int | None:
    """The id of netvirt's program at that hook, or None."""
    hook = _hook(ifindex, point)
    opts = _TcOpts(sz=sizeof(_TcOpts), handle=TC_HANDLE, priority=TC_PRIORITY)
    if lib().bpf_tc_query(byref(hook), byref(opts)) < 0:
        return None
    return opts.prog_id


def tc_detach(ifindex: int, point: int) -> bool:
    hook = _hook(ifindex, point)
    opts = _TcOpts(sz=sizeof(_TcOpts), handle=TC_HANDLE, priority=TC_PRIORITY)
    result = lib().bpf_tc_detach(byref(hook), byref(opts))
    if result < 0 and -result not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
        _check(result, f"detaching from ifindex {ifindex}")
    return result == 0


def xdp_attach(ifindex: int, program: Program, flags: int = XDP_FLAGS_DRV_MODE) -> None:
    _check(lib().bpf_xdp_attach(ifindex, program.fd, flags, None), f"attaching XDP {program.name} to ifindex {ifindex}")


def xdp_attached(ifindex: int) -> int | None:
    found = c_uint32(0)
    if lib().bpf_xdp_query_id(ifindex, 0, byref(found)) < 0:
        return None
    return found.value or None


def xdp_detach(ifindex: int) -> None:
    result = lib().bpf_xdp_detach(ifindex, 0, None)
    if result < 0 and -result not in (errno.ENOENT, errno.ENODEV):
        _check(result, f"detaching XDP from ifindex {ifindex}")
