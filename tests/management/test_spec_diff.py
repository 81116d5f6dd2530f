"""diff(old, new): what changed, object by object."""

from pathlib import Path

import yaml

from netvirt.management.spec import as_data, diff, load, loads
from netvirt.management.spec.dump import dump_data

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"


def edited(edit) -> tuple:
    old = load(QUICKSTART)
    data = yaml.safe_load(QUICKSTART.read_text())
    edit(data)
    return old, loads(dump_data(data))


def test_no_change_is_an_empty_diff():
    old = load(QUICKSTART)
    assert not diff(old, loads(QUICKSTART.read_text()))


def test_added_removed_changed_by_kind_and_name():
    def edit(data):
        data["endpoints"].append({"name": "web-3", "host": "host-b", "network": "blue", "listen": ["tcp/80"]})
        data["services"][0]["backends"].append("web-3")
        data["endpoints"] = [e for e in data["endpoints"] if e["name"] != "globex-2"]
        data["policies"][0]["default"] = "reject"

    old, new = edited(edit)
    changes = diff(old, new)
    assert changes.added == [("endpoints", "web-3")]
    assert changes.removed == [("endpoints", "globex-2")]
    assert changes.changed == [("policies", "blue-in"), ("services", "web")]
    assert changes.kinds() == {"endpoints", "policies", "services"}
    (change,) = [c for c in changes.changes if c.action == "changed" and c.kind == "services"]
    assert change.old.backends == ("web-1", "web-2") and change.new.backends == ("web-1", "web-2", "web-3")


def test_a_host_mtu_change_shows_on_every_network_it_moves():
    def edit(data):
        data["hosts"][1]["mtu"] = 9000
        data["hosts"][0]["mtu"] = 9000

    old, new = edited(edit)
    assert diff(old, new).changed == [
        ("hosts", "host-a"),
        ("hosts", "host-b"),
        ("networks", "blue"),
        ("networks", "green"),
        ("networks", "orange"),
    ]


def test_renaming_the_spec_changes_its_macs():
    old, new = edited(lambda data: data.update(name="quickstart-2"))
    changes = diff(old, new)
    assert ("spec", "name") in changes.changed
    pinned_mac_free = {e.name for e in old.endpoints}
    assert {name for kind, name in changes.changed if kind == "endpoints"} == pinned_mac_free
    assert as_data(new)["name"] == "quickstart-2"
