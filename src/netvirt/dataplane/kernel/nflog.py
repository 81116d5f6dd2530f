"""The records of ``log`` rules: NFLOG group ``LOG_GROUP`` read over nfnetlink, per namespace.

Contract: netvirt's ``log`` rules send the packet to NFLOG group ``LOG_GROUP`` (nftables ``log
prefix P group G``, iptables ``-j NFLOG --nflog-group G --nflog-prefix P``) instead of the kernel
log, which the kernel suppresses outside the root namespace (``nf_log_all_netns=0``) and which
would mix every namespace's lines. ``Logs(namespaces)`` binds that group in each namespace (a
``NETLINK_NETFILTER`` socket created inside it, nfnetlink_log protocol: ``NFULNL_CFG_CMD_BIND``,
copy mode packet) and collects one ``LogRecord`` per logged packet while the ``with`` block runs;
``records()`` returns them, ``wait_for`` blocks until one satisfies a predicate. Nothing is
recorded while nobody listens (the kernel drops NFLOG messages without a listener), and only one
listener per namespace can bind the group (a second gets ``LogError``).
"""

import errno
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from netvirt.dataplane.kernel import netns
from netvirt.wire import ParseError, dissect, ethernet, summary

LOG_GROUP = 77  # netvirt's NFLOG group in every namespace it builds
NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_QTHRESH = 1, 2, 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR, NFULA_TIMESTAMP, NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV = 1, 3, 4, 5
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}
ETHERTYPES = {4: ethernet.IPV4_BYTES, 6: ethernet.IPV6_BYTES}


class LogError(OSError):
    """The NFLOG group cannot be bound in a namespace (another listener holds it, no support)."""


class LogRecord(NamedTuple):
    """One logged packet: where (kernel namespace), when (the kernel's timestamp, or when read),
    the rule's prefix, the hook, the in/out interfaces and the IP packet."""

    namespace: str
    timestamp: float
    prefix: str
    hook: str
    in_iface: str
    out_iface: str
    packet: bytes

    def summary(self) -> str:
        """The packet as one tcpdump-like line."""
        version = self.packet[0] >> 4 if self.packet else 0
        if version not in ETHERTYPES:
            return f"[{len(self.packet)} bytes, not IP]"
        try:
            return summary(dissect(bytes(12) + ETHERTYPES[version] + self.packet))
        except ParseError as error:
            return f"[undecodable at {error.layer} byte {error.offset}: {error.reason}]"


def _attributes(data: bytes, start: int) -> dict[int, bytes]:
    found = {}
    while start + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            break
        found[kind & 0x3FFF] = data[start + 4:start + length]
        start += (length + 3) & ~3
    return found


def _attribute(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def _config(group: int, attribute: bytes, sequence: int) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + attribute
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, sequence, 0) + body


def bind(namespace: str, group: int = LOG_GROUP) -> socket.socket:
    """A socket in ``namespace`` bound to NFLOG ``group``, copying whole packets (LogError if not)."""
    sock = netns.socket_in(namespace, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(2)
        for sequence, attribute in enumerate((
                _attribute(NFULA_CFG_CMD, struct.pack("=B", NFULNL_CFG_CMD_BIND) + bytes(3)),
                _attribute(NFULA_CFG_MODE, struct.pack(">IBB", 0xFFFF, NFULNL_COPY_PACKET, 0)),
                _attribute(NFULA_CFG_QTHRESH, struct.pack(">I", 1))), start=1):  # each record at once, not batched
            sock.send(_config(group, attribute, sequence))
            answer = sock.recv(65536)
            kind = struct.unpack_from("=H", answer, 4)[0]
            error = struct.unpack_from("=i", answer, 16)[0] if kind == NLMSG_ERROR else 0
            if error:
                raise LogError(-error, f"NFLOG group {group} in {namespace}: {errno.errorcode.get(-error, error)}")
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def parse(namespace: str, data: bytes, names: Callable[[int], str]) -> list[LogRecord]:
    """The records in one netlink datagram (``names``: interface index -> name)."""
    records = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            found = _attributes(data[offset:offset + length], 20)
            header = found.get(NFULA_PACKET_HDR, b"\x00\x00\xff\x00")
            stamp = found.get(NFULA_TIMESTAMP)
            when = struct.unpack(">QQ", stamp) if stamp and len(stamp) == 16 else None
            records.append(LogRecord(
                namespace,
                when[0] + when[1] / 1e6 if when else time.time(),
                found.get(NFULA_PREFIX, b"").rstrip(b"\x00").decode(errors="replace"),
                HOOKS.get(header[2], str(header[2])),
                *(names(struct.unpack(">I", found[key])[0]) if key in found else ""
                  for key in (NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV)),
                found.get(NFULA_PAYLOAD, b""),
            ))
        offset += (length + 3) & ~3
    return records


class Logs:
    """Collect the ``log`` rule records of ``namespaces`` while the ``with`` block runs."""

    def __init__(self, namespaces: Iterable[str], on_record: Callable[[LogRecord], None] | None = None) -> None:
        self.namespaces = list(namespaces)
        self.on_record = on_record
        self._sockets: dict[int, tuple[str, socket.socket]] = {}
        self._records: list[LogRecord] = []
        self._changed = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._names: dict[tuple[str, int], str] = {}

    def __enter__(self) -> "Logs":
        try:
            for name in self.namespaces:
                sock = bind(name)
                self._sockets[sock.fileno()] = (name, sock)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for _, sock in self._sockets.values():
            sock.close()

    def _name(self, namespace: str, index: int) -> str:
        key = (namespace, index)
        if key not in self._names:
            try:
                self._names[key] = netns.call_in(namespace, socket.if_indextoname, index)
            except OSError:
                self._names[key] = f"if{index}"
        return self._names[key]

    def _run(self) -> None:
        while not self._stop:
            ready, _, _ = select.select(list(self._sockets), [], [], 0.1)
            for fd in ready:
                namespace, sock = self._sockets[fd]
                try:
                    data = sock.recv(1 << 17)
                except OSError:  # ENOBUFS: records were lost; keep reading
                    continue
                for record in parse(namespace, data, lambda index: self._name(namespace, index)):
                    with self._changed:
                        self._records.append(record)
                        self._changed.notify_all()
                    if self.on_record is not None:
                        self.on_record(record)

    def records(self) -> list[LogRecord]:
        with self._changed:
            return list(self._records)

    def wait_for(self, predicate: Callable[[LogRecord], bool], timeout: float = 2.0) -> LogRecord | None:
        """The first record satisfying ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((r for r in self._records if predicate(r)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._changed.wait(left)
