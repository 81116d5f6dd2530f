"""``netvirt demo``: the README's main job. For now, the packet codecs at work.

A story in frames: pod A on node-1 opens a TCP connection to pod B on node-2. The inner SYN is
wrapped in VXLAN, Geneve (with an option) and NVGRE, each over an IPv4 and an IPv6 underlay; every
frame is decoded again and shown layer by layer with the bytes each header takes, then the
overhead of each encapsulation, then all frames go through a pcap file and back, as
``netvirt pcap show`` prints them.
"""

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from netvirt.management.cli.pcap import frame_line
from netvirt.wire import build, dissect, encapsulate, ethernet, geneve, ipv4, pcap, summary, tcp
from netvirt.wire.addresses import ip_to_bytes, mac_to_bytes

POD_A = ("0a:58:0a:f4:01:0a", "10.244.1.10")
POD_B = ("0a:58:0a:f4:02:14", "10.244.2.20")
NODE_1 = ("52:54:00:00:00:11", "192.168.56.11", "fd00:56::11")
NODE_2 = ("52:54:00:00:00:12", "192.168.56.12", "fd00:56::12")
VNI = 5001
# OVN's Geneve option (class 0x0102, type 0x80): logical ingress port 1, egress port 2
OVN_OPTION = geneve.Option(0x0102, 0x80, bytes.fromhex("00010002"))
ENCAPSULATIONS = (
    ("VXLAN", "vxlan", {}),
    ("Geneve + option", "geneve", {"options": (OVN_OPTION,)}),
    ("NVGRE", "nvgre", {"flow_id": 7}),
)
UNDERLAY_MTU = 1500


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    pcap_path: Annotated[
        Path | None,
        typer.Option("--pcap", help="Keep the frames in this pcap file (default: a temporary one)"),
    ] = None,
) -> None:
    """Show netvirt's packet codecs: one TCP SYN between two pods, in every encapsulation."""
    console = Console(highlight=False)
    inner = inner_syn()
    console.print(
        f"[bold]Pod A ({POD_A[1]}, node-1) opens TCP to pod B ({POD_B[1]}:8080, node-2).[/bold]\n"
        f"Inner frame, {len(inner)} bytes: {summary(dissect(inner))}\n"
        f"Node-1 tunnels it to node-2 (VNI/VSID {VNI}) in each encapsulation:\n"
    )
    frames = [("inner (no tunnel)", inner)]
    inner_layers = len(dissect(inner))
    for name, encap, extra in ENCAPSULATIONS:
        variants = []
        for underlay, column in (("IPv4", 1), ("IPv6", 2)):
            frame = encapsulate(
                inner, encap=encap, vni=VNI, outer_src=NODE_1[column], outer_dst=NODE_2[column],
                outer_src_mac=NODE_1[0], outer_dst_mac=NODE_2[0], **extra,
            )
            variants.append((underlay, frame))
            frames.append((f"{name} over {underlay}", frame))
        console.print(layer_table(name, variants, inner_layers), "")
    console.print(overhead_table(frames))
    if pcap_path is None:
        with tempfile.TemporaryDirectory(prefix="netvirt-demo-") as folder:
            replay(console, Path(folder) / "demo.pcap", frames)
    else:
        replay(console, pcap_path, frames)


def inner_syn() -> bytes:
    """Pod A's SYN to pod B, with the options Linux sends (MSS for a 1450-byte VXLAN MTU)."""
    options = (
        tcp.Option(tcp.MAXIMUM_SEGMENT_SIZE, (1410).to_bytes(2, "big")),
        tcp.Option(tcp.SACK_PERMITTED),
        tcp.Option(tcp.TIMESTAMPS, bytes.fromhex("0001e24000000000")),
        tcp.Option(tcp.NO_OPERATION),
        tcp.Option(tcp.WINDOW_SCALE, b"\x07"),
    )
    return build(
        [
            ethernet.Repr(mac_to_bytes(POD_A[0]), mac_to_bytes(POD_B[0]), ethernet.IPV4),
            ipv4.Repr(ip_to_bytes(POD_A[1]), ip_to_bytes(POD_B[1]), ipv4.TCP, dont_fragment=True),
            tcp.Repr(43210, 8080, sequence_number=1000, flags=0x02, window=64240, options=options),
        ]
    )


def layer_table(title: str, frames: list[tuple[str, bytes]], inner_layers: int) -> Table:
    """Each frame decoded again, one section per underlay: a row per outer layer with the bytes its
    header takes, then the inner frame (the last ``inner_layers`` layers) as one row."""
    table = Table(
        title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    table.add_column("layer")
    table.add_column("bytes", justify="right")
    table.add_column("decoded")
    for underlay, frame in frames:
        layers = dissect(frame)
        sizes = header_sizes(layers)
        split = len(layers) - inner_layers
        for layer, size in zip(layers[:split], sizes, strict=False):
            table.add_row(layer.to_dict()["layer"], str(size), summary([layer]), style="cyan")
        table.add_row("inner", str(sum(sizes[split:])), summary(layers[split:]))
        table.add_row("", str(len(frame)), f"the whole frame over {underlay}", style="bold")
        if underlay != frames[-1][0]:
            table.add_section()
    return table


def header_sizes(layers: list) -> list[int]:
    """Bytes each layer's header takes: the growth of the frame built from a longer prefix."""
    lengths = [len(build(layers[:count])) for count in range(len(layers) + 1)]
    return [after - before for before, after in zip(lengths, lengths[1:])]


def overhead_table(frames: list[tuple[str, bytes]]) -> Table:
    """What each encapsulation adds, and the inner MTU left on a 1500-byte underlay."""
    inner = len(frames[0][1])
    table = Table(
        title="Encapsulation overhead", title_justify="left", title_style="bold",
        box=box.SIMPLE_HEAD, show_edge=False,
    )
    for column in ("encapsulation", "frame bytes", "added bytes", f"inner MTU on {UNDERLAY_MTU}"):
        table.add_column(column, justify="left" if column == "encapsulation" else "right")
    for title, frame in frames[1:]:
        added = len(frame) - inner
        # the MTU counts from the outer IP header: the outer Ethernet header is not in it,
        # the inner one is
        table.add_row(title, str(len(frame)), str(added), str(UNDERLAY_MTU - added))
    return table


def replay(console: Console, path: Path, frames: list[tuple[str, bytes]]) -> None:
    """Write the frames to a pcap file, read it back and print it as ``netvirt pcap show`` does."""
    start = time.time_ns()
    with pcap.Writer(path, nanosecond=True) as writer:
        for offset, (_, frame) in enumerate(frames):
            writer.write(frame, timestamp_ns=start + offset * 1000)
    heading = f"Through a pcap file and back, as `netvirt pcap show {path.name}`:"
    console.print(f"\n[bold]{heading}[/bold]")
    for frame in pcap.read(path):
        console.print(frame_line(frame), soft_wrap=True)
