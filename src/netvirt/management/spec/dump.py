"""Writing specs out: ``dump`` (YAML that loads back to an equal Spec), ``as_data``, ``json_schema``."""

import copy
from collections.abc import Callable
from typing import Any

import yaml

from netvirt.management.spec.model import Model, Spec

_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _SpecDumper(_Dumper):  # type: ignore[misc, valid-type]
    """Block mappings; short lists of plain values in flow style (``listen: [tcp/80, udp/53]``)."""


def _represent_list(dumper: yaml.SafeDumper, items: list[Any]) -> yaml.Node:
    flow = all(isinstance(item, (str, int, float, bool)) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_SpecDumper.add_representer(list, _represent_list)


LISTS = ("hosts", "networks", "routers", "endpoints", "policies", "services", "stacks")
"""The spec's lists of named items, in the order a spec file has them."""


def as_data(spec: Spec, item: Callable[[Model], Any] | None = None) -> dict[str, Any]:
    """The spec as plain JSON-compatible data, every key as written in a spec file.

    Keys equal to their default are left out, except ``version`` and ``name``; allocated values
    (VNIs, addresses, MACs, MTUs, VIPs) are kept, so loading this data gives an equal Spec.
    ``item`` turns each item of the lists (``LISTS``) into its data (default ``item_data``;
    a caller that publishes many versions may remember items by identity: versions share them).
    """
    head = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=set(LISTS))
    lists = {key: list(map(item or item_data, getattr(spec, key))) for key in LISTS if getattr(spec, key)}
    return {"version": spec.version, "name": spec.name, **head, **lists}


def item_data(item: Model) -> dict[str, Any]:
    """One item of a spec's lists (a host, a network, an endpoint, ...) as ``as_data`` writes it."""
    return item.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def dump(spec: Spec) -> str:
    """YAML text of the spec that ``loads`` turns back into an equal ``Spec``."""
    return dump_data(as_data(spec))


def dump_data(data: dict[str, Any]) -> str:
    """Spec data (as ``as_data`` makes it, or hand-built) as YAML text, keys in the given order."""
    return yaml.dump(data, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=120)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a spec file, for editors (``netvirt schema``).

    It describes what may be written, so allocatable keys are optional and an endpoint may use
    the one-attachment short form (``network:``/``ip:``/``ip6:``/``mac:`` beside its name).
    """
    schema = copy.deepcopy(Spec.model_json_schema(by_alias=True))
    schema["required"] = [key for key in schema.get("required", []) if key != "name"]
    endpoint = schema["$defs"]["Endpoint"]
    attachment = schema["$defs"]["Attachment"]["properties"]
    endpoint["properties"].update({key: attachment[key] for key in ("network", "ip", "ip6", "mac")})
    endpoint["required"] = [key for key in endpoint["required"] if key != "attachments"]
    endpoint["oneOf"] = [{"required": ["attachments"]}, {"required": ["network"]}]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "netvirt spec",
        **schema,
    }
