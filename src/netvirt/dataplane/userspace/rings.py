"""AF_PACKET memory-mapped rings (TPACKET_V2): one receive and one transmit ring per port.

Contract: ``RxRing(ifname)`` maps ``RX_FRAMES`` slots the kernel fills with the frames received
on the device, in order; a slot whose status has TP_STATUS_USER is user space's until it writes
the status back to TP_STATUS_KERNEL (the switch's loop reads ``FRAME`` at ``offset``: no syscall
per frame). ``TxRing`` maps slots the switch fills (``put_prepared``); ``flush()`` hands all of
them to the kernel with one ``send`` (PACKET_QDISC_BYPASS: straight to the driver, no qdisc, and
invisible to other packet sockets on this device — the bypass blind spot). Both sockets are bound
to one device; the receive socket ignores the frames the host itself sends (PACKET_IGNORE_OUTGOING).

Why V2 and not V3 for receiving: a V3 ring hands frames over in blocks, a partly filled one only
when its retire timer fires — at least one jiffy (4 ms at HZ=250), so each receive hop added
milliseconds (13 ms UDP round trip through two switches, measured; docs/userspace.md). V2 hands
over every frame as soon as it is written and costs one status write per frame.

Layout (linux/if_packet.h): each slot starts with ``tpacket2_hdr`` (tp_status, tp_len,
tp_snaplen, tp_mac, tp_net, ...); a received frame starts at tp_mac, a transmitted one at byte 32.
"""

import mmap
import socket
import struct

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
TPACKET_V2 = 1
ETH_P_ALL = 0x0003

TP_STATUS_USER = 1
TP_STATUS_SEND_REQUEST = 1

FRAME_SIZE = 2048  # one slot of either ring: the header, then a frame of up to MAX_FRAME bytes
RX_FRAMES = 2048
TX_FRAMES = 512
RING_BLOCK = 1 << 16  # the rings are allocated in blocks of this many bytes (32 slots)
TX_DATA = 32  # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll): where a transmit slot's frame starts

_STATS = struct.Struct("=II")  # tpacket_stats: tp_packets, tp_drops
TX_HEADER = struct.Struct("=II")  # tpacket2_hdr: tp_status, tp_len
FRAME = struct.Struct("=I4xIH")  # tpacket2_hdr: tp_status, (tp_len), tp_snaplen, tp_mac
MAX_FRAME = FRAME_SIZE - TX_DATA


def tx_prefix(length: int) -> bytes:
    """The first ``TX_DATA`` bytes of a transmit frame carrying ``length`` bytes, ready to send."""
    return TX_HEADER.pack(TP_STATUS_SEND_REQUEST, length) + bytes(TX_DATA - TX_HEADER.size)


def packet_socket(ifname: str, protocol: int) -> socket.socket:
    """A raw AF_PACKET socket bound to ``ifname`` for ``protocol`` (0: receives nothing);
    OSError naming the device."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    try:
        sock.bind((ifname, protocol))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"open device {ifname} in user space: {error.strerror}") from None
    return sock


class RxRing:
    """A TPACKET_V2 receive ring on ``ifname`` (see the module docstring)."""

    def __init__(self, ifname: str, *, frames: int = RX_FRAMES) -> None:
        self.sock = packet_socket(ifname, ETH_P_ALL)
        sock = self.sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING,
                        struct.pack("=4I", RING_BLOCK, frames * FRAME_SIZE // RING_BLOCK, FRAME_SIZE, frames))
        self.memory = mmap.mmap(sock.fileno(), frames * FRAME_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.end = frames * FRAME_SIZE
        self.offset = 0  # the next frame the kernel will fill (and user space read)
        self.received = 0
        self.dropped = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def statistics(self) -> tuple[int, int]:
        """``(received, dropped)`` by the kernel for this ring since it was opened (the kernel
        counts a frame as dropped when the ring had no free frame)."""
        packets, drops = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def close(self) -> None:
        self.memory.close()
        self.sock.close()


class TxRing:
    """A TPACKET_V2 transmit ring on ``ifname``: fill frames, then ``flush`` them in one syscall."""

    def __init__(self, ifname: str, *, frames: int = TX_FRAMES) -> None:
        self.sock = packet_socket(ifname, 0)  # protocol 0: this socket receives nothing
        sock = self.sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a frame the device refuses is skipped, not retried
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING,
                        struct.pack("=4I", RING_BLOCK, frames * FRAME_SIZE // RING_BLOCK, FRAME_SIZE, frames))
        self.memory = mmap.mmap(sock.fileno(), frames * FRAME_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.end = frames * FRAME_SIZE
        self.offset = 0
        self.pending = 0
        self.sent = 0
        self.dropped = 0

    def put(self, frame: bytes) -> bool:
        """Queue one frame (copied into the ring); False (and counted as dropped) when the ring is
        full even after a flush or the frame is too long."""
        length = len(frame)
        if length > MAX_FRAME:
            self.dropped += 1
            return False
        return self.put_prepared(tx_prefix(length) + frame, TX_DATA + length)

    def put_prepared(self, data: bytes, size: int) -> bool:
        """Queue ``data`` = ``tx_prefix(len(frame)) + frame`` (``size`` = its length): the hot path's
        form, one slice assignment per frame."""
        memory = self.memory
        offset = self.offset
        if memory[offset] & 0x03:  # still owned by the kernel (send request or sending)
            self.flush()
            if memory[offset] & 0x03:
                self.dropped += 1
                return False
        memory[offset:offset + size] = data
        self.offset = offset + FRAME_SIZE if offset + FRAME_SIZE < self.end else 0
        self.pending += 1
        return True

    def flush(self) -> None:
        """Hand every queued frame to the kernel (one ``send``; it returns when they are sent)."""
        if not self.pending:
            return
        try:
            self.sock.send(b"")
        except OSError:
            return  # the frames stay queued (send requests): the next flush hands them over
        self.sent += self.pending
        self.pending = 0

    def close(self) -> None:
        self.memory.close()
        self.sock.close()
