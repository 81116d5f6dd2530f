"""``netvirt demo --codecs`` (the codec tour): the frames, the known overheads, the pcap round trip.
The main demo (simulator, kernel, verify, applications) is tested in tests/privileged/test_linux_cli.py."""

import re

import typer
from typer.testing import CliRunner

from netvirt.management.cli import demo as demo_cli
from netvirt.wire import dissect, pcap, to_json


def test_demo_tells_the_overheads_and_writes_a_readable_pcap(tmp_path):
    app = typer.Typer()
    app.callback()(lambda: None)
    demo_cli.register(app)
    path = tmp_path / "demo.pcap"
    result = CliRunner().invoke(app, ["demo", "--codecs", "--pcap", str(path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    # well-known header costs: VXLAN over IPv4 adds 50 bytes (inner MTU 1450 on a 1500 underlay),
    # over IPv6 70; Geneve adds VXLAN's plus its 8-byte option; NVGRE over IPv4 adds 42
    rows = {
        "VXLAN over IPv4": (50, 1450), "VXLAN over IPv6": (70, 1430),
        "Geneve + option over IPv4": (58, 1442), "Geneve + option over IPv6": (78, 1422),
        "NVGRE over IPv4": (42, 1458), "NVGRE over IPv6": (62, 1438),
    }  # fmt: skip
    for name, (added, mtu) in rows.items():
        assert re.search(rf"{re.escape(name)}\s+\d+\s+{added}\s+{mtu}\b", out), name
    assert "vxlan vni 5001" in out and "nvgre vsid 5001 flow_id 7" in out
    frames = list(pcap.read(path))
    assert len(frames) == 7
    inner = ["ethernet", "ipv4", "tcp"]
    expected = [inner] + [
        ["ethernet", underlay, *tunnel, *inner]
        for tunnel in (["udp", "vxlan"], ["udp", "geneve"], ["nvgre"])
        for underlay in ("ipv4", "ipv6")
    ]
    assert [[layer["layer"] for layer in to_json(dissect(f.data))] for f in frames] == expected
    for frame in frames:
        assert f"{frame.index:>4}  " in out  # the pcap show-style listing
