"""What the controller and the agents keep in the store, by responsibility: ``keys`` (the key
layout), ``blobs`` (content-addressed blobs, trees of them, which are live), ``trees`` (cutting
a JSON text into a tree of blobs: ``TreeWriter``) and ``records`` (the agents' status and
heartbeat). Everything is importable from here.
"""

from netvirt.control.state.blobs import (
    BATCH_BYTES,
    BATCH_OPERATIONS,
    CHUNK,
    REF,
    Blob,
    Live,
    assemble,
    children,
    read_tree,
    stored_blobs,
    write_blobs,
)
from netvirt.control.state.keys import (
    BLOBS,
    DESIRED,
    HEARTBEAT,
    REALIZED,
    SPEC_KEY,
    STATUS,
    SWEEP_KEY,
    desired_key,
    heartbeat_key,
    host_of,
    realized_blobs,
    realized_key,
    status_key,
)
from netvirt.control.state.records import STALE_AFTER, AgentState, AgentStatus, Heartbeat
from netvirt.control.state.trees import AVERAGE, SPLIT, TreeWriter

__all__ = [
    "AVERAGE", "BATCH_BYTES", "BATCH_OPERATIONS", "BLOBS", "CHUNK", "DESIRED", "HEARTBEAT", "REALIZED", "REF",
    "SPEC_KEY", "SPLIT", "STALE_AFTER", "STATUS", "SWEEP_KEY", "AgentState", "AgentStatus", "Blob", "Heartbeat",
    "Live", "TreeWriter", "assemble", "children", "desired_key", "heartbeat_key", "host_of", "read_tree",
    "realized_blobs", "realized_key", "status_key", "stored_blobs", "write_blobs",
]
