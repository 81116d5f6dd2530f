"""``netvirt trace`` and ``netvirt reach`` on the command line: outputs, exit codes, messages."""

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from netvirt.management.cli import trace as trace_cli
from netvirt.wire import pcap

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")
ANOMALY_1 = str(ROOT / "examples" / "seed" / "anomaly-1-virtualbox-k8s.yaml")


def run(*args: str):
    app = typer.Typer()
    app.callback()(lambda: None)
    trace_cli.register(app)
    return CliRunner().invoke(app, list(args))


def test_trace_a_single_stack_spec_by_default():
    result = run("trace", ANOMALY_1)
    assert result.exit_code == 0, result.output
    assert "7. Final Destination" in result.stdout and "Outcome: delivered" in result.stdout


def test_trace_formats_and_output_file(tmp_path):
    out = tmp_path / "t.json"
    result = run("trace", QUICKSTART, "--from", "web-1", "--to", "web-2", "--format", "json", "-o", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(out.read_text())["disposition"] == "delivered"
    markdown = run("trace", QUICKSTART, "--from", "web-1", "--to", "web-2", "--format", "markdown")
    assert markdown.stdout.startswith("| Step | Mode | System Level | Technique |")
    detail = run("trace", QUICKSTART, "--from", "web-1", "--to", "web-2", "--detail")
    assert "Device" in detail.stdout.splitlines()[0] and "encap" in detail.stdout
    capture = tmp_path / "t.pcap"
    result = run("trace", QUICKSTART, "--from", "web-1", "--to", "web-2", "--format", "pcap", "-o", str(capture))
    assert result.exit_code == 0 and "one per hop" in result.stderr
    assert len(list(pcap.read(capture))) == len(json.loads(out.read_text())["hops"])


@pytest.mark.parametrize(("args", "fragment"), [
    (("--from", "web-1", "--to", "10.10.0.121:80"), "delivered to web-2"),
    (("--from", "10.20.0.65", "--to", "web-1", "--proto", "icmp"), "echo request answered by web-1"),
    (("--from", "client-1", "--to", "web"), "delivered to web-"),
    (("--from", "web-1", "--to", "external", "--dport", "443"), "internet server"),
    (("--from", "external", "--to", "web-1"), "Outcome: dropped"),
    (("--from", "web-1", "--to", "db-1", "--proto", "udp", "--dport", "53"), "Outcome: dropped"),
    (("--from", "web-1", "--to", "web-2", "--sport", "41000"), "41000 >"),
])
def test_trace_sources_and_targets(args, fragment):
    result = run("trace", QUICKSTART, *args, "--detail")
    assert result.exit_code == 0, result.output
    assert fragment in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("--from", "web-9", "--to", "web-1"), "--from 'web-9': not an endpoint, address or 'external' of quickstart"),
    (("--from", "web-1", "--to", "nowhere"), "--to 'nowhere': not an endpoint, service, address or 'external'"),
    (("--from", "web-1",), "give both --from and --to"),
    (("--from", "10.10.0.20", "--to", "web-2"), "the address is in several namespaces"),
    (("--from", "10.99.0.1", "--to", "web-2"), "no namespace of quickstart has this address"),
    (("--from", "web-1", "--to", "10.10.0.121:99999"), "the port must be 1-65535"),
    (("--stack", "nope"), "--stack 'nope': no such stack in quickstart (stacks: db-on-k8s)"),
    (("--stack", "db-on-k8s", "--from", "web-1"), "--stack walks a packet from the outside"),
    (("--format", "pcap", "--stack", "db-on-k8s"), "--format pcap writes a binary file: give -o FILE.pcap"),
])
def test_bad_input_exits_2_with_a_message(args, message):
    result = run("trace", QUICKSTART, *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_invalid_spec_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nendpoints: [{name: a, host: nope, network: nope}]\n")
    result = run("trace", str(bad), "--from", "a", "--to", "a")
    assert result.exit_code == 2 and "unknown" in result.stderr
    assert run("reach", str(bad)).exit_code == 2


def test_reach_table_json_and_diff(tmp_path):
    table = run("reach", QUICKSTART)
    assert table.exit_code == 0 and "of 42 allowed" in table.stdout
    rows = json.loads(run("reach", QUICKSTART, "--format", "json").stdout)
    assert len(rows) == 42 and set(rows[0]) == {"from", "to", "proto", "port", "verdict", "disposition", "reason"}
    outside = {r["from"]: r["verdict"] for r in rows if r["to"] == "external"}  # through acme-router's SNAT
    assert outside == {"web-1": "allowed", "web-2": "allowed", "client-1": "allowed", "db-1": "allowed",
                       "globex-1": "dropped", "globex-2": "dropped"}
    db = next(r for r in rows if (r["from"], r["to"]) == ("client-1", "db-1"))
    assert db["verdict"] == "dropped" and "policy green-in" in db["reason"]
    isolated = next(r for r in rows if (r["from"], r["to"]) == ("web-1", "globex-1"))
    assert isolated["verdict"] == "dropped" and isolated["reason"].startswith("misdelivered")
    changed = tmp_path / "changed.yaml"
    changed.write_text(Path(QUICKSTART).read_text().replace(
        "{action: allow, proto: tcp, dst_port: 5432, from: app=web, to: db-1}",
        "{action: allow, proto: tcp, dst_port: 5432, to: db-1}"))
    diff = json.loads(run("reach", QUICKSTART, "--diff", str(changed), "--format", "json").stdout)
    assert {(c["old"]["from"], c["new"]["verdict"]) for c in diff} == {("client-1", "allowed")}
    text = run("reach", QUICKSTART, "--diff", str(changed)).stdout
    assert "client-1" in text and "1 change(s)" in text
    assert run("reach", QUICKSTART, "--diff", QUICKSTART).stdout == "no change in reachability\n"
