"""Exact ownership: cleanup removes what netvirt made — also after kill -9 in the middle of a
build — and nothing else (a foreign namespace, its links, tables and chains survive)."""

import os
import signal
import subprocess
import sys
import time
from ipaddress import ip_network

import pytest
from linux_testbed import deployment, new_deployment  # noqa: F401 (fixture)

from netvirt.dataplane.kernel import iptables, links, netns, nftables
from netvirt.dataplane.kernel.cleanup import cleanup, cleanup_all, unrecorded
from netvirt.dataplane.kernel.naming import TEST_PREFIX
from netvirt.dataplane.kernel.ownership import (
    OwnedLink,
    OwnedNamespace,
    Record,
    RecordError,
    journal_path,
    read_journal,
)
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.graph.rules import DROP, Chain, Match, NetfilterHook, Rule

RULES = Ruleset(filter=[Chain(hook=NetfilterHook.INPUT, rules=(
    Rule(match=Match(src=ip_network("203.0.113.0/24")), action=DROP),))])


@pytest.fixture
def foreign():
    """A namespace netvirt does not own, with its own veth pair, nftables table and iptables chain."""
    name = f"{TEST_PREFIX}-foreign-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    netns.ensure(name)
    try:
        ipr = netns.netlink(name)
        ipr.link("add", ifname="fx0", kind="veth", peer="fx1")
        ipr.close()
        netns.run(name, ["nft", "add", "table", "inet", "foreign"])
        netns.run(name, ["iptables", "-N", "FOREIGN"])
        yield name
    finally:
        netns.remove(name)


def foreign_state(name):
    ipr = netns.netlink(name)
    try:
        link_names = {msg.get("IFLA_IFNAME") for msg in ipr.get_links()}
    finally:
        ipr.close()
    chains = iptables.read(name, 4).chains("filter") | iptables.read(name, 6).chains("filter")
    return link_names, set(nftables.tables(name)), chains


def test_cleanup_removes_exactly_what_netvirt_made(deployment, foreign):
    before = foreign_state(foreign)
    names = deployment.names
    with deployment.builder() as build:
        mine = build.namespace("a")
        build.veth(mine, "eth0", foreign, names.link(foreign, "uplink"))
        build.nftables(foreign, RULES)
        build.iptables(foreign, RULES)
    links_now, tables_now, chains_now = foreign_state(foreign)
    assert names.link(foreign, "uplink") in links_now
    assert ("inet", names.nft_table) in tables_now and names.ipt_chain("INPUT") in chains_now

    report = cleanup(names, deployment.state_dir)

    assert foreign_state(foreign) == before  # the foreign namespace is exactly as it was
    assert netns.exists(foreign) and not netns.exists(mine)
    assert OwnedNamespace(mine) in report.removed and not report.refused
    assert not journal_path(names, deployment.state_dir).exists()
    assert cleanup(names, deployment.state_dir).removed == []  # again: nothing left to do


def test_cleanup_leaves_an_unrecorded_lookalike_alone(deployment):
    lookalike = deployment.names.namespace("not-recorded")
    netns.ensure(lookalike)  # named like netvirt's, but no record lists it
    try:
        with deployment.builder() as build:
            build.namespace("real")
        found = unrecorded(TEST_PREFIX, deployment.state_dir)
        assert lookalike in found and deployment.names.namespace("real") not in found
        cleanup_all(deployment.state_dir)
        assert netns.exists(lookalike)
        assert not netns.exists(deployment.names.namespace("real"))
    finally:
        netns.remove(lookalike)


def test_a_link_replaced_by_someone_else_is_not_removed(deployment, foreign):
    """Cleanup deletes a recorded link in a foreign namespace only if it is still the kind it
    recorded: a different device that took the name is not netvirt's."""
    names = deployment.names
    link = names.link(foreign, "uplink")
    with deployment.builder() as build:
        mine = build.namespace("a")
        build.veth(mine, "eth0", foreign, link)
    ipr = netns.netlink(foreign)
    try:
        links.delete(ipr, link)
        ipr.link("add", ifname=link, kind="bridge")  # someone else's device, same name
        report = cleanup(names, deployment.state_dir)
        assert links.find(ipr, link) is not None
        assert OwnedLink(foreign, link, "veth") in report.already_gone
    finally:
        ipr.close()


BUILD_FOREVER = """
import sys
from pathlib import Path
from netvirt.dataplane.kernel.build import Builder
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.rulesets import Ruleset
from netvirt.graph.rules import DROP, Chain, NetfilterHook, Rule
deployment, state_dir, foreign = sys.argv[1:4]
names = Names(deployment, "nvt")
rules = Ruleset(filter=[Chain(hook=NetfilterHook.FORWARD, rules=(Rule(action=DROP),))])
with Builder(names, Path(state_dir)) as build:
    build.nftables(foreign, rules)
    build.iptables(foreign, rules)
    for number in range(10_000):
        ns = build.namespace(f"n{number}")
        build.bridge(ns, "br0")
        build.veth(ns, "eth0", foreign, names.link(foreign, f"n{number}"))
        build.nftables(ns, rules)
        print(number, flush=True)
"""


def test_kill_9_in_the_middle_of_a_build_then_cleanup_leaves_nothing(tmp_path, foreign):
    dep = new_deployment(tmp_path)
    before = foreign_state(foreign)
    child = subprocess.Popen([sys.executable, "-c", BUILD_FOREVER, dep.names.deployment, str(tmp_path), foreign],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(8):  # let it get well into the build
            assert child.stdout.readline(), child.stderr.read().decode()
        time.sleep(0.05)  # ... and into the middle of the next object
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    recorded = read_journal(journal_path(dep.names, tmp_path))
    assert len([obj for obj in recorded if isinstance(obj, OwnedNamespace)]) >= 8
    assert dep.namespaces()  # the crash left real objects behind

    cleanup(dep.names, tmp_path)

    assert dep.namespaces() == []
    assert foreign_state(foreign) == before  # its veth ends, table and chains are gone; the rest stayed
    assert all(not name.startswith(f"{dep.names.prefix}-") for name in foreign_state(foreign)[0])
    assert not journal_path(dep.names, tmp_path).exists()


def test_record_is_written_before_objects_and_survives_torn_writes(deployment):
    names = deployment.names
    with deployment.builder() as build:
        build.namespace("a")
    path = journal_path(names, deployment.state_dir)
    with path.open("a") as journal:  # a crash in the middle of writing the next line
        journal.write('{"type": "namespace", "na')
    assert read_journal(path) == [OwnedNamespace(names.namespace("a"))]
    with deployment.builder() as build:  # the next build goes on from there
        build.namespace("b")
    assert netns.exists(names.namespace("b"))


def test_the_record_lock_keeps_two_builders_apart(deployment):
    with deployment.builder():
        with pytest.raises(RecordError, match="another netvirt process"):
            with Record(deployment.names, deployment.state_dir, lock_timeout=0.2):
                pass


def test_recording_an_object_without_netvirt_marks_is_refused(deployment):
    with deployment.builder() as build:
        with pytest.raises(RecordError, match="lacks netvirt's name marks"):
            build.record.add(OwnedNamespace("someone-elses"))
