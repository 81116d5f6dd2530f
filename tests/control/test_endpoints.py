"""One endpoint at a time through the control plane: spec.edit, the controller, REST and the CLI."""

import threading
from pathlib import Path

import httpx
import pytest
from test_api import client, controller, netvirt, put_spec, served  # noqa: F401 (fixtures)
from test_controller import SPEC, edited

from netvirt.control.compile import compile_network
from netvirt.control.controller import Controller, StaleSpec
from netvirt.management.spec import SpecError, as_data, item_data, loads
from netvirt.management.spec.edit import EndpointExists, UnknownEndpoint, with_endpoint, without_endpoint

WEB_2 = "name: web-2\nhost: h2\nnetwork: blue\nlisten: [tcp/80]\n"


def test_an_added_endpoint_is_the_spec_with_it_written_in():
    spec = loads(SPEC, "three.yaml")
    added = with_endpoint(spec, WEB_2)
    assert added == loads(SPEC + "  - " + WEB_2.replace("\n", "\n    ").rstrip() + "\n", "three.yaml")
    assert all(new is old for new, old in zip(added.networks + added.endpoints, spec.networks + spec.endpoints))
    changed = with_endpoint(added, "{name: db-1, kind: vm, host: h3, network: red}", change="db-1")
    assert [e.name for e in changed.endpoints] == ["web-1", "db-1", "batch-1", "web-2"]  # in place
    assert changed.endpoint("db-1").host == "h3" and changed.endpoint("db-1").attachments[0].network == "red"
    assert without_endpoint(added, "web-2") == spec
    with pytest.raises(EndpointExists, match="endpoint 'web-1' already exists"):
        with_endpoint(spec, "{name: web-1, host: h1, network: blue}")
    with pytest.raises(UnknownEndpoint, match="no endpoint 'web-9'"):
        with_endpoint(spec, "{name: web-9, host: h1, network: blue}", change="web-9")
    with pytest.raises(UnknownEndpoint):
        without_endpoint(spec, "web-9")


def test_problems_are_located_in_the_endpoint_text_and_in_the_applied_spec():
    spec = loads(SPEC, "three.yaml")
    with pytest.raises(SpecError) as raised:
        with_endpoint(spec, "name: web-2\nhost: h9\nnetwork: reed\nip: 10.10.0.1x\n", "ep.yaml")
    assert [str(p) for p in raised.value.problems] == [  # every problem of the broken endpoint at once
        "ep.yaml:2:7: error: host: unknown host 'h9' (did you mean 'h1'?)",
        "ep.yaml:3:10: error: network: unknown network 'reed' (did you mean 'red'?)",
        "ep.yaml:4:5: error: ip: '10.10.0.1x' is not an IP address (expected e.g. 10.0.0.5 or fd00::5)",
    ]
    with pytest.raises(SpecError) as raised:
        with_endpoint(spec, "name: web-2\nhost: h9\nnetwork: reed\n", "ep.yaml")
    assert [str(p) for p in raised.value.problems] == [
        "ep.yaml:2:7: error: host: unknown host 'h9' (did you mean 'h1'?)",
        "ep.yaml:3:10: error: network: unknown network 'reed' (did you mean 'red'?)",
    ]
    taken = str(spec.endpoint("web-1").attachments[0].ip)
    with pytest.raises(SpecError, match=rf"ep.json:1:58: error: ip: {taken} is already used by endpoint 'web-1'"):
        with_endpoint(spec, f'{{"name": "web-2", "host": "h1", "network": "blue", "ip": "{taken}"}}', "ep.json")
    with pytest.raises(SpecError, match="ep.yaml:1:1: error: an endpoint must be a mapping of keys .*found a list"):
        with_endpoint(spec, "- web-2\n", "ep.yaml")
    served_by = loads(SPEC + "services:\n  - {name: www, tenant: acme, port: tcp/80, backends: [web-1]}\n", "s.yaml")
    with pytest.raises(SpecError, match=r"applied-spec.yaml:\d+:\d+: error: services\[0\].backends\[0\]: unknown endpoint 'web-1'"):
        without_endpoint(served_by, "web-1")


def test_the_controller_publishes_one_endpoint_incrementally(tmp_path: Path):
    from netvirt.control.store import open_store

    with open_store(f"sqlite://{tmp_path / 'store.db'}") as store:
        controller = Controller(store)
        first = controller.apply(loads(SPEC, "three.yaml"))
        added = controller.add_endpoint(WEB_2, "ep.yaml")
        assert added.applied.incremental and added.endpoint is not None and added.endpoint.attachments[0].ip
        assert added.applied.changed == ("h1", "h2")  # blue is on h1 and now on h2; h3 untouched
        assert controller.current().spec == with_endpoint(loads(SPEC, "three.yaml"), WEB_2)
        assert Controller(store).current().spec == controller.current().spec  # what the store holds
        with pytest.raises(StaleSpec):
            controller.remove_endpoint("web-2", expected_revision=first.revision)
        removed = controller.remove_endpoint("web-2")
        assert removed.endpoint is None and removed.applied.changed == ("h1", "h2")
        assert compile_network(controller.current().spec) == compile_network(loads(SPEC, "three.yaml"))


