"""Namespace names: spec validation refuses exactly the specs whose namespaces would clash on a
host, so every valid spec compiles (docs/control-plane.md, "Names")."""

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.control.compile import CompileError, compile_network
from netvirt.management.spec import SpecError, loads
from netvirt.management.spec.analyze import Analysis

NAMES = ["a", "b", "c"]  # hosts, routers and endpoints share this pool, so their names meet
NETWORKS = ["n1", "n2", "n3"]


@st.composite
def specs(draw) -> str:
    hosts = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    routers = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    owner = {network: draw(st.sampled_from([None, *routers])) for network in NETWORKS}
    endpoints = draw(st.lists(st.sampled_from(NAMES), max_size=3, unique=True))
    data = {
        "name": "names",
        "hosts": [{"name": host, "underlay": f"192.0.2.{10 + i}/24"} for i, host in enumerate(hosts)],
        "networks": [{"name": network, "subnet": f"10.{i}.0.0/24"} for i, network in enumerate(NETWORKS)],
        "routers": [{"name": r, "networks": [n for n in NETWORKS if owner[n] == r]} for r in routers
                    if any(owner[n] == r for n in NETWORKS)],
        "endpoints": [
            {"name": name, "kind": draw(st.sampled_from(["container", "vm", "pod", "host"])),
             "host": draw(st.sampled_from(hosts)), "network": draw(st.sampled_from(NETWORKS))}
            for name in endpoints
        ],
    }
    return yaml.safe_dump(data)


@settings(max_examples=150, deadline=None)
@given(specs())
def test_validation_refuses_exactly_what_the_compiler_cannot_name(text):
    try:
        spec = loads(text)
    except SpecError as error:
        assert all("network namespace" in problem.message for problem in error.problems), error
        refused = True
    else:
        compile_network(spec)  # every valid spec compiles
        refused = False
    with pytest.MonkeyPatch.context() as patch:  # the same spec without the namespace check
        patch.setattr(Analysis, "namespaces", lambda self: None)
        unchecked = loads(text)
    try:
        compile_network(unchecked)
    except CompileError as error:
        assert "would both be namespace" in str(error)
        assert refused, f"valid spec does not compile: {error}"
    else:
        assert not refused, "validation refused a spec the compiler can build"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            """
            hosts: [{name: a, underlay: 192.0.2.10/24}]
            networks: [{name: n, subnet: 10.0.0.0/24}]
            endpoints: [{name: a, host: a, network: n}]
            """,
            "endpoints[0].name: endpoint 'a' is named like its host: both would be network namespace 'a'",
        ),
        (
            """
            hosts: [{name: a, underlay: 192.0.2.10/24}]
            networks: [{name: n, subnet: 10.0.0.0/24}]
            routers: [{name: a, networks: [n]}]
            endpoints: [{name: e, kind: host, host: a, network: n}]
            """,
            "routers[0].name: router 'a' is named like host 'a', where it runs (endpoint 'e' is there)",
        ),
        (
            """
            hosts: [{name: a, underlay: 192.0.2.10/24}, {name: b, underlay: 192.0.2.11/24}]
            networks: [{name: n, subnet: 10.0.0.0/24}, {name: m, subnet: 10.1.0.0/24}]
            routers: [{name: r, networks: [n]}]
            endpoints: [{name: e, host: b, network: n}, {name: r, host: b, network: m}]
            """,
            "routers[0].name: router 'r' and endpoint 'r' (on line 5) would both be network namespace 'r' on host 'b'",
        ),
    ],
)
def test_clashes_are_located_with_a_fix(text, message):
    with pytest.raises(SpecError) as raised:
        loads(text.replace("\n            ", "\n"))
    assert [problem.path + ": " + problem.message for problem in raised.value.problems][0].startswith(message)
    assert "rename" in raised.value.problems[0].message


@pytest.mark.parametrize(
    "text",
    [
        # a kind: host endpoint lives in the host's own namespace: its name may be the host's
        """
        hosts: [{name: a, underlay: 192.0.2.10/24}]
        networks: [{name: n, subnet: 10.0.0.0/24}]
        endpoints: [{name: a, kind: host, host: a, network: n}]
        """,
        # the router is not on host b (none of its networks has an endpoint there)
        """
        hosts: [{name: a, underlay: 192.0.2.10/24}, {name: b, underlay: 192.0.2.11/24}]
        networks: [{name: n, subnet: 10.0.0.0/24}, {name: m, subnet: 10.1.0.0/24}]
        routers: [{name: r, networks: [n]}]
        endpoints: [{name: e, host: a, network: n}, {name: r, host: b, network: m}]
        """,
    ],
)
def test_names_that_do_not_meet_on_a_host_are_fine(text):
    compile_network(loads(text.replace("\n        ", "\n")))
