"""Kernel names of device graphs (no kernel needed): graph namespaces, segments, deployments, and
rule digests that are the same in every process."""

import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvirt.dataplane.kernel.naming import NameError_, Names, deployment_name
from netvirt.dataplane.linux.readback import graph_place, is_segment, segment_port
from netvirt.dataplane.kernel.rulesets import rule_digest
from netvirt.graph import ACCEPT, CtState, Match, Rule

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)  # RFC 1123 labels, as in specs
NAMES = Names("quickstart")


def test_graph_namespaces_are_named_after_their_host():
    assert NAMES.graph_namespace("host-a", "host-a") == "nv-quickstart-host-a"
    assert NAMES.graph_namespace("host-a", "web-1") == "nv-quickstart-host-a.web-1"
    assert NAMES.segment_namespace("underlay") == "nv-quickstart-_underlay"
    with pytest.raises(NameError_, match="host name 'a.b'"):
        NAMES.graph_namespace("a.b", "x")


@settings(max_examples=200)
@given(host=LABEL, other=LABEL, namespace=LABEL, segment=LABEL)
def test_hosts_segments_and_namespaces_never_collide(host, other, namespace, segment):
    mine = [NAMES.graph_namespace(host, host), NAMES.graph_namespace(host, namespace)]
    assert NAMES.segment_namespace(segment) not in mine
    assert all(graph_place(NAMES, name)[0] == host for name in mine)
    assert graph_place(NAMES, NAMES.graph_namespace(host, namespace)) == (host, namespace)
    assert is_segment(NAMES, NAMES.segment_namespace(segment)) and not any(is_segment(NAMES, n) for n in mine)
    theirs = NAMES.graph_namespace(other, namespace)
    assert NAMES.host_namespaces(host, [*mine, theirs]) == mine + ([theirs] if other == host else [])
    assert len(segment_port(NAMES, host, namespace, "eth0")) <= 15


@settings(max_examples=200)
@given(a=LABEL, b=LABEL)
def test_deployment_names_are_valid_and_one_to_one(a, b):
    Names(deployment_name(a))  # accepted by the naming scheme
    assert len(deployment_name(a)) <= 32
    assert (deployment_name(a) == deployment_name(b)) == (a == b)


def test_deployment_name_of_a_long_spec_name():
    long = "a-very-long-spec-name-that-goes-on-and-on-and-on"
    assert len(deployment_name(long)) == 32 and deployment_name(long).startswith("a_very_long_spec_name_that")


def test_rule_digests_do_not_depend_on_set_order_or_the_process():
    """Rules carry their digest in the kernel; another process (another hash seed) must compute
    the same one, or `status` would report drift right after `up`."""
    rule = Rule(match=Match(ct_states=frozenset({CtState.ESTABLISHED, CtState.RELATED, CtState.NEW})), action=ACCEPT)
    here = rule_digest("filter", "input", 1, rule)
    code = ("from netvirt.dataplane.kernel.rulesets import rule_digest;"
            "from netvirt.graph import ACCEPT, CtState, Match, Rule;"
            "print(rule_digest('filter', 'input', 1, Rule(match=Match(ct_states=frozenset("
            "{CtState.NEW, CtState.RELATED, CtState.ESTABLISHED})), action=ACCEPT)))")
    for seed in ("1", "2", "3"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed})
        assert done.stdout.strip() == here
