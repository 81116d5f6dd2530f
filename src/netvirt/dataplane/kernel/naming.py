"""Names of the kernel objects netvirt creates: recognisable, deterministic, within kernel limits.

Contract: ``Names(deployment, prefix)`` derives every name from the deployment and a local name,
so the same inputs always give the same objects (``up`` converges instead of duplicating):

- namespaces ``{prefix}-{deployment}-{local}`` (``nv-quickstart-host1``); a device graph's
  namespaces get the local name ``{host}`` (the host's own) or ``{host}.{namespace}``
  (``nv-quickstart-host-a.web-1``), underlay segments ``_{segment}`` (``nv-quickstart-_underlay``);
- links ``{prefix}-{hint}-{digest}``, at most 15 characters (IFNAMSIZ - 1): ``hint`` is the start
  of the device name, ``digest`` 5 hex digits of SHA-256 over deployment, namespace and device
  (``nv-vxlan1-3fa9c``);
- the nftables table ``netvirt_{deployment}`` (one per namespace);
- iptables chains ``NV-{digest}-{HOOK}`` (``NV-1a2b3c-FORWARD``), at most 28 characters.

``prefix`` is ``nv`` for production objects; tests use ``nvt`` and a random deployment so parallel
runs never collide. Bad names raise ``NameError_`` saying what is wrong and how to fix it.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PRODUCTION_PREFIX = "nv"
TEST_PREFIX = "nvt"
IFNAMSIZ = 16  # including the terminating NUL: link names have at most 15 characters
NFT_TABLE_PREFIX = "netvirt"
IPT_CHAIN_PREFIX = "NV-"
IPT_CHAIN_MAX = 28  # XT_EXTENSION_MAXNAMELEN - 1
BPFFS = Path("/sys/fs/bpf")  # where eBPF programs and maps are pinned

_PREFIX = re.compile(r"^nv[a-z0-9]{0,2}$")
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,31}$")
_LOCAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_LINK = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


class NameError_(ValueError):
    """A name the kernel (or netvirt's ownership scheme) cannot accept."""


def digest(*parts: str, length: int) -> str:
    """``length`` hex digits of SHA-256 over ``parts`` (joined by '/'): stable across runs."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def check_host_name(name: str, what: str = "host") -> str:
    """``name`` if it can name a host (or segment) in kernel namespace names, else NameError_."""
    if not _HOST.match(name):
        raise NameError_(f"{what} name {name!r}: use 1..64 characters from A-Z a-z 0-9 _ - "
                         "starting with a letter or digit")
    return name


def deployment_name(spec_name: str) -> str:
    """The deployment name of a spec: '-' becomes '_' (spec names have no '_', so this is
    one-to-one); names longer than 32 characters keep 26 and add '.' and a digest."""
    name = spec_name.replace("-", "_")
    return name if len(name) <= 32 else f"{name[:26]}.{digest(spec_name, length=5)}"


def check_link_name(name: str) -> str:
    """``name`` if the kernel accepts it as an interface name, else NameError_."""
    if not _LINK.match(name) or name in (".", ".."):
        raise NameError_(
            f"link name {name!r}: use 1..15 characters from A-Z a-z 0-9 _ . - (IFNAMSIZ is 16)"
        )
    return name


@dataclass(frozen=True, slots=True)
class Names:
    """The naming scheme of one deployment (see the module docstring)."""

    deployment: str
    prefix: str = PRODUCTION_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise NameError_(f"prefix {self.prefix!r}: must be 'nv' plus up to 2 of a-z 0-9 (e.g. 'nvt')")
        if not _DEPLOYMENT.match(self.deployment):
            raise NameError_(
                f"deployment {self.deployment!r}: use 1..32 characters from A-Z a-z 0-9 _ . "
                "starting with a letter or digit (no '-': it separates the parts of namespace names)"
            )

    def namespace(self, local: str) -> str:
        """The namespace for ``local`` (a host or endpoint name)."""
        if not _LOCAL.match(local):
            raise NameError_(
                f"namespace {local!r} of deployment {self.deployment}: use 1..128 characters "
                "from A-Z a-z 0-9 _ . - starting with a letter or digit"
            )
        return f"{self.prefix}-{self.deployment}-{local}"

    def graph_namespace(self, host: str, namespace: str) -> str:
        """The kernel namespace of graph namespace ``namespace`` on ``host``: ``host`` itself for
        the host's own namespace, else ``host.namespace`` (host names have no '.', so the two
        forms never collide, and every namespace of ``host`` starts with its name)."""
        check_host_name(host)
        return self.namespace(host if namespace == host else f"{host}.{namespace}")

    def host_namespaces(self, host: str, names: list[str]) -> list[str]:
        """Those of ``names`` that are kernel namespaces of ``host`` (see ``graph_namespace``)."""
        own = self.namespace(host)
        return [name for name in names if name == own or name.startswith(own + ".")]

    def segment_namespace(self, segment: str) -> str:
        """The namespace holding underlay segment ``segment`` (a bridge its hosts plug into);
        ``_`` cannot start a host name, so it never collides with a host's namespaces."""
        check_host_name(segment, "segment")
        return f"{self.prefix}-{self.deployment}-_{segment}"

    def owns_namespace(self, name: str) -> bool:
        """Whether ``name`` has the shape of this deployment's namespaces."""
        return name.startswith(f"{self.prefix}-{self.deployment}-")

    def link(self, namespace: str, device: str) -> str:
        """A deterministic link name for ``device`` in ``namespace`` (at most 15 characters)."""
        room = IFNAMSIZ - 1 - len(self.prefix) - 2 - 5
        hint = re.sub(r"[^A-Za-z0-9]", "", device)[:room] or "x"
        return f"{self.prefix}-{hint}-{digest(self.deployment, namespace, device, length=5)}"

    def owns_link(self, name: str) -> bool:
        """Whether ``name`` carries this scheme's link prefix."""
        return name.startswith(f"{self.prefix}-")

    @property
    def bpf_root(self) -> Path:
        """The bpffs directory of this deployment's pinned programs and maps (bpffs refuses '.'
        in names: it becomes '@', which no namespace or deployment name contains)."""
        return BPFFS / f"{self.prefix}-{self.deployment}".replace(".", "@")

    def bpf_pins(self, namespace: str) -> Path:
        """Where the programs and maps of kernel namespace ``namespace`` are pinned."""
        return self.bpf_root / namespace.replace(".", "@")

    def xdp_pins(self, namespace: str, device: str) -> Path:
        """Where the XDP program of ``device`` in kernel namespace ``namespace`` is pinned."""
        return self.bpf_pins(namespace) / "xdp" / device

    @property
    def nft_table(self) -> str:
        """The nftables table (family inet) of this deployment in each namespace."""
        return f"{NFT_TABLE_PREFIX}_{self.deployment.replace('.', '_')}"

    @property
    def ipt_chain_prefix(self) -> str:
        """The start of every iptables chain name of this deployment."""
        return f"{IPT_CHAIN_PREFIX}{digest(self.prefix, self.deployment, length=6)}-"

    def ipt_chain(self, hook: str) -> str:
        """The iptables chain this deployment hangs off the built-in chain ``hook``."""
        name = f"{self.ipt_chain_prefix}{hook.upper()}"
        assert len(name) <= IPT_CHAIN_MAX
        return name

    def mac(self, *parts: str) -> str:
        """A locally administered unicast MAC derived from ``parts`` (stable across runs)."""
        raw = bytes.fromhex(digest(self.deployment, *parts, length=12))
        return ":".join(f"{b:02x}" for b in (raw[0] & 0xFC | 0x02,) + tuple(raw[1:]))
