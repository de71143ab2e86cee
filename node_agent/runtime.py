"""What the agent asks of the world, injectable: clocks, randomness, and the system (interface
counters, addresses, commands). Tests and simulations pass their own; the agent never calls
`time`, `random` or `node_agent.system` directly."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from node_agent import system
from node_agent.radio import Runner


@dataclass
class Clock:
    """`now()` is wall time (records, expiry, status); `monotonic()` is for intervals."""

    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic


@dataclass
class System:
    """The kernel and the disk as the agent sees them. Each call looks up `node_agent.system`
    when it runs, so a test that patches one of its functions reaches the agent too."""

    run: Runner = field(default=system.run)

    def iface_stats(self, iface: str) -> dict[str, int] | None:
        return system.iface_stats(iface)

    def iface_index(self, iface: str) -> int | None:
        return system.iface_index(iface)

    def iface_medium(self, iface: str) -> str:
        return system.iface_medium(iface)

    def is_wifi(self, iface: str) -> bool:
        return system.is_wifi(iface)

    def local_addresses(self, ifaces: list[str]) -> list[system.LocalAddress]:
        return system.local_addresses(ifaces)

    def uptime_s(self) -> int:
        return system.uptime_s()

    def boot_id(self) -> str:
        return system.boot_id()


@dataclass
class Runtime:
    clock: Clock = field(default_factory=Clock)
    rng: random.Random = field(default_factory=random.Random)
    sys: System = field(default_factory=System)

    def jitter(self, seconds: float, spread: float = 0.1) -> float:
        return seconds * self.rng.uniform(1 - spread, 1 + spread)

    def backoff(self, attempt: int, cap: float = 30.0) -> float:
        return min(cap, 0.5 * 2.0 ** min(attempt, 16)) * self.rng.uniform(0.5, 1.5)

    def token(self, nbytes: int = 4) -> int:
        """A random session number; os.urandom, not `secrets` (which loads hmac at import)."""
        return int.from_bytes(os.urandom(nbytes))
