"""``netvirt validate|show|schema|init|generate``: output and exit codes (0 ok, 2 bad input)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from netvirt.management.cli import spec as spec_cli
from netvirt.management.spec import load, loads, starter_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUICKSTART = EXAMPLES / "quickstart.yaml"
INVALID = Path(__file__).parent / "invalid"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    spec_cli.register(app)
    return app


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_validate_a_valid_spec(app):
    result = run(app, "validate", QUICKSTART)
    assert result.exit_code == 0, result.output
    assert (
        result.stdout
        == f"{QUICKSTART}: valid (hosts 2, networks 3, routers 1, endpoints 6, policies 2, services 1, stacks 1)\n"
    )
    assert result.stderr == ""


def test_validate_an_invalid_spec_prints_every_problem_on_stderr(app, monkeypatch):
    monkeypatch.chdir(INVALID)
    result = run(app, "validate", "many-problems.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[:-1] == (INVALID / "many-problems.expected").read_text().splitlines()
    assert lines[-1] == "netvirt validate: invalid spec, 5 problems"


def test_validate_json(app, monkeypatch):
    monkeypatch.chdir(INVALID)
    bad = run(app, "validate", "unknown-network.yaml", "--format", "json")
    assert bad.exit_code == 2
    assert json.loads(bad.stdout) == {
        "valid": False,
        "problems": [
            {
                "file": "unknown-network.yaml",
                "line": 8,
                "col": 42,
                "path": "endpoints[1].network",
                "message": "unknown network 'bleu' (did you mean 'blue'?)",
            }
        ],
    }
    good = run(app, "validate", QUICKSTART, "--format", "json")
    assert good.exit_code == 0 and json.loads(good.stdout)["valid"] is True
    assert json.loads(good.stdout)["counts"]["endpoints"] == 6


def test_validate_a_missing_file_is_bad_input(app, tmp_path):
    result = run(app, "validate", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"{tmp_path / 'nope.yaml'}: error: no such file or directory"


def test_show_tables_carry_the_allocations(app):
    result = run(app, "show", QUICKSTART)
    assert result.exit_code == 0, result.output
    spec = load(QUICKSTART)
    for title in ("hosts", "networks", "routers", "endpoints", "policies", "services", "stacks"):
        assert f"\n{title}" in "\n" + result.stdout
    for network in spec.networks:
        assert str(network.vni) in result.stdout and str(network.mtu) in result.stdout
    for endpoint in spec.endpoints:
        attachment = endpoint.attachments[0]
        assert str(attachment.ip) in result.stdout and attachment.mac in result.stdout
    assert "host(linux, physical)[host-b] -> kubernetes(flannel-vxlan, iptables) -> pod[db-1]" in result.stdout


def test_show_json_is_the_resolved_spec(app):
    result = run(app, "show", QUICKSTART, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert loads(json.dumps(data), "shown.json") == load(QUICKSTART)
    assert data["endpoints"][0]["attachments"][0]["mac"].startswith("02:")


def test_show_an_empty_spec_says_so(app, tmp_path):
    """It printed nothing at all."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("name: nothing\n")
    result = run(app, "show", str(empty))
    assert result.exit_code == 0 and result.stdout.startswith("nothing: an empty spec") and "netvirt init" in result.stdout


def test_show_an_invalid_spec(app, monkeypatch):
    monkeypatch.chdir(INVALID)
    result = run(app, "show", "duplicate-ip.yaml")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (INVALID / "duplicate-ip.expected").read_text().strip()


def test_schema(app):
    result = run(app, "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) >= {
        "name",
        "hosts",
        "networks",
        "routers",
        "endpoints",
        "policies",
        "services",
        "stacks",
    }
    assert "name" not in schema.get("required", [])
    endpoint = schema["$defs"]["Endpoint"]
    assert {"network", "ip", "ip6", "mac", "attachments"} <= set(endpoint["properties"])
    assert endpoint["additionalProperties"] is False
    assert schema["$defs"]["Network"]["properties"]["encap"]["enum"] == ["vxlan", "geneve", "nvgre", "none"]
    assert yaml.safe_load(run(app, "schema", "--format", "yaml").stdout) == schema


def test_init_writes_a_valid_starter_and_never_overwrites(app, tmp_path):
    target = tmp_path / "netvirt.yaml"
    first = run(app, "init", target)
    assert first.exit_code == 0 and target.read_text() == starter_spec()
    assert load(target).name == "my-network"
    target.write_text("# mine\n")
    second = run(app, "init", target)
    assert second.exit_code == 2
    assert "already exists" in second.stderr and target.read_text() == "# mine\n"


def test_generate_writes_a_valid_spec(app, tmp_path):
    result = run(app, "generate", "--hosts", "25", "--endpoints-per-host", "4")
    assert result.exit_code == 0
    spec = loads(result.stdout)
    assert (len(spec.hosts), len(spec.endpoints), len(spec.networks)) == (25, 100, 3)
    assert {network.tenant for network in spec.networks} == {"tenant-a", "tenant-b"}
    as_json = run(app, "generate", "--hosts", "25", "--endpoints-per-host", "4", "--format", "json")
    assert loads(as_json.stdout, "generated.json") == spec
    resolved = run(app, "generate", "--hosts", "25", "--endpoints-per-host", "4", "--resolved")
    assert loads(resolved.stdout) == spec and "ip:" in resolved.stdout and "ip:" not in result.stdout


def test_generate_rejects_impossible_sizes(app):
    assert run(app, "generate", "--hosts", "0").exit_code == 2
    result = run(app, "generate", "--hosts", "200000")
    assert result.exit_code == 2 and "at most" in result.stderr


def test_the_real_entry_point(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "netvirt", "validate", str(QUICKSTART)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "netvirt", "validate", str(INVALID / "enum-value.yaml")], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "did you mean 'vxlan'?" in bad.stderr


def test_init_into_a_missing_directory_is_bad_input(app, tmp_path):
    result = run(app, "init", tmp_path / "no-such-dir" / "netvirt.yaml")
    assert result.exit_code == 2
    assert "no directory" in result.stderr and not (tmp_path / "no-such-dir").exists()
