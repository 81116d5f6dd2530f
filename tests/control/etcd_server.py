"""A real etcd for tests: started with scripts/etcd on free loopback ports with its own data dir.

Only the process this helper started is ever signalled, by its PID. ``restart`` keeps the data dir,
so what was written survives, as it would for an operator restarting etcd.
"""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import require_tool

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "etcd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EtcdServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"etcd://127.0.0.1:{self.client_port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        log = open(self.data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [str(SCRIPT), str(self.client_port), str(self.peer_port), str(self.data_dir)],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}; see {log.name}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.client_port}/health", timeout=1).json()["health"] == "true":
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"etcd did not become healthy within {timeout}s; see {log.name}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Signal the etcd this helper started (by PID) and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd for the tests of one module (killed by PID afterwards; data in a temp dir)."""
    require_tool("etcd")
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data")
    server.start()
    yield server
    server.stop()
