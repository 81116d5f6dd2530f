"""The poll-mode switch loop: rx burst -> process the batch -> tx burst (DPDK's l2fwd model).

Contract: ``Switch(ports, decide, mode=...)`` opens every port (a kernel device name in the
current network namespace) with a TPACKET_V2 receive ring and transmit ring (``rings``). One
``burst()`` takes up to ``BURST`` frames the kernel has filled on every port, looks each
frame up in the flow cache (``flows``: one ``struct`` unpack for the key, one dict lookup),
applies the precompiled outputs into the transmit rings, and then flushes each ring that got
frames with one ``send``: the fast path makes no syscall per packet. A miss asks ``decide`` (the
slow path, ``oracle.Oracle.decide``), sends what it returns and, when it is cacheable and every
output compiles, caches it.

Poll modes: ``busy`` polls without pause (100% of a core, the lowest latency); ``adaptive``
polls until ``IDLE_POLLS`` bursts in a row found nothing, then sleeps in ``poll(2)`` on the
receive rings until a frame is ready (``run``). ``batched=False`` is the per-packet baseline of
the same switch: one ``recv`` and one ``send`` syscall per frame (``run_unbatched``).

``counters()`` is what ``netvirt status`` shows: mode, CPU % since the last call, per port the
frames received, sent and dropped (kernel ring drops, transmit ring full, slow-path drops), and
flow-cache hits, misses and entries.
"""

import os
import select
import time
import traceback
from collections.abc import Callable, Sequence

from netvirt.dataplane.userspace.flows import (
    FAST_KEY,
    FAST_KEY_LENGTH,
    FlowCache,
    compile_output,
    key_of,
    run_output,
)
from netvirt.dataplane.userspace.oracle import Decision
from netvirt.dataplane.userspace.rings import (
    ETH_P_ALL,
    FRAME,
    FRAME_SIZE,
    MAX_FRAME,
    PACKET_IGNORE_OUTGOING,
    SOL_PACKET,
    TP_STATUS_USER,
    TX_DATA,
    RxRing,
    TxRing,
    packet_socket,
    tx_prefix,
)

MODES = ("busy", "adaptive")
IDLE_POLLS = 16  # about 50 µs of empty polls, then sleep until a frame comes
BURST = 256  # frames per port per burst, so that one busy port cannot starve the others
RELEASE = b"\0\0\0\0"  # TP_STATUS_KERNEL
ETHERNET_HEADER = 14
POLL_TIMEOUT_MS = 200


