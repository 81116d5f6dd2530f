"""Safe kernel operations (issue 15), as a user runs them: a deployment belongs to the spec that
built it (another spec with the same name is refused by ``up`` and ``down``, exit 2, nothing
touched; ``--replace`` takes it over); an empty spec returns at once; ``verify`` with a
hand-deleted veth reports the drift and completes; ``up`` counts devices as ``status`` does."""

import json
import time

from netvirt.dataplane.kernel import netns
from netvirt.dataplane.kernel.naming import TEST_PREFIX, deployment_name

from test_linux_cli import env, namespaces, netvirt, spec  # noqa: F401 (fixtures)


def test_another_spec_with_the_same_name_is_refused_and_the_first_stays_intact(spec, env, tmp_path):
    first = netvirt(env, "up", str(spec), "--format", "json")
    assert first.returncode == 0, first.stderr
    built = sorted(namespaces(spec.stem))
    other = tmp_path / "other" / spec.name
    other.parent.mkdir()
    other.write_text(spec.read_text().replace("web-2", "web-9"))  # same name, another network
    for command in ("up", "down"):
        refused = netvirt(env, command, str(other))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"belongs to spec '{spec.stem}' from {spec.resolve()}" in refused.stderr, refused.stderr
        assert "nothing was changed" in refused.stderr
        assert sorted(namespaces(spec.stem)) == built
    status = netvirt(env, "status", str(spec), "--format", "json")
    assert status.returncode == 0 and json.loads(status.stdout)["in_sync"] is True
    verify = netvirt(env, "verify", str(spec), "--from", "client-1", "--to", "web-2", "--format", "json")
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr
    # an edit of the same file converges; --replace takes the deployment over for another file
    spec.write_text(spec.read_text() + "\n# edited\n")
    assert netvirt(env, "up", str(spec)).returncode == 0
    replaced = netvirt(env, "up", str(other), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    kernel = f"{TEST_PREFIX}-{deployment_name(spec.stem)}-host-b.web-9"
    assert netns.exists(kernel)
    assert netvirt(env, "down", str(spec)).returncode == 2  # now it belongs to the other file
    assert netvirt(env, "down", str(other)).returncode == 0
    assert namespaces(spec.stem) == []


def test_up_of_an_empty_spec_returns_at_once(env, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("version: 1\nname: tempty\n")
    started = time.monotonic()
    done = netvirt(env, "up", str(empty), "--timeout", "60", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hosts"] == []
    assert time.monotonic() - started < 30  # the agents' 60 s timeout was not waited for


def test_verify_reports_a_deleted_veth_as_drift_and_completes(spec, env):
    up = netvirt(env, "up", str(spec), "--format", "json")
    assert up.returncode == 0, up.stderr
    devices = {host["host"]: host["devices"] for host in json.loads(up.stdout)["hosts"]}
    status = json.loads(netvirt(env, "status", str(spec), "--format", "json").stdout)
    assert devices == {host["host"]: host["devices"]["desired"] for host in status["hosts"]}
    kernel = f"{TEST_PREFIX}-{deployment_name(spec.stem)}-host-b"
    netns.run(kernel, ["ip", "link", "del", "ve-web-2-0"])
    verify = netvirt(env, "verify", str(spec), "--all", "--format", "json")
    assert verify.returncode == 1, verify.stderr
    assert "Traceback" not in verify.stderr
    report = json.loads(verify.stdout)
    assert report["drift"] == ["host-b:web-2/eth0", "host-b:host-b/ve-web-2-0"]
    assert "drift: device host-b:host-b/ve-web-2-0 is missing" in verify.stderr
    disagree = {(flow["from"], flow["to"]) for flow in report["flows"] if not flow["agrees"]}
    assert disagree and all("web-2" in pair or "service/web" in pair for pair in disagree), disagree
    assert ("client-1", "db-1") not in disagree and len(report["flows"]) == 36
