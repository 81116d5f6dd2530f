"""Rule targets: the ways a kernel namespace's filter and NAT chains are realised.

Contract: a ``RuleTarget`` takes one namespace's ``Ruleset`` (``rulesets``: the graph's chains,
checked up front) and can ``render`` it (the document the kernel is fed), ``apply`` it (through a
``Builder``, so ownership is recorded first; converges, True when it had to change something),
``read`` back the part of a ruleset in place (None: none of this deployment's rules of this
target are there), list its ``drift`` (what the graph model cannot show: foreign, missing or
re-ordered rules) and ``delete`` this deployment's rules of this target (only where recorded).
``problem()`` says why the target cannot work on this machine (None: it can).

``TARGETS`` holds every target by name: ``nftables`` (one ``inet`` table, replaced atomically),
``iptables`` (``NV-*`` chains, iptables-restore) and ``ebpf`` (tc programs with the rules in
maps, ``dataplane.ebpf.target``; endpoint namespaces only). A backend picks one target per host and
deletes what any other target left (``others``); ``in_use`` finds the target whose rules a
namespace holds. A new target (e.g. eBPF maps) implements the protocol and is added to
``TARGETS``.
"""

import json
from typing import ClassVar, Protocol

from netvirt.dataplane.kernel import iptables, nftables
from netvirt.dataplane.kernel.build import Builder
from netvirt.dataplane.kernel.naming import Names
from netvirt.dataplane.kernel.probe import probe
from netvirt.dataplane.kernel.rulesets import Ruleset


class RuleTarget(Protocol):
    """One way to realise a namespace's filter and NAT chains (see the module docstring)."""

    name: ClassVar[str]

    def problem(self) -> str | None:
        """Why this target does not work on this machine (None: it does)."""
        ...

    def render(self, names: Names, namespace: str, ruleset: Ruleset) -> str:
        """What ``apply`` would feed the kernel in ``namespace``, as text."""
        ...

    def apply(self, build: Builder, namespace: str, ruleset: Ruleset) -> bool:
        """Converge ``namespace`` to exactly ``ruleset``; True when something had to change."""
        ...

    def read(self, names: Names, namespace: str, ruleset: Ruleset) -> Ruleset | None:
        """The part of ``ruleset`` in place, read back; None when this target has no rules there."""
        ...

    def drift(self, names: Names, namespace: str, ruleset: Ruleset) -> list[str]:
        """Every difference from ``ruleset`` that reading back cannot show (empty: in sync)."""
        ...

    def delete(self, build: Builder, namespace: str) -> None:
        """Remove this deployment's rules of this target from ``namespace`` (if ever recorded there)."""
        ...


class NftablesTarget:
    """The namespace's ruleset as the table ``names.nft_table`` (``nftables``)."""

    name: ClassVar[str] = "nftables"

    def problem(self) -> str | None:
        return None if probe().nftables else "nft cannot create a table here"

    def render(self, names: Names, namespace: str, ruleset: Ruleset) -> str:
        return json.dumps({"nftables": nftables.render(names.nft_table, ruleset)}, indent=1)

    def apply(self, build: Builder, namespace: str, ruleset: Ruleset) -> bool:
        return build.nftables(namespace, ruleset)

    def read(self, names: Names, namespace: str, ruleset: Ruleset) -> Ruleset | None:
        table = nftables.read_table(namespace, names.nft_table)
        return None if table is None else nftables.realized_in(table, ruleset)

    def drift(self, names: Names, namespace: str, ruleset: Ruleset) -> list[str]:
        return nftables.drift(namespace, names.nft_table, ruleset)

    def delete(self, build: Builder, namespace: str) -> None:
        build.no_nftables(namespace)


class IptablesTarget:
    """The namespace's ruleset as ``NV-*`` chains of iptables and ip6tables (``iptables``)."""

    name: ClassVar[str] = "iptables"

    def problem(self) -> str | None:
        return None if probe().iptables is not None else "iptables-restore cannot create a chain here"

    def render(self, names: Names, namespace: str, ruleset: Ruleset) -> str:
        return "".join(iptables.render(names, ruleset, version, iptables.read(namespace, version)) for version in (4, 6))

    def apply(self, build: Builder, namespace: str, ruleset: Ruleset) -> bool:
        return build.iptables(namespace, ruleset)

    def read(self, names: Names, namespace: str, ruleset: Ruleset) -> Ruleset | None:
        if not self._present(names, namespace):
            return None
        return iptables.realized(namespace, names, ruleset)

    def drift(self, names: Names, namespace: str, ruleset: Ruleset) -> list[str]:
        return iptables.drift(namespace, names, ruleset)

    def delete(self, build: Builder, namespace: str) -> None:
        build.no_iptables(namespace)

    @staticmethod
    def _present(names: Names, namespace: str) -> bool:
        for version in (4, 6):
            saved = iptables.read(namespace, version)
            if any(chain.startswith(names.ipt_chain_prefix) for table in saved.tables for chain in saved.chains(table)):
                return True
        return False


def _ebpf() -> RuleTarget:
    from netvirt.dataplane.ebpf.target import EbpfTarget  # the eBPF package builds on this toolkit

    return EbpfTarget()


TARGETS: dict[str, RuleTarget] = {target.name: target for target in (NftablesTarget(), IptablesTarget(), _ebpf())}


def others(target: RuleTarget) -> list[RuleTarget]:
    """Every target but ``target`` (what a backend using ``target`` removes)."""
    return [other for other in TARGETS.values() if other.name != target.name]


def in_use(names: Names, namespace: str) -> RuleTarget | None:
    """The target whose rules of this deployment ``namespace`` holds (None: none)."""
    if (names.bpf_pins(namespace) / "tc" / "nv_ingress").exists():
        return TARGETS["ebpf"]
    if ("inet", names.nft_table) in nftables.tables(namespace):
        return TARGETS["nftables"]
    return TARGETS["iptables"] if IptablesTarget._present(names, namespace) else None


def read(names: Names, namespace: str, ruleset: Ruleset) -> Ruleset:
    """The part of ``ruleset`` in place in ``namespace``, from whichever target holds it."""
    for target in TARGETS.values():
        found = target.read(names, namespace, ruleset)
        if found is not None:
            return found
    return Ruleset()
