"""AF_PACKET memory-mapped rings: a TPACKET_V3 receive ring and a TPACKET_V2 transmit ring per port.

Contract: ``RxRing(ifname)`` maps a ring of blocks the kernel fills with frames received on the
device; ``blocks()`` yields each block the kernel handed to user space (``(memory, offset,
packets)``) and ``release`` gives it back — one status write per block, no syscall. ``TxRing``
maps frames the switch fills (``slot`` / ``commit``); ``flush()`` hands all of them to the kernel
with one ``send`` (PACKET_QDISC_BYPASS: straight to the driver, no qdisc, and invisible to other
packet sockets on this device — the bypass blind spot). Both sockets are bound to one device;
the receive socket ignores the frames the host itself sends out of it (PACKET_IGNORE_OUTGOING).

Layouts (linux/if_packet.h): a V3 block starts with ``tpacket_block_desc`` (block_status at 8,
num_pkts at 12, offset_to_first_pkt at 16); each frame with ``tpacket3_hdr`` (tp_next_offset,
tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac, tp_net). A V2 transmit frame starts with
``tpacket2_hdr`` (tp_status, tp_len, ...) and its data begins at byte 32.
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
TPACKET_V3 = 2
ETH_P_ALL = 0x0003

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4

BLOCK_SIZE = 1 << 18
BLOCKS = 8
TX_FRAME_SIZE = 2048
TX_FRAMES = 512
TX_DATA = 32  # TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)
RETIRE_MS = 1  # a partly filled block goes to user space after at most this long

_BLOCK = struct.Struct("=III")  # block_status, num_pkts, offset_to_first_pkt (at 8 in the block)
_STATS = struct.Struct("=III")  # tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt
TX_HEADER = struct.Struct("=II")  # tpacket2_hdr: tp_status, tp_len
FRAME = struct.Struct("=I8xI8xH")  # tpacket3_hdr: tp_next_offset, tp_snaplen, tp_mac
MAX_FRAME = TX_FRAME_SIZE - TX_DATA


def tx_prefix(length: int) -> bytes:
    """The first ``TX_DATA`` bytes of a transmit frame carrying ``length`` bytes, ready to send."""
    return TX_HEADER.pack(TP_STATUS_SEND_REQUEST, length) + bytes(TX_DATA - TX_HEADER.size)


def _packet_socket(ifname: str, protocol: int) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    try:
        sock.bind((ifname, protocol))
    except OSError as error:
        sock.close()
        raise OSError(error.errno, f"open device {ifname} in user space: {error.strerror}") from None
    return sock


class RxRing:
    """A TPACKET_V3 receive ring on ``ifname`` (see the module docstring)."""

    def __init__(self, ifname: str, *, block_size: int = BLOCK_SIZE, blocks: int = BLOCKS) -> None:
        self.sock = _packet_socket(ifname, ETH_P_ALL)
        sock = self.sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        request = struct.pack("=7I", block_size, blocks, TX_FRAME_SIZE, block_size * blocks // TX_FRAME_SIZE,
                              RETIRE_MS, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self.memory = mmap.mmap(sock.fileno(), block_size * blocks, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        self.block_size = block_size
        self.blocks = blocks
        self.current = 0
        self.received = 0
        self.dropped = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready(self) -> tuple[int, int] | None:
        """``(offset of the first frame, frame count)`` of the next block if user space owns it."""
        base = self.current * self.block_size
        status, count, first = _BLOCK.unpack_from(self.memory, base + 8)
        if not status & TP_STATUS_USER:
            return None
        return base + first, count

    def release(self) -> None:
        """Give the current block back to the kernel and move to the next one."""
        self.memory[self.current * self.block_size + 8:self.current * self.block_size + 12] = b"\0\0\0\0"
        self.current = (self.current + 1) % self.blocks

    def statistics(self) -> tuple[int, int]:
        """``(received, dropped)`` by the kernel for this ring since it was opened (the kernel
        counts a frame as dropped when the ring had no free block)."""
        packets, drops, _ = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def close(self) -> None:
        self.memory.close()
        self.sock.close()


class TxRing:
    """A TPACKET_V2 transmit ring on ``ifname``: fill frames, then ``flush`` them in one syscall."""

    def __init__(self, ifname: str, *, frames: int = TX_FRAMES) -> None:
        self.sock = _packet_socket(ifname, 0)  # protocol 0: this socket receives nothing
        sock = self.sock
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        sock.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # a frame the device refuses is skipped, not retried
        block = 1 << 16
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING,
                        struct.pack("=4I", block, frames * TX_FRAME_SIZE // block, TX_FRAME_SIZE, frames))
        self.memory = mmap.mmap(sock.fileno(), frames * TX_FRAME_SIZE, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        self.end = frames * TX_FRAME_SIZE
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
        self.offset = offset + TX_FRAME_SIZE if offset + TX_FRAME_SIZE < self.end else 0
        self.pending += 1
        return True

    def flush(self) -> None:
        """Hand every queued frame to the kernel (one ``send``; it returns when they are sent)."""
        if not self.pending:
            return
        try:
            self.sock.send(b"")
        except BlockingIOError:
            pass
        except OSError:
            self.dropped += self.pending
            self.pending = 0
            return
        self.sent += self.pending
        self.pending = 0

    def close(self) -> None:
        self.memory.close()
        self.sock.close()