class Switch:
    """See the module docstring."""

    def __init__(self, ports: Sequence[str], decide: Callable[[int, bytes], Decision], *, mode: str = "adaptive",
                 batched: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"poll mode {mode!r}: choose one of {', '.join(MODES)}")
        self.names = list(ports)
        self.decide = decide
        self.mode = mode
        self.batched = batched
        self.cache = FlowCache(len(self.names))
        self.slow_dropped = [0] * len(self.names)
        self.received = [0] * len(self.names)
        self.slow_calls = 0
        self.slow_errors = 0
        self.sent = [0] * len(self.names)  # unbatched only (the rings count their own)
        self._cpu = (time.monotonic(), os.times())
        if batched:
            self.rx = [RxRing(name) for name in self.names]
            self.tx = [TxRing(name) for name in self.names]
        else:
            self.sockets = [self._plain_socket(name) for name in self.names]

    @staticmethod
    def _plain_socket(name: str):
        sock = packet_socket(name, ETH_P_ALL)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setblocking(False)
        return sock

    # --- the batched fast path --------------------------------------------------------------------

    def burst(self) -> int:
        """One rx burst on every port, processed and flushed; the number of frames taken."""
        taken = 0
        for port in range(len(self.rx)):
            taken += self._drain(port)
        if taken:
            for ring in self.tx:
                if ring.pending:
                    ring.flush()
        return taken

    def _drain(self, port: int) -> int:
        """Take at most ``BURST`` frames from ``port``'s receive ring."""
        rx = self.rx[port]
        memory, end, offset = rx.memory, rx.end, rx.offset
        get = self.cache.tables[port].get
        unpack_frame = FRAME.unpack_from
        unpack_key = FAST_KEY.unpack_from
        taken = 0
        while taken < BURST:
            status, length, mac = unpack_frame(memory, offset)
            if not status & TP_STATUS_USER:
                break
            start = offset + mac
            action = get(unpack_key(memory, start)) if length >= FAST_KEY_LENGTH else None
            if action is not None and action[0] == length:
                for put, prefix, strip, patch, checksum in action[1]:
                    body = memory[start + strip:start + length]
                    if patch is not None:
                        body = patch.apply(body)
                    data = prefix + body if checksum is None else checksum.around(body)
                    put(data, len(data))
            else:
                self._slow(port, memory[start:start + length])
            memory[offset:offset + 4] = RELEASE  # the slot is the kernel's again
            offset = offset + FRAME_SIZE if offset + FRAME_SIZE < end else 0
            taken += 1
        rx.offset = offset
        self.received[port] += taken
        return taken

    def _slow(self, port: int, frame: bytes) -> None:
        """A frame the fast key did not find: its full key, then the slow path."""
        cache = self.cache
        self.slow_calls += 1
        key = key_of(frame)
        action = cache.tables[port].get(key)
        if action is not None and action[0] == len(frame):
            cache.hits += 1
            for put, prefix, strip, patch, checksum in action[1]:
                body = frame[strip:]
                if patch is not None:
                    body = patch.apply(body)
                data = prefix + body if checksum is None else checksum.around(body)
                put(data, len(data))
            return
        cache.misses += 1
        if not ETHERNET_HEADER <= len(frame) <= MAX_FRAME:
            self.slow_dropped[port] += 1
            return
        try:
            decision = self.decide(port, frame)
        except Exception:  # a frame the slow path cannot take must not stop the switch
            self.slow_errors += 1
            if self.slow_errors <= 3:
                traceback.print_exc()
            self.slow_dropped[port] += 1
            return
        if not decision.outputs:
            self.slow_dropped[port] += 1
        compiled = [compile_output(frame, out, data) for out, data in decision.outputs]
        for (out, data), output in zip(decision.outputs, compiled):
            ready = tx_prefix(len(data)) + data if output is None else run_output(output, frame)
            self._putter(out)(ready, len(ready))
        if decision.cacheable and all(c is not None for c in compiled):
            cache.insert(port, key, (len(frame), tuple(
                (self._putter(c.port), c.prefix, c.strip, c.patch, c.checksum) for c in compiled)))

    def _putter(self, port: int) -> Callable[[bytes, int], bool]:
        """How to queue ``tx_prefix + frame`` on ``port``: into its ring, or (unbatched) one ``send``."""
        if self.batched:
            return self.tx[port].put_prepared
        sock = self.sockets[port]

        def put(data: bytes, size: int) -> bool:
            try:
                sock.send(data[TX_DATA:])  # the transmit-ring header is not part of the frame
            except OSError:
                self.slow_dropped[port] += 1
                return False
            self.sent[port] += 1
            return True

        return put

    # --- loops ----------------------------------------------------------------------------------

    def run(self, stopping: Callable[[], bool], tick: Callable[[], None] = lambda: None, tick_every: float = 1.0) -> None:
        """Poll until ``stopping()``; ``tick()`` about every ``tick_every`` seconds (counters)."""
        if not self.batched:
            return self.run_unbatched(stopping, tick, tick_every)
        poller = select.poll()
        for ring in self.rx:
            poller.register(ring.fileno(), select.POLLIN | select.POLLERR)
        adaptive = self.mode == "adaptive"
        idle = 0
        next_tick = time.monotonic() + tick_every
        while not stopping():
            if self.burst():
                idle = 0
            else:
                idle += 1
                if adaptive and idle >= IDLE_POLLS:
                    poller.poll(POLL_TIMEOUT_MS)
                    idle = 0
            if idle == 0 or idle & 0xFF == 0:
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + tick_every
                    tick()

    def run_unbatched(self, stopping: Callable[[], bool], tick: Callable[[], None], tick_every: float) -> None:
        """The per-packet baseline: one ``recv`` and one ``send`` syscall per frame."""
        poller = select.poll()
        for sock in self.sockets:
            poller.register(sock.fileno(), select.POLLIN)
        buffers = [bytearray(MAX_FRAME) for _ in self.sockets]
        ports = {sock.fileno(): i for i, sock in enumerate(self.sockets)}
        unpack_key = FAST_KEY.unpack_from
        next_tick = time.monotonic() + tick_every
        while not stopping():
            for fd, _ in poller.poll(POLL_TIMEOUT_MS):
                port = ports[fd]
                buffer = buffers[port]
                try:
                    length = self.sockets[port].recv_into(buffer)
                except BlockingIOError:
                    continue
                self.received[port] += 1
                action = self.cache.tables[port].get(unpack_key(buffer, 0)) if length >= FAST_KEY_LENGTH else None
                if action is not None and action[0] == length:
                    for put, prefix, strip, patch, checksum in action[1]:
                        body = bytes(buffer[strip:length])
                        if patch is not None:
                            body = patch.apply(body)
                        data = prefix + body if checksum is None else checksum.around(body)
                        put(data, len(data))
                else:
                    self._slow(port, bytes(buffer[:length]))
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick_every
                tick()

    # --- counters -------------------------------------------------------------------------------

    def counters(self) -> dict:
        """See the module docstring (CPU % since the previous call)."""
        now, times = time.monotonic(), os.times()
        then, before = self._cpu
        self._cpu = (now, times)
        used = (times.user - before.user) + (times.system - before.system)
        ports = []
        for port, name in enumerate(self.names):
            if self.batched:
                _, kernel_dropped = self.rx[port].statistics()
                sent, tx_dropped = self.tx[port].sent, self.tx[port].dropped
            else:
                kernel_dropped, sent, tx_dropped = 0, self.sent[port], 0
            ports.append({"port": name, "rx": self.received[port], "tx": sent,
                          "drop": kernel_dropped + tx_dropped + self.slow_dropped[port]})
        cache = self.cache
        return {"mode": self.mode, "batched": self.batched, "cpu_percent": round(100 * used / max(now - then, 1e-6), 1),
                "cpu_seconds": round(times.user + times.system, 3), "cpu_user_seconds": round(times.user, 3),
                "ports": ports, "flow_cache": {"hits": sum(self.received) - self.slow_calls + cache.hits,
                                               "misses": cache.misses,
                                               "entries": sum(len(t) for t in cache.tables)}}

    def close(self) -> None:
        for ring in getattr(self, "rx", []) + getattr(self, "tx", []):
            ring.close()
        for sock in getattr(self, "sockets", []):
            sock.close()
