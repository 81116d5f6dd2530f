"""Diagrams: DOT and Mermaid structure, the SVG Graphviz renders, and the CLI."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from netvirt.control.compile import compile_network
from netvirt.management.cli import _register, app
from netvirt.trace.plan import plan_trace
from netvirt.management.spec import load
from netvirt.trace.diagram import Diagram

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"
SVG = "{http://www.w3.org/2000/svg}"


def traced(source: str, target: str, proto: str, port: int) -> Diagram:
    spec = load(QUICKSTART)
    tracer, flow, skip = plan_trace(spec, source, target, proto, port, 40000, None, compile=compile_network)
    return Diagram(compile_network(spec), tracer.trace(flow, skip=skip))


def test_the_topology_has_every_host_namespace_bridge_tunnel_router_and_the_underlay():
    spec = load(QUICKSTART)
    network = compile_network(spec)
    dot = Diagram(network).dot()
    assert re.findall(r"subgraph cluster_(\w+)", dot) == ["n_host_a", "n_host_b"]
    for endpoint in spec.endpoints:
        assert f"n_{endpoint.host.replace('-', '_')}_{endpoint.name.replace('-', '_')} [label=\"{endpoint.name}" in dot
    for net in spec.networks:
        assert f'"vxlan-{net.name}\nVXLAN VNI {net.vni}"' in dot and f'"br-{net.name}\nbridge"' in dot
    assert '"acme-router\nrouter 10.10.0.1' in dot and '"underlay\nunderlay segment, MTU 1500"' in dot
    assert "n_host_a_eth0 -> n_segment_underlay" in dot and "n_host_a_br_blue -> n_host_a_vxlan_blue" in dot
    assert "penwidth" not in dot.split("n_segment_underlay [")[0].split("subgraph")[0]  # no path without a trace


def test_a_dropped_packet_is_numbered_hop_by_hop_with_the_encap_labelled_and_the_drop_red():
    picture = traced("web-2", "web-1", "tcp", 22)
    assert [label for _, _, label in picture.path] == ["1", "2", "3: encap VXLAN VNI %d" % load(QUICKSTART).network("blue").vni,
                                                       "4", "5", "6", "7", "8"]
    assert [a for a, _, _ in picture.path][:4] == ["n_host_b_web_2", "n_host_b_br_blue", "n_host_b_vxlan_blue", "n_host_b_eth0"]
    assert picture.path[-1][1] == "n_host_a_web_1" and picture.end[:2] == ("n_host_a_web_1", "drop")
    dot = picture.dot()
    assert 'n_host_a_br_blue -> n_host_a_web_1 [label=8 arrowhead=normal color="#d1242f"' in dot
    assert "DROPPED: dropped by filter/input rule" in dot and "policy blue-in: default drop" in dot
    mermaid = picture.mermaid()
    assert mermaid.startswith("flowchart LR\n") and '  subgraph n_host_host_a["host host-a"]' in mermaid
    assert '  n_host_b_vxlan_blue ==>|"3: encap VXLAN VNI' in mermaid and "  class n_host_a_web_1 drop" in mermaid
    assert mermaid.count("==>") == 8 and mermaid.count("  end") == 2


def test_the_svg_parses_and_names_the_hops():
    picture = traced("web-2", "db-1", "tcp", 5432)  # routed on host-b: web-2 -> router -> db-1
    root = ET.fromstring(picture.render("svg"))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    for name in ("web-2", "br-blue", "acme-router", "br-green", "db-1", "#1", "#5"):
        assert name in texts, name
    assert "delivered to db-1 (tcp/5432) in db-1" in texts
    titles = {t.text for t in root.iter(f"{SVG}title")}
    assert {"n_host_b_web_2->n_host_b_br_blue", "n_host_b_br_green->n_host_b_db_1"} <= titles
    assert picture.render("png").startswith(b"\x89PNG")


def test_cli_diagram_and_trace_svg(tmp_path: Path):
    _register()
    runner = CliRunner()
    png = tmp_path / "q.png"
    made = runner.invoke(app, ["diagram", str(QUICKSTART), "-f", "png", "-o", str(png), "--from", "web-2", "--to", "web-1"])
    assert made.exit_code == 0, made.output
    assert png.read_bytes().startswith(b"\x89PNG")
    mermaid = runner.invoke(app, ["diagram", str(QUICKSTART), "-f", "mermaid"])
    assert mermaid.exit_code == 0 and mermaid.stdout.startswith("flowchart LR")
    svg = runner.invoke(app, ["trace", str(QUICKSTART), "--from", "web-2", "--to", "web-1", "--dport", "22", "-f", "svg"])
    assert svg.exit_code == 0 and "DROPPED" in svg.stdout
    ET.fromstring(svg.stdout.encode())
    bad = runner.invoke(app, ["diagram", str(QUICKSTART), "--from", "nobody", "--to", "web-1"])
    assert bad.exit_code == 2 and "nobody" in bad.stderr
    assert runner.invoke(app, ["diagram", str(QUICKSTART), "-f", "png"]).exit_code == 2  # png needs -o
