"""The budget of the fuzz tests: a fixed number of inputs per test and a kept seed, so that CI tries
the same inputs every run in bounded time; ``NETVIRT_FUZZ_SCALE=N`` multiplies the number (a longer
local run, see docs/benchmarks.md "Robustness") and ``NETVIRT_FUZZ_SEED`` picks other inputs."""

import os

from hypothesis import HealthCheck, seed, settings

SCALE = int(os.environ.get("NETVIRT_FUZZ_SCALE", "1"))
SEED = int(os.environ.get("NETVIRT_FUZZ_SEED", "16"))


def fuzz(examples: int):
    """Decorator: ``examples`` x SCALE inputs from the kept seed, no deadline, not stored."""

    def decorate(test):
        budget = settings(
            max_examples=examples * SCALE,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        return seed(SEED)(budget(test))

    return decorate
