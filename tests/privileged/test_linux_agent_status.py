"""An agent driving the kernel (``LinuxBackend``) stores a realized graph without sockets (they are
applications, not kernel objects): ``status HOST`` of the converged host lists no differences
(issue 15: it said ``differs: add device ...`` while showing ``converged``)."""

import secrets

from netvirt.control.agent import Agent
from netvirt.control.controller import Controller
from netvirt.control.store import open_store
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.linux.backend import LinuxBackend
from netvirt.graph import DeviceKind
from netvirt.management.spec import load


def test_a_converged_kernel_host_shows_no_differences(tmp_path):
    spec = load("examples/quickstart.yaml")
    deployment = f"t{secrets.token_hex(3)}"
    with open_store(f"sqlite://{tmp_path / 'store.db'}") as store:
        controller = Controller(store)
        controller.apply(spec)
        backend = LinuxBackend("host-a", deployment=deployment, prefix=TEST_PREFIX, state_dir=tmp_path)
        try:
            Agent("host-a", store, backend).resync()
            detail = controller.host("host-a")
            assert detail.state.summary == "converged"
            assert any(d.kind is DeviceKind.SOCKET for d in detail.desired.devices)
            assert not any(d.kind is DeviceKind.SOCKET for d in detail.realized.devices)
            assert detail.differences == ()
        finally:
            cleanup(Names(deployment, TEST_PREFIX), tmp_path)
