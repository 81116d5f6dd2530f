"""The import direction of DESIGN.md §2, enforced (docs/architecture.md explains the table)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "netvirt"

# plane -> the planes it may import. "management.spec" is the pure spec model, usable below the CLI.
ALLOWED = {
    "wire": set(),
    "management.spec": set(),
    "graph": {"wire"},
    "environments": {"graph", "wire", "management.spec"},
    "dataplane": {"graph", "wire"},
    "trace": {"dataplane", "graph", "environments", "wire", "management.spec"},
    "control": {"graph", "environments", "dataplane", "trace", "wire", "management.spec"},
    "management": {"wire", "graph", "environments", "dataplane", "trace", "control", "management.spec"},
}


def plane_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "netvirt" or len(parts) < 2 or parts[1] == "__main__":
        return None
    if parts[1:3] == ["management", "spec"]:
        return "management.spec"
    return parts[1]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_plane_is_known():
    planes = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert planes <= {name.split(".")[0] for name in ALLOWED}


def test_import_direction():
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        own = plane_of(module_name(path))
        if own is None:
            continue
        for imported in imports_of(path):
            other = plane_of(imported)
            if other is None or other == own or other in ALLOWED[own]:
                continue
            if own == "management.spec" or other.split(".")[0] != own.split(".")[0]:
                violations.append(f"{module_name(path)} imports {imported} ({own} -> {other})")
    assert not violations, "\n".join(violations)


def test_no_relative_imports_and_no_scapy_in_src():
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: use absolute imports"
        assert "scapy" not in imports_of(path) and not any(
            name.startswith("scapy") for name in imports_of(path)
        ), f"{path} imports scapy (GPL, test-only)"


def test_every_plane_states_its_contract():
    for init in SRC.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "ontract" in doc, f"{init} must open with a docstring stating its contract"


# The trace vocabulary (dataplane.events) is backend-neutral: trace never takes it from the simulator.
VOCABULARY = {"Action", "Disposition", "CAUSES", "Event", "Walk"}
# The building blocks of trace planning: only netvirt.trace.plan puts them together.
PLANNING = {"netvirt.trace.Flow", "netvirt.trace.Probe", "netvirt.trace.with_internet", "netvirt.trace.INTERNET",
            "netvirt.trace.reach", "netvirt.trace.run", "netvirt.trace.reachability.Probe",
            "netvirt.trace.reachability.reach", "netvirt.environments.build"}


def test_trace_takes_its_vocabulary_from_dataplane_events():
    violations = []
    for path in sorted((SRC / "trace").rglob("*.py")):
        for imported in imports_of(path):
            module, _, name = imported.rpartition(".")
            if module.startswith("netvirt.dataplane.sim") and name in VOCABULARY:
                violations.append(f"{module_name(path)} imports {name} from {module}: use netvirt.dataplane.events")
    assert not violations, "\n".join(violations)


def test_front_ends_do_not_plan_traces():
    """The CLI and the REST API parse, call ``netvirt.trace.plan`` and render (issue 11)."""
    violations = []
    for path in sorted((SRC / "management").rglob("*.py")):
        if plane_of(module_name(path)) != "management":
            continue
        found = {name for name in imports_of(path) if name in PLANNING or name.startswith("netvirt.trace.run.")}
        violations += [f"{module_name(path)} imports {name}: plan in netvirt.trace.plan" for name in sorted(found)]
    assert not violations, "\n".join(violations)


def dataplane_imports(plane: str) -> dict[str, set[str]]:
    """module -> the ``netvirt.dataplane`` modules (or names in them) it imports, for ``plane``."""
    found = {}
    for path in sorted((SRC / plane.replace(".", "/")).rglob("*.py")):
        found[module_name(path)] = {name for name in imports_of(path) if name.split(".")[:2] == ["netvirt", "dataplane"]}
    return found


def test_graph_imports_no_backend():
    assert not any(dataplane_imports("graph").values())


def test_trace_imports_no_concrete_backend():
    """trace observes through ``dataplane.api.Observer``; the simulator is its oracle, not a backend it drives."""
    allowed = ("netvirt.dataplane.api", "netvirt.dataplane.events", "netvirt.dataplane.registry",
               "netvirt.dataplane.sim")
    violations = [f"{module} imports {name}" for module, names in dataplane_imports("trace").items() for name in names
                  if name != "netvirt.dataplane" and not name.startswith(allowed)]
    assert not violations, "\n".join(violations)



def test_trace_builds_no_packets_with_the_simulator():
    """trace uses the simulator as its oracle only (``FlowCache``, ``Simulator``, ``Topology``): the frames
    it sends or predicts (probes, ARP requests, neighbour solicitations) come from ``netvirt.wire.builders``."""
    face = {"netvirt.dataplane.sim", "netvirt.dataplane.sim.FlowCache", "netvirt.dataplane.sim.Simulator",
            "netvirt.dataplane.sim.Topology"}
    violations = [f"{module} imports {name}" for module, names in dataplane_imports("trace").items() for name in names
                  if name.startswith("netvirt.dataplane.sim") and name not in face]
    assert not violations, "use netvirt.wire.builders:\n" + "\n".join(violations)

# Numbers the wire defines (IP protocols, EtherTypes): the data planes and the graph take them from netvirt.wire,
# which defines each once.
WIRE_NAMES = {"TCP", "UDP", "ICMP", "ICMPV6", "GRE", "ARP", "IPV4", "IPV6", "TRANSPARENT_ETHERNET_BRIDGING"}
ETHERTYPE_BYTES = {b"\x08\x00", b"\x86\xdd", b"\x08\x06"}


def wire_number_definitions(path: Path) -> list[tuple[int, list[str]]]:
    """(line, names) of each assignment of integer constants to a name of ``WIRE_NAMES`` (``_TCP`` counts too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple)):
            names = [t.id for target in node.targets for t in ast.walk(target) if isinstance(t, ast.Name)]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            numbers = all(isinstance(v, ast.Constant) and type(v.value) is int for v in values)
            if numbers and any(name.strip("_") in WIRE_NAMES for name in names):
                found.append((node.lineno, names))
    return found


