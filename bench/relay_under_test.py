"""The relay each simulated node runs (`bench/relay_sim.py`): the agent's own `RelayCore`, fed the
way the agent's relay shells feed it, behind the small interface the simulation needs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from meshd.codec import Envelope
from meshd.store import RecordStore
from node_agent.relay_core import Drop, RelayCore, Source, Stored

EPOCH = 1_800_000_000  # sim time 0 as unix time


class Relay(Protocol):
    """What the simulation needs of a node's relay: the agent's message path, minus MQTT."""

    @property
    def store(self) -> RecordStore: ...

    def offer(self, source: str, topic: str, raw: bytes, now: float) -> Envelope | None: ...

    def own(self, env: Envelope) -> None: ...


@dataclass
class CoreRelay:
    """The agent's own `RelayCore`, fed as the agent's relay shells feed it."""

    core: RelayCore
    drops: Counter[str] = field(default_factory=Counter)

    @property
    def store(self) -> RecordStore:
        return self.core.store

    def offer(self, source: str, topic: str, raw: bytes, now: float) -> Envelope | None:
        got = None
        for action in self.core.on_message(Source(source, source), topic, raw, EPOCH + now):
            if isinstance(action, Stored):
                got = action.envelope
            elif isinstance(action, Drop) and action.reason not in ("duplicate", "stale"):
                self.drops[action.reason] += 1
        return got

    def own(self, env: Envelope) -> None:
        self.core.own(env)


RelayFactory = Callable[[RecordStore, str], Relay]


def core_relay(store: RecordStore, node_id: str) -> Relay:
    return CoreRelay(RelayCore(store, node_id))
