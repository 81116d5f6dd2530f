"""Option choices shared by the commands (one enum per set of values)."""

from enum import Enum


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


class YamlOrJson(str, Enum):
    yaml = "yaml"
    json = "json"


class BackendName(str, Enum):
    sim = "sim"
    linux = "linux"
