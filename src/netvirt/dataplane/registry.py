"""The one list of backends: name -> the class that realises host graphs, and what each declares.

Contract: ``REGISTERED`` maps every backend name to ``Registration(module, attribute, summary)``,
the backend class (a ``dataplane.api.Backend``) imported only when first needed, so listing names
costs nothing. Everything that used to list backend names derives from here: the CLI's
``--backend`` choices (``names()``), the agent's and controller's factory (``make``), the
"backends that can" of ``plan`` refusals (``declared_all()``, each class's own ``declared()``)
and the capability table in docs/architecture.md (``table()``, checked by a test).

Adding a backend is one line here plus the class (docs/architecture.md, "How to add a backend").
``make(name, host, **options)`` raises ValueError naming the known backends for an unknown name;
options are the backend's own keyword arguments (e.g. the linux backend's ``deployment``).
"""

import importlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from netvirt.dataplane.api import Backend, Capabilities, Encapsulation, Observer
from netvirt.graph import DeviceKind, HookKind


@dataclass(frozen=True, slots=True)
class Registration:
    """Where a backend's class lives (``module``.``attribute``) and what it is, in one line."""

    module: str
    attribute: str
    summary: str


REGISTERED: dict[str, Registration] = {
    "sim": Registration("netvirt.dataplane.sim.backend", "SimBackend",
                        "the simulator: executes graphs on real bytes, the oracle for the others"),
    "linux": Registration("netvirt.dataplane.linux.backend", "LinuxBackend",
                          "the Linux kernel: namespaces, veths, bridges, VXLAN, nftables or iptables"),
    "userspace": Registration("netvirt.dataplane.userspace.backend", "UserspaceBackend",
                              "a poll-mode switch process per host: AF_PACKET rings, flow cache, VXLAN/Geneve/NVGRE"),
    "ebpf": Registration("netvirt.dataplane.ebpf.backend", "EbpfBackend",
                         "the Linux kernel with eBPF: tc programs for policies and services, XDP drop lists"),
}


def names() -> tuple[str, ...]:
    """Every registered backend name, in registration order."""
    return tuple(REGISTERED)


@cache
def backend_class(name: str) -> Any:
    """The class of backend ``name`` (imported on first use); ValueError for an unknown name."""
    if name not in REGISTERED:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(REGISTERED)}")
    registration = REGISTERED[name]
    return getattr(importlib.import_module(registration.module), registration.attribute)


def make(name: str, host: str, **options: Any) -> Backend:
    """A new backend ``name`` for ``host``; ValueError for an unknown name."""
    return backend_class(name)(host, **options)


def observer(name: str, deployment: str, **options: Any) -> Observer:
    """The ``Observer`` of what backend ``name`` built for ``deployment`` (its class's
    ``observer``); ValueError when that backend cannot be observed (the simulator is the
    prediction itself)."""
    cls = backend_class(name)
    if not hasattr(cls, "observer"):
        raise ValueError(f"backend {name!r} has no observer; observable: {', '.join(observable())}")
    return cls.observer(deployment, **options)


def observable() -> tuple[str, ...]:
    """The backends with an ``observer`` (``verify`` can compare them with the simulator)."""
    return tuple(name for name in REGISTERED if hasattr(backend_class(name), "observer"))


def declared(name: str) -> Capabilities:
    """What backend ``name`` can realise where everything it needs is present (no probing)."""
    return backend_class(name).declared()


def declared_all() -> dict[str, Capabilities]:
    """``declared`` of every registered backend, by name."""
    return {name: declared(name) for name in REGISTERED}


def table() -> list[tuple[str, list[str]]]:
    """(what, backends that can realise it) for every device kind, encapsulation, hook and
    netfilter table: the capability table docs/architecture.md shows."""
    every = declared_all()
    rows: list[tuple[str, list[str]]] = []
    rows += [(f"device {kind.value}", [n for n, c in every.items() if kind in c.device_kinds]) for kind in DeviceKind]
    rows += [(f"encapsulation {e.value}", [n for n, c in every.items() if e in c.encapsulations]) for e in Encapsulation]
    rows += [(f"hook {hook.value}", [n for n, c in every.items() if hook in c.hooks]) for hook in HookKind]
    rows.append(("filter rules", [n for n, c in every.items() if c.netfilter]))
    rows.append(("nat rules", [n for n, c in every.items() if c.nat]))
    return rows
