"""Compile netvirt's BPF C programs (``bpf/*.c``) with clang, cached by content hash.

Contract: ``object_file(name)`` returns the path of ``bpf/NAME.c`` compiled with
``clang -O2 -g -target bpf`` (BTF included, which libbpf needs for the maps). The cache key is
the SHA-256 of every source and header in ``bpf/``, the compiler's version and the flags, so an
edit (or another clang) recompiles and nothing else does. The cache lives in
``$NETVIRT_BPF_CACHE``, else ``$XDG_CACHE_HOME/netvirt/bpf``, else ``~/.cache/netvirt/bpf``;
objects are written to a temporary name and renamed, so concurrent builders never see half a
file. ``BuildError`` carries clang's message when a program does not compile or clang is missing.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

SOURCES = Path(__file__).parent / "bpf"
PROGRAMS = ("endpoint", "xdp_drop")
CLANG = "clang"
FLAGS = ("-O2", "-g", "-target", "bpf", "-Wall", "-Werror")


class BuildError(RuntimeError):
    """A BPF program could not be compiled (the message says why and how to fix it)."""


def cache_dir() -> Path:
    if explicit := os.environ.get("NETVIRT_BPF_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "netvirt" / "bpf"


def _include_flags() -> list[str]:
    """The multiarch include directory for <asm/types.h> (Debian puts it under the triplet)."""
    machine = os.uname().machine
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(machine, f"{machine}-linux-gnu")
    found = Path("/usr/include") / triplet
    return [f"-I{found}"] if found.is_dir() else []


@cache
def _compiler_version() -> str:
    if shutil.which(CLANG) is None:
        raise BuildError(f"'{CLANG}' not found: install the Debian packages in scripts/debian-packages.txt (./scripts/setup)")
    return subprocess.run([CLANG, "--version"], capture_output=True, text=True, check=True).stdout


def source_digest() -> str:
    """The cache key: every source and header, the compiler's version and the flags."""
    digest = hashlib.sha256()
    for path in sorted(SOURCES.glob("*.[ch]")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(_compiler_version().encode())
    digest.update(" ".join(FLAGS).encode())
    return digest.hexdigest()[:16]


def object_file(name: str) -> Path:
    """``bpf/NAME.c`` compiled (from the cache when the sources did not change)."""
    if name not in PROGRAMS:
        raise BuildError(f"no BPF program {name!r}; programs: {', '.join(PROGRAMS)}")
    target = cache_dir() / f"{name}-{source_digest()}.o"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{name}-", suffix=".o", delete=False) as scratch:
        partial = Path(scratch.name)
    argv = [CLANG, *FLAGS, *_include_flags(), "-c", str(SOURCES / f"{name}.c"), "-o", str(partial)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BuildError(f"compiling {SOURCES / name}.c failed:\n{done.stderr.strip()}")
    partial.replace(target)
    return target


def build_all() -> list[Path]:
    """Every program compiled (scripts/setup calls this so the first use does not wait)."""
    return [object_file(name) for name in PROGRAMS]


if __name__ == "__main__":
    for path in build_all():
        print(path)
