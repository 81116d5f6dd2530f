"""docs/graph.md stays true: its example JSON loads and validates, its kind table is KINDS."""

import re
from pathlib import Path

from netvirt.graph import KINDS, HostGraph, from_json, to_json, validate

DOC = (Path(__file__).resolve().parents[2] / "docs" / "graph.md").read_text()


def test_example_json_loads_and_validates():
    block = re.search(r"```json\n(.*?)```", DOC, re.S).group(1)
    graph = from_json(HostGraph, block)
    assert validate(graph) == []
    assert [d.name for d in graph.devices_in("web")] == ["eth0", "http"]
    assert from_json(HostGraph, to_json(graph)) == graph


def test_kind_table_is_the_kinds_table():
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (.+?) \| (.+?) \| (.+?) \|$", DOC, re.M)
    documented = {kind: (mode, level, technique, config) for kind, mode, level, technique, config in rows}
    actual = {
        kind.value: (
            info.mode.value,
            info.level,
            info.technique,
            info.config.__name__ if info.config else "—",
        )
        for kind, info in KINDS.items()
    }
    assert documented == actual
