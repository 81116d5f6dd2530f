"""Option choices shared by the commands (one enum per set of values)."""

from enum import Enum

from netvirt.dataplane import registry
from netvirt.dataplane.userspace.switch import MODES


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


class YamlOrJson(str, Enum):
    yaml = "yaml"
    json = "json"


PollMode = Enum("PollMode", {mode: mode for mode in MODES}, type=str)
"""The userspace switch's poll modes (``dataplane.userspace.switch.MODES``)."""


BackendName = Enum("BackendName", {name: name for name in registry.names()}, type=str)
"""Every registered backend (``dataplane.registry``)."""
