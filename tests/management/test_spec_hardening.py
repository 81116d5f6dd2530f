"""The spec loader against hostile input: tags, lone surrogates, expansion and size limits, every
problem of a broken item, near names; and a fuzz test of mutated spec text."""

import json
import time
from pathlib import Path

import pytest
import yaml
from fuzz_budget import fuzz
from hypothesis import given
from hypothesis import strategies as st

from netvirt.management.spec import SpecError, load, loads
from netvirt.management.spec.source import MAX_BYTES, MAX_NODES

QUICKSTART = (Path(__file__).parents[2] / "examples" / "quickstart.yaml").read_text()
SMALL = """hosts: [{name: h1, underlay: 192.0.2.1/24}]
networks: [{name: blue, subnet: 10.0.0.0/24}]
endpoints:
  - {name: e1, host: h1, network: blue}
"""


def problems(text: str, filename: str = "spec.yaml") -> list[str]:
    with pytest.raises(SpecError) as raised:
        loads(text, filename)
    return [str(problem) for problem in raised.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: !!bool maybe\n", "spec.yaml:1:7: error: 'maybe' is not a valid bool"),
        ("name: !!null x\n", "spec.yaml:1:7: error: 'x' is not a valid null"),
        ("name: !!timestamp x\n", "spec.yaml:1:7: error: 'x' is not a valid timestamp"),
        ("name: !custom x\n", "spec.yaml:1:7: error: unsupported YAML tag '!custom'"),
        ("hosts: !custom [{name: a}]\n", "spec.yaml:1:8: error: unsupported YAML tag '!custom' on a list"),
        ("hosts: !!set {a, b}\n", "spec.yaml:1:8: error: unsupported YAML tag 'tag:yaml.org,2002:set' on a mapping"),
        ("hosts: !!seq {a: b}\n", "spec.yaml:1:8: error: unsupported YAML tag 'tag:yaml.org,2002:seq' on a mapping"),
        (
            "hosts: !!python/object:os.system {}\n",
            "spec.yaml:1:8: error: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system' on a mapping",
        ),
        ("!k name: x\n", "spec.yaml:1:1: error: unsupported YAML tag '!k'"),
    ],
)
def test_only_standard_scalar_tags_matching_their_value(text, expected):
    assert problems(text) == [expected]


def test_standard_tags_that_match_are_fine():
    assert loads("name: !!str 5\nhosts: !!seq [{name: !!str h, underlay: 192.0.2.1/24, mtu: !!int 1500}]\n").name == "5"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"\\ud800": 1}', "spec.json:1:2: error: \ufffd: key with a lone surrogate (U+D800): not Unicode text"),
        ('{"name": "a\\udc00"}', "spec.json:1:10: error: name: text with a lone surrogate (U+DC00): not Unicode text"),
        ('{"name": "\ud800"}', "spec.json:1:10: error: name: text with a lone surrogate (U+D800): not Unicode text"),
    ],
)
def test_lone_surrogates_are_located_problems(text, expected):
    assert problems(text, "spec.json") == [expected]


def test_surrogates_leave_the_other_problems_located():
    text = '{"name": "x",\n "hosts": [{"name": "\\ud83d\\ude00", "underlay": "192.0.2.1/24"}, {"name": "a\\ud800"}]}'
    found = problems(text, "spec.json")
    assert found[0].startswith("spec.json:2:21: error: hosts[0].name: '\U0001f600' is not a valid name")
    assert found[1:] == [
        "spec.json:2:66: error: hosts[1]: missing required key 'underlay'",
        "spec.json:2:75: error: hosts[1].name: text with a lone surrogate (U+D800): not Unicode text",
    ]
    assert problems('name: "\ud800"\n') == ["spec.yaml:1:8: error: lone surrogate U+D800: not Unicode text"]
    assert "invalid Unicode character escape" in problems('name: "\\ud800"\n')[0]


