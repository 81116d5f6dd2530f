"""One switch process per host, owned and supervised by netvirt.

Contract: ``start(run_dir, host, namespace, network, mode, batched)`` writes the switch's configuration to
``run_dir/HOST.config.json`` and starts a *supervisor* (its own session, so it outlives the
command that started it) that runs the switch process and starts it again whenever it dies
(kill -9 included), after a short pause that grows while it keeps dying. ``start`` returns when
the switch has written its first counters (it opened every port), or raises ``SwitchError``
with the end of its log. A running supervisor with the same configuration is left alone
(idempotent); another configuration replaces it.

Ownership: the supervisor writes ``HOST.pids.json`` (its own pid, the switch's pid, how often
it restarted the switch). Every pid is trusted only while ``/proc/PID/cmdline`` still names this
host's configuration file, so ``stop`` never signals a process netvirt did not start, even after
a crash and pid reuse. ``stop`` ends the supervisor (which ends the switch), then the switch
itself if it survived its supervisor, and removes the files. ``counters(run_dir, host)`` is the
switch's last ``Switch.counters()`` (``HOST.counters.json``, rewritten every second) with its pid
and restarts, or None when no switch runs.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from netvirt.graph import NetworkGraph
from netvirt.graph.codec import to_json

READY_TIMEOUT = 20.0


class SwitchError(RuntimeError):
    """The switch process could not be started (its log says why)."""


def run_dir(state_dir: Path, prefix: str, deployment: str) -> Path:
    """Where the switches of ``deployment`` keep their files (``STATE_DIR/userspace/PREFIX-DEPLOYMENT``)."""
    return Path(state_dir) / "userspace" / f"{prefix}-{deployment}"


def stop_all(run_dir: Path) -> list[str]:
    """Stop every switch of the deployment in ``run_dir`` (even of hosts no longer in its spec);
    the hosts whose switch ran."""
    return [host for host in hosts(run_dir) if stop(run_dir, host)]


def paths(run_dir: Path, host: str) -> dict[str, Path]:
    return {what: Path(run_dir) / f"{host}.{what}.json" for what in ("config", "pids", "counters")} | {
        "log": Path(run_dir) / f"{host}.log"}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def owned_pid(pid: int | None, config: Path) -> bool:
    """Whether ``pid`` is alive and is one of ours for ``config`` (its command line names it)."""
    return bool(pid) and str(config) in _cmdline(pid)


def read_pids(run_dir: Path, host: str) -> dict:
    try:
        return json.loads(paths(run_dir, host)["pids"].read_text())
    except (OSError, ValueError):
        return {}


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def start(run_dir: Path, host: str, namespace: str, network: NetworkGraph, mode: str, batched: bool = True) -> None:
    """See the module docstring."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    where = paths(run_dir, host)
    config = json.dumps({"host": host, "namespace": namespace, "mode": mode, "batched": batched,
                         "network": json.loads(to_json(network))}, sort_keys=True)
    pids = read_pids(run_dir, host)
    if owned_pid(pids.get("supervisor"), where["config"]) and where["config"].read_text() == config:
        return
    stop(run_dir, host)
    write_atomically(where["config"], config)
    with open(where["log"], "ab") as log:
        subprocess.Popen([sys.executable, "-m", "netvirt.dataplane.userspace", "supervise", str(where["config"])],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if counters(run_dir, host) is not None:
            return
        time.sleep(0.05)
    tail = where["log"].read_text(errors="replace")[-2000:] if where["log"].exists() else ""
    stop(run_dir, host)
    raise SwitchError(f"userspace switch of host {host} did not start within {READY_TIMEOUT:.0f}s; its log:\n{tail}")


def stop(run_dir: Path, host: str) -> bool:
    """End this host's supervisor and switch (only processes that are ours); True if any ran."""
    where = paths(Path(run_dir), host)
    pids = read_pids(run_dir, host)
    ran = False
    for role in ("supervisor", "switch"):
        pid = pids.get(role)
        if owned_pid(pid, where["config"]):
            ran = True
            _end(pid, where["config"])
    for what in ("pids", "counters", "config"):
        where[what].unlink(missing_ok=True)
    return ran


def _end(pid: int, config: Path, timeout: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while owned_pid(pid, config) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.02)
    if owned_pid(pid, config):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def counters(run_dir: Path, host: str) -> dict | None:
    """See the module docstring."""
    where = paths(Path(run_dir), host)
    pids = read_pids(run_dir, host)
    if not owned_pid(pids.get("switch"), where["config"]):
        return None
    try:
        data = json.loads(where["counters"].read_text())
    except (OSError, ValueError):
        return None
    if data.get("pid") != pids.get("switch"):
        return None  # a restarted switch that has not written its own counters yet
    return data | {"restarts": pids.get("restarts", 0)}


def hosts(run_dir: Path) -> list[str]:
    """The hosts with a switch configuration or ownership record in ``run_dir``."""
    found = {path.name.rsplit(".", 2)[0] for path in Path(run_dir).glob("*.json") if path.name.count(".") >= 2}
    return sorted(found)
