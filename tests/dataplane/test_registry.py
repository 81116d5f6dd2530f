"""The backend registry: the one list of backends, what each declares, and what derives from it."""

import re
from pathlib import Path

import pytest

from netvirt.dataplane import registry
from netvirt.dataplane.sim.backend import SimBackend
from netvirt.management.cli.choices import BackendName

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def rendered_table() -> str:
    return "\n".join(f"| {what} | {', '.join(names) or '-'} |" for what, names in registry.table())


def test_every_registered_backend_is_made_by_name_and_declares_what_it_realises():
    assert registry.names()[:2] == ("sim", "linux")
    for name in registry.names():
        cls = registry.backend_class(name)
        assert cls.name == name and registry.declared(name).backend == name
    backend = registry.make("sim", "h1")
    assert isinstance(backend, SimBackend) and backend.host == "h1"


def test_an_unknown_name_says_which_ones_exist():
    with pytest.raises(ValueError, match="unknown backend 'ovs'; choose one of sim, linux"):
        registry.make("ovs", "h1")


def test_the_cli_choices_are_the_registered_names():
    assert [choice.value for choice in BackendName] == list(registry.names())


def test_only_backends_with_an_observer_can_be_verified():
    assert "linux" in registry.observable() and "sim" not in registry.observable()
    with pytest.raises(ValueError, match="backend 'sim' has no observer; observable: linux"):
        registry.observer("sim", "quickstart")


def test_the_docs_table_is_the_registry():
    text = DOC.read_text()
    found = re.search(r"<!-- backend-table -->\n\| what \| backends \|\n\| --- \| --- \|\n(.*?)\n?<!-- /backend-table -->",
                      text, re.S)
    assert found, "docs/architecture.md lost its backend table markers"
    assert found.group(1).strip() == rendered_table(), "regenerate the table: python -m tests.dataplane.test_registry"


if __name__ == "__main__":  # rewrite the table in docs/architecture.md
    head, rest = DOC.read_text().split("<!-- backend-table -->\n", 1)
    _, tail = rest.split("<!-- /backend-table -->", 1)
    DOC.write_text(f"{head}<!-- backend-table -->\n| what | backends |\n| --- | --- |\n{rendered_table()}\n"
                   f"<!-- /backend-table -->{tail}")
