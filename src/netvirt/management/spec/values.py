"""Small value types of the spec: names, addresses, MACs, ``tcp/80``, port ranges, policy peers.

Each type parses from the text a person writes in YAML (``"tcp/80"``, ``"8000-8080"``,
``"app=web"``) and serialises back to exactly that canonical text, so dump -> load is the identity.
Parse failures raise ``ValueError`` with a message that says what is wrong and what would be right.
"""

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, PlainSerializer, PlainValidator, StringConstraints, WithJsonSchema

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_MAC = re.compile(r"[0-9a-f]{2}([:-][0-9a-f]{2}){5}")


class FieldError(ValueError):
    """A model invariant broken by one field: validation reports it at that field's key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"expected {what}, got {describe(value)}")
    return str(value).strip()


def describe(value: Any) -> str:
    """A short human description of a YAML value, for error messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return f"{type(value).__name__} {value!r}"


# --- names ---------------------------------------------------------------------------------------


def check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


Name = Annotated[str, StringConstraints(pattern=_NAME_PATTERN)]
"""A name: an RFC 1123 label (checked in Rust by pydantic; ``check_name`` words the error)."""


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    for key, text in value.items():
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(f"label key {key!r} is not valid: use letters, digits, '-', '_', '.' (max 63)")
        if not _LABEL_VALUE.fullmatch(text):
            raise ValueError(f"label value {text!r} is not valid: use letters, digits, '-', '_', '.' (max 63)")
    return value


Labels = Annotated[dict[str, str], AfterValidator(_check_labels)]


# --- addresses -----------------------------------------------------------------------------------


def parse_network(value: Any, family: int | None = None) -> IPNetwork:
    """``10.0.0.0/24`` -> network; host bits set is an error that names the right network."""
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        network = value
    else:
        text = _text(value, "a subnet like 10.0.0.0/24")
        try:
            network = ipaddress.ip_network(text)
        except ValueError:
            try:
                loose = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not a subnet (expected e.g. 10.0.0.0/24 or fd00::/64)") from None
            raise ValueError(f"{text!r} has host bits set (did you mean {loose}?)") from None
    _check_family(network, family, "subnet")
    return network


def parse_address(value: Any, family: int | None = None) -> IPAddress:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = value
    else:
        text = _text(value, "an IP address")
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address (expected e.g. 10.0.0.5 or fd00::5)") from None
    _check_family(address, family, "address")
    return address


def parse_interface(value: Any) -> IPInterface:
    """``192.0.2.10/24`` -> interface; without a prefix, /24 (IPv4) or /64 (IPv6) is assumed."""
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return value
    text = _text(value, "an address with prefix like 192.0.2.10/24")
    if "/" not in text:
        address = parse_address(text)
        text = f"{text}/{24 if address.version == 4 else 64}"
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an address with prefix (expected e.g. 192.0.2.10/24)") from None
    if interface.ip == interface.network.network_address and interface.network.prefixlen < interface.max_prefixlen - 1:
        raise ValueError(f"{text!r} is the network address of its prefix, not a host address")
    return interface


def _check_family(value: IPAddress | IPNetwork, family: int | None, what: str) -> None:
    if family is not None and value.version != family:
        raise ValueError(f"{value} is an IPv{value.version} {what}, expected IPv{family}")


def _ip_type(parse, schema: dict[str, Any], family: int | None = None) -> Any:
    return (
        PlainValidator(lambda v: parse(v, family) if family else parse(v)),
        PlainSerializer(str),
        WithJsonSchema({"type": "string", **schema}),
    )


Subnet4 = Annotated[ipaddress.IPv4Network, *_ip_type(parse_network, {"format": "ipv4-network"}, 4)]
Subnet6 = Annotated[ipaddress.IPv6Network, *_ip_type(parse_network, {"format": "ipv6-network"}, 6)]
Address4 = Annotated[ipaddress.IPv4Address, *_ip_type(parse_address, {"format": "ipv4"}, 4)]
Address6 = Annotated[ipaddress.IPv6Address, *_ip_type(parse_address, {"format": "ipv6"}, 6)]
AnyAddress = Annotated[IPAddress, *_ip_type(parse_address, {"description": "IPv4 or IPv6 address"})]
AnyNetwork = Annotated[IPNetwork, *_ip_type(parse_network, {"description": "IPv4 or IPv6 subnet"})]
Interface = Annotated[
    IPInterface, *_ip_type(lambda v: parse_interface(v), {"description": "address/prefix, e.g. 192.0.2.10/24"})
]


# --- MAC -----------------------------------------------------------------------------------------


def parse_mac(value: Any) -> str:
    """``02:00:5E:10:00:01`` or with '-' -> ``02:00:5e:10:00:01``; multicast MACs are refused."""
    text = _text(value, "a MAC address like 02:00:00:00:00:01").lower()
    if not _MAC.fullmatch(text):
        raise ValueError(f"{text!r} is not a MAC address (expected six hex pairs, e.g. 02:00:00:00:00:01)")
    text = text.replace("-", ":")
    if int(text[:2], 16) & 1:
        raise ValueError(f"{text} is a multicast MAC; an interface needs a unicast MAC (even first octet)")
    return text


Mac = Annotated[
    str,
    PlainValidator(parse_mac),
    WithJsonSchema({"type": "string", "pattern": "^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$"}),
]


