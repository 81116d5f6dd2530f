"""``netvirt up|down|status|exec|capture``: bad input exits 2 before touching the kernel (the
kernel paths are in tests/privileged/test_linux_cli.py)."""

import pytest
import typer
from typer.testing import CliRunner

from netvirt.management.cli import linux as linux_cli

QUICKSTART = "examples/quickstart.yaml"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    linux_cli.register(app)
    return app


@pytest.mark.parametrize(("args", "message"), [
    (["down"], "give a SPEC or --all"),
    (["down", QUICKSTART, "--all"], "give a SPEC or --all"),
    (["up", QUICKSTART, "--filter", "ebtables"], "--filter ebtables: the filter backend must be nftables or iptables"),
    (["up", QUICKSTART, "--filter", "host-z=iptables"], "the spec has no host 'host-z' (hosts: host-a, host-b)"),
    (["exec", QUICKSTART, "no-such", "--", "true"], "no endpoint 'no-such'; give an endpoint (client-1, db-1"),
    (["exec", QUICKSTART, "host-z:web-1", "--", "true"], "the spec has no host 'host-z'"),
    (["exec", QUICKSTART, "host-a:db-1", "--", "true"], "host host-a has no namespace 'db-1'"),
    (["exec", QUICKSTART, "web-1"], "Missing argument"),
    (["capture", QUICKSTART, "nowhere", "-w", "/dev/null"], "give [HOST:]NAMESPACE/DEVICE or a segment (underlay)"),
    (["status", "tests/management/invalid/bad-ip.yaml"], "netvirt status: invalid spec"),
])
def test_bad_input_exits_2_with_a_message(app, args, message):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_an_invalid_spec_is_reported_with_its_location(app, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\nhosts:\n  - {name: h1, underlay: not-an-address}\n")
    result = CliRunner().invoke(app, ["up", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:4:" in result.stderr and "netvirt up: invalid spec" in result.stderr
