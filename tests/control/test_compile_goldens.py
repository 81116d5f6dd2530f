"""Golden graphs of the examples: the compiled JSON, one file per host plus the segments.

Regenerate after an intended change, then review the diff (docs/control-plane.md, "Goldens"):
    NETVIRT_REGEN_GOLDENS=1 ./scripts/test tests/control/test_compile_goldens.py
"""

import json
import os
from pathlib import Path

import pytest

from netvirt.control.compile import compile_network
from netvirt.graph import HostGraph, Segment, from_json, to_json, validate
from netvirt.management.spec import load

ROOT = Path(__file__).resolve().parents[2]
GOLDENS = Path(__file__).parent / "goldens"
EXAMPLES = ["quickstart"]
REGENERATE = os.environ.get("NETVIRT_REGEN_GOLDENS") == "1"


def golden_files(name: str) -> dict[str, str]:
    """file name -> JSON text of the compiled example (indented, so diffs are reviewable)."""
    net = compile_network(load(ROOT / "examples" / f"{name}.yaml"))
    assert validate(net) == []
    files = {f"{host.host}.json": to_json(host, indent=1) + "\n" for host in net.hosts}
    files["segments.json"] = json.dumps([json.loads(to_json(s)) for s in net.segments], indent=1) + "\n"
    return files


@pytest.mark.parametrize("name", EXAMPLES)
def test_compiled_example_matches_its_goldens(name):
    files = golden_files(name)
    folder = GOLDENS / name
    if REGENERATE:
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(p.name for p in folder.glob("*.json")) - set(files):
            (folder / stale).unlink()
        for file, text in files.items():
            (folder / file).write_text(text)
    stored = {p.name: p.read_text() for p in folder.glob("*.json")}
    assert sorted(stored) == sorted(files), "hosts differ from the goldens; regenerate (see the module docstring)"
    for file, text in files.items():
        assert stored[file] == text, f"{name}/{file} differs from the golden; regenerate and review the diff"


@pytest.mark.parametrize("name", EXAMPLES)
def test_goldens_decode_to_valid_graphs(name):
    for path in sorted((GOLDENS / name).glob("*.json")):
        if path.name == "segments.json":
            segments = [from_json(Segment, json.dumps(item)) for item in json.loads(path.read_text())]
            assert segments and segments[0].name == "underlay"
        else:
            graph = from_json(HostGraph, path.read_text())
            assert graph.host == path.stem and validate(graph) == []


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_compiles_to_a_valid_network(path):
    net = compile_network(load(path))
    assert net.hosts and validate(net) == []