# --- tcp/80 --------------------------------------------------------------------------------------

Transport = Literal["tcp", "udp"]


def _port_number(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{whole!r}: port {text!r} is not a number from 1 to 65535")
    return int(text)


@dataclass(frozen=True, order=True, slots=True)
class ProtoPort:
    """A transport protocol and port: written ``tcp/80`` or ``udp/53``."""

    proto: Transport
    port: int

    def __str__(self) -> str:
        return f"{self.proto}/{self.port}"

    @classmethod
    def parse(cls, value: Any) -> "ProtoPort":
        if isinstance(value, cls):
            return value
        text = _text(value, "protocol/port like tcp/80").lower()
        proto, slash, port = text.partition("/")
        if not slash or proto not in ("tcp", "udp"):
            raise ValueError(f"{text!r} is not protocol/port: write tcp/PORT or udp/PORT, e.g. tcp/80")
        return cls(proto, _port_number(port, text))  # type: ignore[arg-type]


def _cached(parse):
    """``parse`` with a cache for hashable input: specs repeat the same ``tcp/80`` thousands of times."""
    cached = functools.lru_cache(maxsize=4096, typed=True)(parse)  # typed: True is not 1

    def parse_value(value: Any):
        return cached(value) if isinstance(value, (str, int)) else parse(value)

    return parse_value


ProtoPortField = Annotated[
    ProtoPort,
    PlainValidator(_cached(ProtoPort.parse)),
    PlainSerializer(str),
    WithJsonSchema({"type": "string", "pattern": "^(tcp|udp)/[0-9]{1,5}$", "examples": ["tcp/80", "udp/53"]}),
]


@dataclass(frozen=True, order=True, slots=True)
class PortRange:
    """An inclusive port range: written ``80`` or ``8000-8080``."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"

    def __contains__(self, port: int) -> bool:
        return self.first <= port <= self.last

    @classmethod
    def parse(cls, value: Any) -> "PortRange":
        if isinstance(value, cls):
            return value
        text = _text(value, "a port or port range like 80 or 8000-8080")
        first, dash, last = text.partition("-")
        low = _port_number(first.strip(), text)
        high = _port_number(last.strip(), text) if dash else low
        if low > high:
            raise ValueError(f"port range {text!r} is empty: the first port is above the last")
        return cls(low, high)


def _port_ranges(value: Any) -> tuple[PortRange, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(_parse_port_range(item) for item in items)


_parse_port_range = _cached(PortRange.parse)


def _dump_port_ranges(ranges: tuple[PortRange, ...]) -> list[int | str]:
    return [r.first if r.first == r.last else str(r) for r in ranges]


PortRanges = Annotated[
    tuple[PortRange, ...],
    PlainValidator(_port_ranges),
    PlainSerializer(_dump_port_ranges),
    WithJsonSchema(
        {
            "description": "a port, a range 'LOW-HIGH', or a list of them",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$"},
                {"type": "array", "items": {"type": ["integer", "string"]}},
            ],
        }
    ),
]


# --- policy peers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """One side of a policy rule: a CIDR, an endpoint name, or a label selector (exactly one).

    Written as text: ``10.0.0.0/8`` or ``10.0.0.5`` (CIDR), ``web-1`` (endpoint), ``app=web,tier=fe``
    (every label must match).
    """

    cidr: IPNetwork | None = None
    endpoint: str | None = None
    labels: tuple[tuple[str, str], ...] | None = None

    def __str__(self) -> str:
        if self.cidr is not None:
            return str(self.cidr)
        if self.endpoint is not None:
            return self.endpoint
        return ",".join(f"{k}={v}" for k, v in self.labels or ())

    def selects(self, labels: dict[str, str]) -> bool:
        """Whether a label selector matches these labels (False for CIDR and endpoint peers)."""
        return self.labels is not None and all(labels.get(k) == v for k, v in self.labels)

    @classmethod
    def parse(cls, value: Any) -> "Peer":
        if isinstance(value, cls):
            return value
        text = _text(value, "a CIDR, an endpoint name or a label selector like app=web")
        if "=" in text:
            pairs = []
            for part in text.split(","):
                key, eq, label = (s.strip() for s in part.partition("="))
                if not eq or not _LABEL_KEY.fullmatch(key) or not _LABEL_VALUE.fullmatch(label):
                    raise ValueError(f"{text!r} is not a label selector: write key=value[,key=value], e.g. app=web")
                pairs.append((key, label))
            return cls(labels=tuple(sorted(pairs)))
        if any(c in text for c in "/:."):  # names have none of these: it is meant as an address
            return cls(cidr=parse_network(text))
        try:
            return cls(endpoint=check_name(text))
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a CIDR (10.0.0.0/8), an endpoint name (web-1) nor a label selector (app=web)"
            ) from None


_parse_peer = _cached(Peer.parse)


def _peers(value: Any) -> tuple[Peer, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(_parse_peer(item) for item in items)


Peers = Annotated[
    tuple[Peer, ...],
    PlainValidator(_peers),
    PlainSerializer(lambda peers: [str(p) for p in peers]),
    WithJsonSchema(
        {
            "description": "a CIDR, an endpoint name or a label selector 'key=value[,key=value]', or a list of them",
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        }
    ),
]
