"""Classifier benchmark: one JSON line — lookups/s, linear vs compiled (tuple space), by rule count.

The rule set is Kubernetes-like: rule 0 accepts established/related flows, then one rule per
(pod, port) allows TCP from the cluster CIDR 10.244.0.0/16 to a pod /32 on a service port
(one in ten on a port range); the policy drops. Probes are new TCP flows: nine in ten match no
rule (the expensive case for a linear chain: every rule is tested), one in ten is allowed by a
rule drawn uniformly. Both classifiers must agree on every probe (checked before timing).

    .venv/bin/python bench/classifier.py [--sizes 10,100,1000,10000,100000] [--probes 2000]
"""

import argparse
import json
import platform
import random
import sys
import time
from ipaddress import IPv4Address, IPv4Network

from netvirt.dataplane.sim.classify import CompiledClassifier, LinearClassifier, PacketKey
from netvirt.graph import ACCEPT, CtState, Match, PortRange, Proto, Rule, Verdict

CLUSTER = IPv4Network("10.244.0.0/16")
PODS_BASE = int(IPv4Address("10.0.0.2"))  # pod i lives at 10.0.0.2 + i
PORTS = (80, 443, 8080, 5432, 6379, 9090)
PORT_RANGE = PortRange(30000, 30099)


def kubernetes_rules(count: int) -> list[Rule]:
    rules = [Rule(match=Match(ct_states=frozenset({CtState.ESTABLISHED, CtState.RELATED})), action=ACCEPT)]
    for i in range(count - 1):
        pod = IPv4Network((PODS_BASE + i, 32))
        ports = PORT_RANGE if i % 10 == 9 else PortRange.single(PORTS[i % len(PORTS)])
        match = Match(src=CLUSTER, dst=pod, proto=Proto.TCP, dst_ports=ports)
        rules.append(Rule(match=match, action=ACCEPT, comment=f"allow pod {i}"))
    return rules


def probes(count: int, rule_count: int, rng: random.Random) -> list[PacketKey]:
    keys = []
    for n in range(count):
        src = int(CLUSTER.network_address) + rng.randrange(1, 65535)
        if n % 10 == 0 and rule_count > 1:
            i = rng.randrange(rule_count - 1)  # allowed by rule i + 1
            dst, port = PODS_BASE + i, (30042 if i % 10 == 9 else PORTS[i % len(PORTS)])
        else:
            dst, port = PODS_BASE + rng.randrange(rule_count), 7  # no rule allows port 7
        keys.append(PacketKey(4, src, dst, 6, src_port=rng.randrange(32768, 61000), dst_port=port))
    return keys


def timed_batch(classifier, keys: list[PacketKey], seconds: float) -> list[PacketKey]:
    """The probes (cycled) one timed run of ``classifier`` goes through: about ``seconds`` long."""
    start = time.perf_counter()
    for key in keys[:3]:
        classifier.classify(key)
    estimate = (time.perf_counter() - start) / 3
    return [keys[i % len(keys)] for i in range(max(3, int(seconds / estimate)))]


def best_rates(runs: dict[str, tuple[object, list[PacketKey]]], rounds: int) -> dict[str, float]:
    """Lookups/s of each run: the best of ``rounds``, taken round-robin so that every variant sees
    the same background load on a shared machine."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(rounds):
        for name, (classifier, batch) in runs.items():
            classify = classifier.classify  # type: ignore[attr-defined]
            start = time.perf_counter()
            for key in batch:
                classify(key)
            best[name] = max(best[name], len(batch) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000,100000")
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=0.05, help="length of one timed run")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(7)
    runs: dict[str, tuple[object, list[PacketKey]]] = {}
    built: dict[str, dict[str, float]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        rules = kubernetes_rules(size)
        keys = probes(args.probes, size, rng)
        linear = LinearClassifier(rules, Verdict.DROP)
        start = time.perf_counter()
        compiled = CompiledClassifier(rules, Verdict.DROP)
        compile_seconds = time.perf_counter() - start
        sample = keys[:: max(1, size // 1000)]
        if any(linear.classify(key) != compiled.classify(key) for key in sample):
            sys.exit(f"classifiers disagree at {size} rules")
        runs[f"linear/{size}"] = (linear, timed_batch(linear, keys, args.seconds))
        runs[f"compiled/{size}"] = (compiled, timed_batch(compiled, keys, args.seconds))
        built[str(size)] = {"tuples": compiled.tuple_count, "compile_s": round(compile_seconds, 3)}
    rates = best_rates(runs, args.rounds)
    results = {}
    for size, info in built.items():
        linear_rate, compiled_rate = rates[f"linear/{size}"], rates[f"compiled/{size}"]
        results[size] = {
            "linear_per_s": round(linear_rate),
            "compiled_per_s": round(compiled_rate),
            "ratio": round(compiled_rate / linear_rate, 1),
            **info,
        }
    compiled_rates = [r["compiled_per_s"] for r in results.values()]
    print(
        json.dumps(
            {
                "bench": "classifier",
                "python": platform.python_version(),
                "probes": args.probes,
                "matching_probes": 0.1,
                "results": results,
                # slowest / fastest compiled rate over all sizes: 1.0 = perfectly flat in N
                "compiled_flatness": round(min(compiled_rates) / max(compiled_rates), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
