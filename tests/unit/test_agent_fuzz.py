"""The agent's fuzz targets have teeth: an exception the relay core swallows (it never raises)
is still reported as a crash by the `agent_message` target's oracle."""

from __future__ import annotations

import pytest

from bench import fuzz
from node_agent.relay_core import RelayCore


def target(name: str) -> fuzz.Target:
    [found] = [t for t in fuzz.TARGETS if t.name == name]
    return found


def test_a_swallowed_exception_in_the_message_path_is_a_crash(monkeypatch: pytest.MonkeyPatch):
    def broken(self: RelayCore, *args: object) -> None:
        raise RecursionError("what deep JSON did to the old handler")

    monkeypatch.setattr(RelayCore, "_on_record", broken)
    [stats] = fuzz.run_all([target("agent_message")], 200, seed=1)
    assert any(what.startswith("AssertionError") for what, _ in stats.crashes), stats.crashes[:3]


@pytest.mark.parametrize("name", ["agent_message", "http", "mdns_txt", "probe"])
def test_agent_targets_are_registered_and_clean(name: str):
    [stats] = fuzz.run_all([target(name)], 300, seed=3)
    assert stats.inputs == 300
    assert stats.crashes == []
    assert stats.hangs == []
