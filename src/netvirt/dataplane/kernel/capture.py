"""Packet capture on devices inside namespaces (AF_PACKET), for observing what the kernel does.

Contract: ``Capture([(namespace, device), ...])`` opens one raw ``AF_PACKET`` socket per device,
each created inside the device's namespace (``netns.socket_in``) and bound to that device, and a
reader thread collects every frame seen there, in both directions, with the kernel's receive
timestamp (SO_TIMESTAMPNS). Use it as a context manager and send probes inside the ``with``:
frames are recorded from ``__enter__`` on. ``frames`` returns what arrived so far; ``wait_for``
blocks until a frame satisfies a predicate. Frames may be larger than the MTU where the kernel
aggregates segments (GSO/GRO on veth); nothing is dropped silently unless the socket buffer
(4 MiB per device) overflows.
"""

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from netvirt.dataplane.kernel import netns

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_SNAPLEN = 262144


@dataclass(frozen=True, slots=True)
class Frame:
    """One Ethernet frame seen on ``device`` in ``namespace`` (``outgoing``: sent by the device)."""

    namespace: str
    device: str
    timestamp: float
    data: bytes
    outgoing: bool


class Capture:
    """Capture frames on (namespace, device) pairs while the ``with`` block runs."""

    def __init__(self, points: Iterable[tuple[str, str]], on_frame: Callable[[Frame], None] | None = None,
                 keep: bool = True):
        """``on_frame`` is called (in the reader thread) with every frame as it arrives; with
        ``keep=False`` frames are not kept for ``frames``/``wait_for`` (long captures to a file)."""
        self.points = list(points)
        self.on_frame = on_frame
        self.keep = keep
        self._frames: list[Frame] = []
        self._changed = threading.Condition()
        self._sockets: dict[int, tuple[socket.socket, str, str]] = {}
        self._stop_read, self._stop_write = -1, -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Capture":
        try:
            for namespace, device in self.points:
                sock = netns.socket_in(namespace, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                self._sockets[sock.fileno()] = (sock, namespace, device)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.bind((device, 0))
                sock.setblocking(False)
        except BaseException:
            self._close()
            raise
        self._stop_read, self._stop_write = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._read, name="netvirt-capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            os.write(self._stop_write, b"x")
            self._thread.join()
            self._thread = None
        self._close()

    def _close(self) -> None:
        for sock, _, _ in self._sockets.values():
            sock.close()
        self._sockets.clear()
        for fd in (self._stop_read, self._stop_write):
            if fd >= 0:
                os.close(fd)
        self._stop_read = self._stop_write = -1

    def _read(self) -> None:
        poller = select.poll()
        poller.register(self._stop_read, select.POLLIN)
        for fd in self._sockets:
            poller.register(fd, select.POLLIN)
        while True:
            ready = [fd for fd, _ in poller.poll()]
            stopping = self._stop_read in ready
            got: list[Frame] = []
            for _ in range(64):  # drain until every socket is empty, so that frames of all devices meet
                for fd in ready:
                    if fd != self._stop_read:
                        got += self._drain(fd)
                ready = [fd for fd, _ in poller.poll(0) if fd != self._stop_read]
                if not ready:
                    break
            if stopping:
                got += [frame for fd in list(self._sockets) for frame in self._drain(fd)]
            self._deliver(sorted(got, key=lambda frame: frame.timestamp))
            if stopping:
                return

    def _deliver(self, got: list[Frame]) -> None:
        if got and self.on_frame is not None:
            for frame in got:
                self.on_frame(frame)
        if got and self.keep:
            with self._changed:
                self._frames.extend(got)
                self._changed.notify_all()

    def _drain(self, fd: int) -> list[Frame]:
        sock, namespace, device = self._sockets[fd]
        got = []
        while True:
            try:
                data, ancillary, _, address = sock.recvmsg(_SNAPLEN, 64)
            except BlockingIOError:
                break
            if address[0] != device:  # arrived between socket() and bind()
                continue
            stamp = time.time()
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = _TIMESPEC.unpack_from(payload)
                    stamp = seconds + nanos / 1e9
            got.append(Frame(namespace, device, stamp, data, address[2] == PACKET_OUTGOING))
        return got

    def frames(self) -> list[Frame]:
        """The frames captured so far, in arrival order per device (and in timestamp order among
        the frames one wake-up of the reader collected from every device)."""
        with self._changed:
            return list(self._frames)

    def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 2.0) -> Frame | None:
        """The first captured frame satisfying ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for frame in self._frames:
                    if predicate(frame):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

