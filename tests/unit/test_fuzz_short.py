"""A short, deterministic fuzz run over every target of bench/fuzz.py: it must find 0 crashes.

The full run (`.venv/bin/python bench/fuzz.py --inputs 100000`) is the habit; this keeps every
target in CI. The last test shows the fuzzer does find the crash issue 9 reported, so a green
run means something.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from bench import fuzz
from meshd.errors import RecordRejected
from meshd.store import RecordStore
from meshd.trust import Revocation

INPUTS_PER_TARGET = 800


@pytest.mark.parametrize("target", fuzz.TARGETS, ids=lambda t: t.name)
def test_short_run_finds_no_crash_or_hang(target: fuzz.Target) -> None:
    [stats] = fuzz.run_all([target], INPUTS_PER_TARGET, seed=1, time_limit=2.0)
    assert stats.inputs == INPUTS_PER_TARGET
    assert stats.crashes == [], fuzz.report([stats], 0)
    assert stats.hangs == []
    assert stats.accepted + stats.refused == stats.inputs


def test_runs_are_deterministic() -> None:
    [record] = [t for t in fuzz.TARGETS if t.name == "record"]
    first = fuzz.run_all([record], 300, seed=7)[0]
    again = fuzz.run_all([record], 300, seed=7)[0]
    assert (first.accepted, first.refused) == (again.accepted, again.refused)


def test_the_fuzzer_finds_the_revocation_crash_of_issue_9() -> None:
    """The agent's revocation handler as it was: json.loads, from_json, revoke."""

    def legacy(world: fuzz.World) -> fuzz.Run:
        def run(data: bytes) -> object:
            return RecordStore(world.trust).revoke(Revocation.from_json(json.loads(data)))

        return run

    [revocation] = [t for t in fuzz.TARGETS if t.name == "revocation"]
    caught = (ValueError, TypeError, RecordRejected)  # what the handler caught
    old = replace(revocation, name="legacy", make=legacy, allowed=caught)
    [stats] = fuzz.run_all([old], INPUTS_PER_TARGET, seed=1)
    assert any(what.startswith("RecursionError") for what, _ in stats.crashes), stats.crashes[:3]


def test_a_slow_input_counts_as_a_hang() -> None:
    def slow(world: fuzz.World) -> fuzz.Run:
        def run(data: bytes) -> object:
            if data.startswith(b"mesh/v1/riverside/#"):
                time.sleep(5)  # the alarm interrupts it
            return None

        return run

    [topic] = [t for t in fuzz.TARGETS if t.name == "topic"]
    [stats] = fuzz.run_all([replace(topic, make=slow)], 200, seed=1, time_limit=0.05)
    assert stats.hangs
    assert all(h.startswith(b"mesh/v1/riverside/#") for h in stats.hangs)
    assert stats.slowest_ms < 1000
