"""Shared test policy.

Privileged tests (everything under tests/privileged/, or marked ``privileged``) skip without root —
unless NETVIRT_REQUIRE_PRIVILEGED=1 (set by .ci/run), where "would skip" is a failure. The same
rule holds for external tools the tests need (``require_tool``).
"""

import os
import shutil

import pytest

REQUIRE_PRIVILEGED = os.environ.get("NETVIRT_REQUIRE_PRIVILEGED") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the running test, or fail it when privileged tests are mandatory (CI)."""
    if REQUIRE_PRIVILEGED:
        pytest.fail(f"mandatory in CI (NETVIRT_REQUIRE_PRIVILEGED=1): {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Path of an external tool the test needs (skip_or_fail when it is missing)."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed (scripts/setup installs it)")
    return path


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "privileged" in item.path.parts:
            item.add_marker(pytest.mark.privileged)


def pytest_runtest_setup(item):
    if item.get_closest_marker("privileged") is None:
        return
    if os.geteuid() != 0:
        skip_or_fail("needs root (CAP_NET_ADMIN) and network namespaces")
