"""The processes of the userspace data plane: ``python -m netvirt.dataplane.userspace supervise
CONFIG`` (the supervisor ``process.start`` spawns) and ``... switch CONFIG`` (the switch itself).

The switch enters its host's network namespace, builds the slow path (``oracle.Oracle`` over the
network graph in CONFIG), opens its ports and polls until SIGTERM, writing its counters next to
CONFIG every second. The supervisor records both pids, restarts the switch when it dies and, on
SIGTERM, ends it and exits.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from netvirt.dataplane.userspace.process import paths, write_atomically

RESTART_PAUSE = (0.1, 2.0)  # the first pause after a death, the longest while it keeps dying


def _config(path: str) -> tuple[Path, dict]:
    config = Path(path)
    return config, json.loads(config.read_text())


def switch(path: str) -> None:
    from netvirt.dataplane.kernel import netns
    from netvirt.dataplane.userspace.oracle import Oracle
    from netvirt.dataplane.userspace.switch import Switch
    from netvirt.graph import NetworkGraph
    from netvirt.graph.codec import from_json

    config_path, config = _config(path)
    host = config["host"]
    out = paths(config_path.parent, host)["counters"]
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    network = from_json(NetworkGraph, json.dumps(config["network"]))
    oracle = Oracle(network, host)

    def serve() -> None:
        sw = Switch(oracle.names, oracle.decide, mode=config["mode"], batched=config.get("batched", True))

        def tick() -> None:
            write_atomically(out, json.dumps(sw.counters() | {"pid": os.getpid(), "host": host}))

        tick()
        try:
            sw.run(lambda: bool(stopping), tick)
        finally:
            sw.close()

    netns.call_in(config["namespace"], serve)


def supervise(path: str) -> None:
    config_path, config = _config(path)
    where = paths(config_path.parent, config["host"])
    stopping: list[int] = []
    child: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        stopping.append(1)
        if child:
            child[0].terminate()

    signal.signal(signal.SIGTERM, stop)
    restarts, pause = 0, RESTART_PAUSE[0]
    while not stopping:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "netvirt.dataplane.userspace", "switch", str(config_path)])
        child[:] = [proc]
        write_atomically(where["pids"], json.dumps({"supervisor": os.getpid(), "switch": proc.pid, "restarts": restarts}))
        proc.wait()
        if stopping:
            break
        restarts += 1
        pause = RESTART_PAUSE[0] if time.monotonic() - started > 10 else min(pause * 2, RESTART_PAUSE[1])
        print(f"switch {proc.pid} ended with {proc.returncode}; restart {restarts} in {pause:.1f}s", flush=True)
        time.sleep(pause)
    where["pids"].unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("switch", "supervise"):
        print("usage: python -m netvirt.dataplane.userspace switch|supervise CONFIG", file=sys.stderr)
        return 2
    (switch if argv[0] == "switch" else supervise)(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
