"""Loading: YAML and JSON, directories, positions, and every way a file can be broken."""

import json
import textwrap

import pytest
from pydantic import ValidationError

from netvirt.management.spec import Problem, SpecError, load, loads
from netvirt.management.spec.source import MAX_DEPTH

VALID = textwrap.dedent(
    """\
    name: small
    hosts:
      - {name: host-a, underlay: 192.0.2.10/24}
    networks:
      - {name: blue, subnet: 10.0.0.0/24}
    endpoints:
      - {name: web-1, host: host-a, network: blue, listen: [tcp/80]}
    """
)


def problems(text: str, filename: str = "spec.yaml") -> list[str]:
    with pytest.raises(SpecError) as raised:
        loads(text, filename)
    return [str(problem) for problem in raised.value.problems]


def test_problem_format():
    assert str(Problem("q.yaml", 14, 7, "endpoints[2].network", "unknown network 'bleu'")) == (
        "q.yaml:14:7: error: endpoints[2].network: unknown network 'bleu'"
    )
    assert str(Problem("q.yaml", 0, 0, "", "no such file or directory")) == "q.yaml: error: no such file or directory"
    error = SpecError([Problem("b", 2, 1, "", "x"), Problem("a", 9, 1, "", "y"), Problem("b", 1, 5, "", "z")])
    assert [(p.file, p.line) for p in error.problems] == [("a", 9), ("b", 1), ("b", 2)]
    assert error.summary == "3 problems" and str(error).count("\n") == 2


def test_yaml_and_json_give_the_same_spec(tmp_path):
    spec = loads(VALID, "small.yaml")
    as_json = json.dumps(
        {
            "name": "small",
            "hosts": [{"name": "host-a", "underlay": "192.0.2.10/24"}],
            "networks": [{"name": "blue", "subnet": "10.0.0.0/24"}],
            "endpoints": [{"name": "web-1", "host": "host-a", "network": "blue", "listen": ["tcp/80"]}],
        },
        indent="\t",  # tabs: fine for JSON, which YAML would not accept as indentation
    )
    (tmp_path / "small.json").write_text(as_json)
    assert load(tmp_path / "small.json") == spec == loads(as_json, "small.json")


def test_json_problems_have_positions():
    text = (
        '{\n  "name": "j",\n  "hosts": [\n    {"name": "host-a", "underlay": "192.0.2.10/24", "nic": "fibre"}\n  ]\n}\n'
    )
    assert problems(text, "spec.json") == [
        "spec.json:4:60: error: hosts[0].nic: 'fibre' is not one of physical, virtio, sriov-vf, e1000, vmxnet3, netvsc"
    ]
    assert problems('{"name": "j", "name": "k"}', "spec.json") == [
        "spec.json:1:15: error: duplicate key 'name' (first on line 1)"
    ]


def test_the_name_defaults_to_the_file_name(tmp_path):
    (tmp_path / "My Lab.yaml").write_text("hosts: []\n")
    assert load(tmp_path / "My Lab.yaml").name == "my-lab"
    assert loads("").name == "spec"