def test_data_planes_and_graph_take_wire_numbers_from_wire():
    violations = []
    for path in sorted([*(SRC / "dataplane").rglob("*.py"), *(SRC / "graph").rglob("*.py")]):
        violations += [f"{module_name(path)}:{line} defines {', '.join(names)}"
                       for line, names in wire_number_definitions(path)]
        violations += [f"{module_name(path)}:{node.lineno} spells an EtherType as {node.value!r}"
                       for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.Constant) and node.value in ETHERTYPE_BYTES]
    assert not violations, "use netvirt.wire's constants:\n" + "\n".join(violations)


def test_wire_defines_each_number_once():
    """IP protocol numbers live in ``wire.ipv4``, EtherTypes in ``wire.ethernet``; other modules import them."""
    where: dict[str, list[str]] = {}
    for path in sorted((SRC / "wire").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for line, names in wire_number_definitions(path):
            for name in names:
                where.setdefault(name, []).append(f"{module_name(path)}:{line}")
        where.setdefault("PROTOCOL", []).extend(
            f"{module_name(path)}:{node.lineno}" for node in tree.body if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "PROTOCOL" for t in node.targets))
    twice = {name: places for name, places in where.items() if len(places) > 1 or (name == "PROTOCOL" and places)}
    assert not twice, f"defined more than once (or as PROTOCOL beside wire.ipv4's table): {twice}"


def test_graph_names_no_backend():
    """Which backend realises what is each backend's declaration (dataplane.registry), not graph data."""
    from netvirt.dataplane import registry

    backends = set(registry.names()) | {"ebpf", "userspace"}
    found = []
    for path in sorted((SRC / "graph").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in backends:
                found.append(f"{module_name(path)}:{node.lineno} names backend {node.value!r}")
    assert not found, "\n".join(found)