def wide_aliases(width: int, depth: int) -> str:
    """A few hundred bytes that expand to width**depth values."""
    lines = ["x-0: &a0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"x-{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


def wide_merges(width: int, depth: int) -> str:
    lines = ["x-0: &m0 {" + ", ".join(f"k{j}: v" for j in range(width)) + "}"]
    for i in range(1, depth):
        keys = ", ".join(f"k{j}: *m{i - 1}" for j in range(width))
        lines.append(f"x-{i}: &m{i} {{<<: *m{i - 1}, {keys}}}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text", [wide_aliases(40, 6), wide_merges(40, 6)], ids=["aliases", "merge-keys"])
def test_expansion_counts_every_value(text):
    started = time.monotonic()
    found = problems(text)
    assert len(found) == 1 and f"more than {MAX_NODES:,} values once aliases and merge keys are expanded" in found[0]
    assert time.monotonic() - started < 30  # a bound against hanging, not a benchmark


def test_size_limits(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("w") as file:
        file.write("x-pad: '")
        file.truncate(MAX_BYTES + 1)
    with pytest.raises(SpecError) as raised:
        load(big)
    assert [str(p) for p in raised.value.problems] == [
        f"{big}: error: {MAX_BYTES + 1:,} bytes is more than a spec may have ({MAX_BYTES:,}): "
        "split it into a directory of files"
    ]
    assert "is more than a spec may have" in problems("x" * (MAX_BYTES + 1))[0]
    dense = "x-a: [" + "1," * (MAX_NODES + 1) + "]\n"  # too many values, found before they are built
    assert problems(dense) == [f"spec.yaml: error: more than {MAX_NODES:,} values ({MAX_NODES + 2:,} lines and commas)"]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            "{name: e2, host: h9, network: bleu, colour: red}",
            [
                "5:22: error: endpoints[1].host: unknown host 'h9' (did you mean 'h1'?)",
                "5:35: error: endpoints[1].network: unknown network 'bleu' (did you mean 'blue'?)",
                "5:41: error: endpoints[1].colour: unknown key 'colour'",
            ],
        ),
        (
            "{name: E3, host: h1, network: blue, attachments: [{network: blue}]}",
            [
                "5:12: error: endpoints[1].name: 'E3' is not a valid name: use lowercase letters, digits and '-', "
                "starting and ending with a letter or digit, at most 63 characters",
                "5:26: error: endpoints[1].network: use either the short form (network: beside the name) "
                "or attachments:, not both",
            ],
        ),
        (
            "{name: e4, host: h1, attachments: [{network: bleu, ip: 10.0.0.300}]}",
            [
                "5:50: error: endpoints[1].attachments[0].network: unknown network 'bleu' (did you mean 'blue'?)",
                "5:60: error: endpoints[1].attachments[0].ip: '10.0.0.300' is not an IP address "
                "(expected e.g. 10.0.0.5 or fd00::5)",
            ],
        ),
    ],
)
def test_every_problem_of_a_broken_item_at_once(item, expected):
    assert problems(SMALL + f"  - {item}\n") == [f"spec.yaml:{line}" for line in expected]


def test_did_you_mean_finds_names_one_edit_away():
    text = SMALL.replace("h1", "e1").replace("host: e1, network: blue}", "host: e9, network: blue}")
    assert problems(text) == ["spec.yaml:4:22: error: endpoints[0].host: unknown host 'e9' (did you mean 'e1'?)"]


# --- fuzz: mutated spec text ---------------------------------------------------------------------

PIECES = ["&a ", "*a", "<<: ", "!!bool ", "!!set ", "!x ", "{", "}", "[", "]", ": ", ", ", "- ", "\n", "  ", "#"]
PIECES += ["'", '"', "\\ud800", "\\u00e9", "|", ">", "~", "0x1f", "1e9", "-1", "::", "yes", "\t", "%", "@", "\ufeff"]


def assert_located(text: str, filename: str) -> None:
    try:
        loads(text, filename)
    except SpecError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.line >= 1 and problem.col >= 1 and problem.message, str(problem)
            str(problem).encode()  # printable as UTF-8


@st.composite
def mutated(draw, text: str) -> str:
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "repeat"]))
        piece = draw(st.sampled_from(PIECES) | st.text(max_size=3))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif action == "replace":
            text = text[:at] + piece + text[at + len(piece) :]
        else:
            end = min(len(text), at + draw(st.integers(1, 80)))
            text = text[:at] + text[at:end] * draw(st.integers(2, 5)) + text[end:]
    return text


QUICKSTART_JSON = json.dumps(yaml.safe_load(QUICKSTART), indent=1, default=str)


@fuzz(1000)
@given(mutated(QUICKSTART))
def test_mutated_yaml_text_gives_only_located_problems(text):
    assert_located(text, "fuzz.yaml")


@fuzz(600)
@given(mutated(QUICKSTART_JSON))
def test_mutated_json_text_gives_only_located_problems(text):
    assert_located(text, "fuzz.json")
