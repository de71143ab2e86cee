"""Shared test configuration: Hypothesis profiles with predictable run times, and a guard
against tests that leak asyncio tasks or threads."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.leakguard import LeakGuard

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def no_leaked_tasks_or_threads() -> Iterator[None]:
    """Fail a test that leaves asyncio tasks or threads running (see tests/leakguard.py)."""
    guard = LeakGuard()
    guard.start()
    try:
        yield
    finally:
        problems = guard.stop()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)