def test_concurrent_endpoint_adds_all_land(tmp_path: Path):
    """Read-modify-write guarded by the revision: racing adds retry, none is lost."""
    from netvirt.control.store import open_store

    with open_store(f"sqlite://{tmp_path / 'store.db'}") as one, open_store(f"sqlite://{tmp_path / 'store.db'}") as two:
        Controller(one).apply(loads(SPEC, "three.yaml"))
        controllers = [Controller(one), Controller(two)]
        threads = [
            threading.Thread(target=controllers[n % 2].add_endpoint, args=(f"{{name: c-{n}, host: h1, network: blue}}", "e.yaml"))
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert {e.name for e in Controller(one).current().spec.endpoints} >= {f"c-{n}" for n in range(4)}


def test_rest_add_change_remove_list(client: httpx.Client):  # noqa: F811
    assert client.post("/v1/endpoints", json={"text": WEB_2}).status_code == 404  # nothing applied yet
    put_spec(client)
    added = client.post("/v1/endpoints", json={"text": WEB_2, "filename": "web-2.yaml"})
    assert added.status_code == 200, added.text
    body = added.json()
    assert body["endpoint"]["name"] == "web-2" and body["endpoint"]["attachments"][0]["ip"].startswith("10.10.0.")
    assert body["changed"] == ["h1", "h2"] and body["incremental"] is True
    listing = client.get("/v1/endpoints").json()
    assert listing["revision"] == body["revision"]
    assert [e["name"] for e in listing["endpoints"]] == ["web-1", "db-1", "batch-1", "web-2"]
    assert client.get("/v1/endpoints/web-2").json()["endpoint"] == body["endpoint"]
    assert client.get("/v1/endpoints/web-9").status_code == 404

    taken = client.post("/v1/endpoints", json={"text": WEB_2})
    assert taken.status_code == 409 and "already exists" in taken.json()["detail"]
    bad = client.post("/v1/endpoints", json={"text": "name: web-3\nhost: h9\nnetwork: blue\n", "filename": "w3.yaml"})
    assert bad.status_code == 422
    assert bad.json()["detail"] == {"summary": "1 problem", "problems": [
        {"file": "w3.yaml", "line": 2, "col": 7, "path": "host", "message": "unknown host 'h9' (did you mean 'h1'?)",
         "text": "w3.yaml:2:7: error: host: unknown host 'h9' (did you mean 'h1'?)"},
    ]}
    stale = client.put("/v1/endpoints/web-2", json={"text": WEB_2, "expected_revision": 1})
    assert stale.status_code == 409 and "not at revision 1" in stale.json()["detail"]
    renamed = client.put("/v1/endpoints/web-2", json={"text": "{name: web-3, host: h1, network: blue}"})
    assert renamed.status_code == 422
    assert renamed.json()["detail"]["problems"][0]["text"] == (
        "endpoint.yaml:1:8: error: name: the endpoint to change is 'web-2', not 'web-3' (renaming is remove and add)"
    )
    moved = client.put("/v1/endpoints/web-2", json={"text": WEB_2.replace("h2", "h3")}).json()
    assert moved["endpoint"]["host"] == "h3" and moved["changed"] == ["h1", "h2", "h3"]  # h1: blue's FDB
    assert client.delete("/v1/endpoints/web-9").status_code == 404
    removed = client.delete("/v1/endpoints/web-2").json()
    assert removed["endpoint"] is None and removed["changed"] == ["h1", "h2", "h3"]
    assert client.get("/v1/spec").json()["spec"] == as_data(loads(SPEC, "three.yaml"))


def test_cli_endpoint_commands(client: httpx.Client, tmp_path: Path):  # noqa: F811
    put_spec(client)
    url = ["--controller", str(client.base_url).rstrip("/")]
    web_2 = tmp_path / "web-2.yaml"
    web_2.write_text(WEB_2)
    added = netvirt("endpoint", "add", str(web_2), *url)
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("endpoint web-2 on h2: blue 10.10.0.") and "2 changed (h1, h2)" in added.stdout
    listed = netvirt("endpoint", "list", *url)
    assert listed.exit_code == 0 and "- name: web-2" in listed.stdout and listed.stdout.startswith("# revision ")
    bad = tmp_path / "bad.yaml"
    bad.write_text(edited("h2", "h9", WEB_2))
    rejected = netvirt("endpoint", "change", "web-2", str(bad), *url)
    assert rejected.exit_code == 2
    assert rejected.stderr.splitlines() == [
        f"{bad}:2:7: error: host: unknown host 'h9' (did you mean 'h1'?)",
        "netvirt endpoint change: invalid spec, 1 problem; nothing was applied",
    ]
    again = netvirt("endpoint", "add", str(web_2), *url)
    assert again.exit_code == 1 and "already exists" in again.stderr
    removed = netvirt("endpoint", "remove", "web-2", *url)
    assert removed.exit_code == 0 and "2 changed (h1, h2)" in removed.stdout
    assert netvirt("endpoint", "remove", "web-2", *url).exit_code == 1
    assert [item_data(e) for e in loads(SPEC).endpoints] == client.get("/v1/endpoints").json()["endpoints"]
