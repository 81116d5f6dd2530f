"""``netvirt-cni``: a CNI plugin (spec 1.1: ADD, DEL, CHECK, VERSION, GC, STATUS) that attaches a
container runtime's network namespace to a netvirt network as an endpoint of the applied spec.

Contract: an edge of the architecture, like the CLI and the REST API. The runtime runs it with
``CNI_COMMAND`` and friends in the environment and the network configuration on stdin; it talks
to the control plane (``controller`` URL, or an embedded ``store`` URL served in-process) through
the REST API's per-endpoint calls, waits until the host's agent realized the change, and prints
the spec's JSON result (or error) on stdout. ``docs/cni.md`` is the user guide.
"""

from netvirt.management.cni.plugin import SUPPORTED_VERSIONS, CniError, main

__all__ = ["SUPPORTED_VERSIONS", "CniError", "main"]