def test_a_directory_is_merged_by_top_level_lists(tmp_path):
    (tmp_path / "10-underlay.yaml").write_text("name: lab\nhosts:\n  - {name: host-a, underlay: 192.0.2.10/24}\n")
    (tmp_path / "20-overlay.json").write_text(json.dumps({"networks": [{"name": "blue", "subnet": "10.0.0.0/24"}]}))
    (tmp_path / "30-apps.yml").write_text("name: lab\nendpoints:\n  - {name: web-1, host: host-a, network: blue}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    spec = load(tmp_path)
    assert spec.name == "lab"
    assert [e.name for e in spec.endpoints] == ["web-1"] and spec.endpoints[0].attachments[0].ip is not None
    assert spec == loads(VALID.replace("small", "lab").replace(", listen: [tcp/80]", ""))


def test_files_that_cannot_be_read(tmp_path):
    with pytest.raises(SpecError, match="no such file or directory"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match=r"no spec files \(\*.yaml, \*.yml, \*.json\) here"):
        load(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin1.yaml: error: not UTF-8 text"):
        load(tmp_path / "latin1.yaml")


def test_yaml_features_that_help_and_their_limits():
    text = textwrap.dedent(
        """\
        name: anchors
        x-host: &host {mtu: 9000, nic: virtio}
        hosts:
          - {<<: *host, name: host-a, underlay: 192.0.2.10/24}
          - {<<: *host, name: host-b, underlay: 192.0.2.11/24, mtu: 1500}
        networks:
          - {name: blue, subnet: 10.0.0.0/24}
        endpoints:
          - {name: web-1, host: host-a, network: blue, mac: 12:34:56:10:20:30}
        """
    )
    spec = loads(text)
    assert [(h.mtu, h.nic) for h in spec.hosts] == [(9000, "virtio"), (1500, "virtio")]
    assert spec.endpoints[0].attachments[0].mac == "12:34:56:10:20:30"  # not a YAML 1.1 base-60 number


def test_broken_yaml_is_a_problem_with_its_position():
    assert problems("name: x\nhosts: [a,\n  b: c: d]\n") == [
        "spec.yaml:3:7: error: invalid YAML: while parsing a flow sequence (from 2:8), did not find expected ',' or ']'"
    ]
    assert problems("name: x\nhosts: [\n  {name: a}\n") == [
        "spec.yaml:4:1: error: invalid YAML: while parsing a flow sequence (from 2:8), did not find expected ',' or ']'"
    ]
    assert problems("name: x\n---\nname: y\n") == [
        "spec.yaml:2:1: error: invalid YAML: expected a single document in the stream (from 1:1), "
        "but found another document"
    ]
    assert problems("name: a\nname: b\n") == ["spec.yaml:2:1: error: duplicate key 'name' (first on line 1)"]


def test_nesting_and_alias_bombs_are_refused_quickly():
    assert problems("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))[0].endswith(
        f"nesting deeper than {MAX_DEPTH} levels"
    )
    assert "nesting deeper" in problems("a: &x [*x]")[0]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(9)
    )
    assert "alias bomb" in problems(bomb)[0]


def test_structure_problems_do_not_cascade():
    text = VALID.replace("{name: blue, subnet: 10.0.0.0/24}", "{name: blue, subnet: 10.0.0.0/24, encap: vxlan2}")
    # the network is invalid; the endpoint that references it gets no "unknown network" on top
    assert problems(text) == [
        "spec.yaml:5:46: error: networks[0].encap: "
        "'vxlan2' is not one of vxlan, geneve, nvgre, none (did you mean 'vxlan'?)"
    ]


def test_short_form_problems_are_reported_at_the_endpoints_own_keys():
    text = VALID.replace("network: blue, listen", "network: blue, ip: 10.0.9.9, listen")
    assert problems(text) == [
        "spec.yaml:7:52: error: endpoints[0].ip: 10.0.9.9 is outside network 'blue' subnet 10.0.0.0/24"
    ]
    long_form = VALID.replace("network: blue, listen", "attachments: [{network: blue, ip: 10.0.9.9}], listen")
    assert problems(long_form) == [
        "spec.yaml:7:67: error: endpoints[0].attachments[0].ip: 10.0.9.9 is outside network 'blue' subnet 10.0.0.0/24"
    ]


def test_loaded_specs_are_immutable():
    spec = loads(VALID)
    with pytest.raises(ValidationError, match="frozen"):
        spec.hosts[0].mtu = 9000  # type: ignore[misc]
    assert spec.endpoint("web-1").host == "host-a" and spec.host("host-a").mtu == 1500
    assert spec.model_copy(update={"endpoints": ()}).index["endpoints"] == {}
