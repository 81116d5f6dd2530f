"""`verify --all` at scale: one JSON line.

Brings a generated spec of HOSTS x ENDPOINTS up with ``LinuxBackend`` (as ``netvirt up`` does),
then predicts and probes every flow of ``netvirt verify --all`` (``trace.plan.verify_probes``)
through ``trace.verify.Verifier`` with WORKERS probes at a time, and tears it down. Keys:
``verify_all_flows``, ``verify_all_s`` (the probing, after bring-up), ``verify_agree``,
``verify_workers``, and ``verify_up_s`` (the bring-up, for context).

Run as root: .venv/bin/python bench/linux_verify.py [--hosts 4 --endpoints 10 --workers 16]
"""

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from netvirt.control.compile import compile_network
from netvirt.dataplane.kernel.cleanup import cleanup
from netvirt.dataplane.kernel.naming import TEST_PREFIX, Names
from netvirt.dataplane.kernel.observe import KernelObserver
from netvirt.dataplane.linux.backend import network_backends
from netvirt.management.spec import generate
from netvirt.trace.plan import verify_probes
from netvirt.trace.verify import Verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    spec = generate(args.hosts, args.endpoints)
    network = compile_network(spec)
    state = Path(tempfile.mkdtemp(prefix="netvirt-bench-"))
    names = Names(f"vb{int(time.time()) % 100000}", TEST_PREFIX)
    backends = network_backends(network, names.deployment, prefix=TEST_PREFIX, state_dir=state)
    result: dict = {"bench": "linux_verify", "hosts": args.hosts, "endpoints_per_host": args.endpoints,
                    "verify_workers": args.workers}
    try:
        start = time.perf_counter()
        for graph in network.hosts:
            report = backends[graph.host].apply(graph)
            if not report.ok:
                raise RuntimeError(f"{graph.host}: {report.errors}")
        result["verify_up_s"] = round(time.perf_counter() - start, 3)
        flows = [probe.flow for probe in verify_probes(spec, random.randrange(20000, 50000))]
        start = time.perf_counter()
        with Verifier(network, KernelObserver(names)) as verifier:
            results = verifier.verify_all(flows, workers=args.workers)
        result["verify_all_flows"] = len(flows)
        result["verify_all_s"] = round(time.perf_counter() - start, 3)
        result["verify_agree"] = sum(r.agrees for r in results)
    finally:
        cleanup(names, state)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
