"""The kernel's ``Observer``: capture and probes in the namespaces a kernel backend made.

Contract: ``KernelObserver(names)`` implements ``dataplane.api.Observer`` for any backend that
realises graph namespaces as kernel namespaces named by ``names`` (``Names.graph_namespace``):
``start`` opens an AF_PACKET ``Capture`` on every given device inside its namespace and turns
each frame into an ``Observation`` once, as it arrives; ``open_socket`` creates the socket
inside the namespace (``netns.socket_in``), so probes leave from there and servers listen there.
"""

import socket
import threading
from collections.abc import Iterable

from netvirt.dataplane.api import Observation
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.capture import Capture, Frame
from netvirt.dataplane.kernel.naming import Names


class KernelObserver:
    """Observe the kernel namespaces of ``names``' deployment (see the module docstring)."""

    def __init__(self, names: Names) -> None:
        self.names = names
        self._capture: Capture | None = None
        self._places: dict[tuple[str, str], str] = {}
        self._seen: list[Observation] = []
        self._lock = threading.Lock()

    def start(self, devices: Iterable[tuple[str, str, str]]) -> None:
        points = []
        for host, namespace, device in devices:
            kernel = self.names.graph_namespace(host, namespace)
            self._places[(kernel, device)] = f"{host}:{namespace}/{device}"
            points.append((kernel, device))
        capture = Capture(points, on_frame=self._keep, keep=False)
        capture.__enter__()
        self._capture = capture

    def _keep(self, frame: Frame) -> None:
        seen = Observation(self._places[(frame.namespace, frame.device)], frame.timestamp, frame.data, frame.outgoing)
        with self._lock:
            self._seen.append(seen)

    def stop(self) -> None:
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
            self._capture = None

    def frames(self) -> list[Observation]:
        with self._lock:
            return list(self._seen)

    def open_socket(self, host: str, namespace: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        return netns.socket_in(self.names.graph_namespace(host, namespace), family, kind, proto)

    def exists(self, host: str, namespace: str) -> bool:
        return netns.exists(self.names.graph_namespace(host, namespace))
