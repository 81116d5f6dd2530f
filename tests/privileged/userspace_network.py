"""A spec brought up with the ``userspace`` backend on some (or all) hosts and ``linux`` on the
others, under a throwaway deployment (prefix nvt, private state dir); the same interface as
``linux_network.Network`` for ``Servers``, ``flows`` and ``run_probes``."""

import secrets
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel import netns
from netvirt.dataplane.linux.backend import network_backends
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.userspace.backend import UserspaceBackend
from netvirt.management.spec import Spec


class Mixed:
    """``spec`` realised: hosts in ``userspace`` by the userspace switch, the others by Linux."""

    def __init__(self, spec: Spec, state_dir: Path, userspace: set[str] | None = None) -> None:
        self.spec = spec
        self.graph = compile_network(spec)
        self.names = Names(f"t{secrets.token_hex(3)}", TEST_PREFIX)
        hosts = {g.host for g in self.graph.hosts}
        self.userspace = hosts if userspace is None else userspace
        linux = network_backends(self.graph, self.names.deployment, prefix=TEST_PREFIX, state_dir=state_dir)
        self.backends = {host: UserspaceBackend(host, network=self.graph, deployment=self.names.deployment,
                                                prefix=TEST_PREFIX, state_dir=state_dir)
                         if host in self.userspace else linux[host] for host in hosts}

    def up(self) -> None:
        try:
            for graph in self.graph.hosts:
                report = self.backends[graph.host].apply(graph)
                assert report.ok, report.errors
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        for backend in self.backends.values():
            backend.teardown()
        left = [name for name in netns.names() if self.names.owns_namespace(name)]
        assert left == [], f"namespaces left behind: {left}"

    def namespace(self, endpoint: str) -> str:
        return self.names.graph_namespace(self.spec.endpoint(endpoint).host, endpoint)

    def address(self, endpoint: str) -> str:
        return str(self.spec.endpoint(endpoint).attachments[0].ip)

    def addresses(self, endpoint: str) -> list[str]:
        found = []
        for attachment in self.spec.endpoint(endpoint).attachments:
            found += [str(a) for a in (attachment.ip, attachment.ip6) if a is not None]
        return found
