"""The network spec: model, loading, validation with precise errors, allocation, dump, diff.

Contract: pure -- imports nothing from the other planes and does no network or kernel I/O; reading
spec files is its only I/O. ``load``/``loads`` return a *resolved* ``Spec`` (every allocatable
field filled in deterministically) or raise ``SpecError`` carrying every ``Problem`` at once, each
printed as ``FILE:LINE:COL: error: SPEC.PATH: message``. ``docs/spec.md`` is the user guide.
"""

from netvirt.management.spec.diff import Change, SpecDiff, diff
from netvirt.management.spec.dump import as_data, dump, item_data, json_schema
from netvirt.management.spec.encap import overhead
from netvirt.management.spec.generate import generate, starter_spec
from netvirt.management.spec.loader import load, loads
from netvirt.management.spec.model import (
    KINDS,
    AppLayer,
    Attachment,
    ContainerLayer,
    Endpoint,
    GeneveOption,
    Host,
    HostLayer,
    HypervisorLayer,
    KubernetesLayer,
    Layer,
    Network,
    PodLayer,
    Policy,
    Route,
    Router,
    Rule,
    Service,
    Spec,
    Stack,
    VmLayer,
)
from netvirt.management.spec.problems import Problem, SpecError
from netvirt.management.spec.values import Peer, PortRange, ProtoPort

__all__ = [
    "KINDS",
    "Change",
    "SpecDiff",
    "as_data",
    "diff",
    "dump",
    "generate",
    "item_data",
    "json_schema",
    "starter_spec",
    "AppLayer",
    "Attachment",
    "ContainerLayer",
    "Endpoint",
    "GeneveOption",
    "Host",
    "HostLayer",
    "HypervisorLayer",
    "KubernetesLayer",
    "Layer",
    "Network",
    "Peer",
    "PodLayer",
    "Policy",
    "PortRange",
    "Problem",
    "ProtoPort",
    "Route",
    "Router",
    "Rule",
    "Service",
    "Spec",
    "SpecError",
    "Stack",
    "VmLayer",
    "load",
    "loads",
    "overhead",
]
