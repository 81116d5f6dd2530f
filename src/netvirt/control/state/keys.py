"""The store's key layout: what the controller and the agents keep where.

Contract (values are JSON unless said otherwise):
- ``/netvirt/blobs/<hash>/<n>``   blobs, content-addressed (SHA-256), in chunks of at most
                                  ``blobs.CHUNK`` bytes: the trees of the spec and of every desired
                                  ``HostGraph`` (``blobs``, ``trees``);
- ``/netvirt/spec``               the applied spec: a pointer ``{"blob", "size"}`` to its tree;
- ``/netvirt/desired/<host>``     the host's published desired graph: a pointer to its tree;
- ``/netvirt/sweep``              advanced by every transaction that deletes blobs;
- ``/netvirt/realized/<host>``    a pointer to the tree of the ``HostGraph`` the host's backend read
                                  back, by its agent, whose blobs live in ``/netvirt/realized-blobs/<host>/``;
- ``/netvirt/status/<host>``      the agent's ``AgentStatus``, written when the report changes;
- ``/netvirt/heartbeat/<host>``   the agent's ``Heartbeat``, refreshed every few seconds (``records``).

A desired key's ``mod_revision`` is the host's desired revision: it moves only when that host has
something new to do.
"""

SPEC_KEY = "/netvirt/spec"
BLOBS = "/netvirt/blobs/"
DESIRED = "/netvirt/desired/"
SWEEP_KEY = "/netvirt/sweep"
REALIZED = "/netvirt/realized/"
STATUS = "/netvirt/status/"
HEARTBEAT = "/netvirt/heartbeat/"


def desired_key(host: str) -> str:
    return DESIRED + host


def realized_key(host: str) -> str:
    return REALIZED + host


def realized_blobs(host: str) -> str:
    """Where the blobs of ``host``'s realized tree live (its agent's own space)."""
    return f"/netvirt/realized-blobs/{host}/"


def status_key(host: str) -> str:
    return STATUS + host


def heartbeat_key(host: str) -> str:
    return HEARTBEAT + host


def host_of(key: str) -> str:
    """The host a per-host key belongs to (``/netvirt/desired/h1`` -> ``h1``)."""
    return key.rsplit("/", 1)[1]
