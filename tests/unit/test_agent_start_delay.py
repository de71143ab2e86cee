"""--start-delay: a random wait within bounds, before anything starts; SIGTERM cuts it short."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from node_agent.__main__ import delayed_start
from node_agent.config import Config, ConfigError, load

BASE = ["--key", "k", "--cert", "c", "--community-file", "y", "--state-dir", "s", "--no-mdns"]


def config(delay: float) -> Config:
    return Config(Path("k"), Path("c"), Path("y"), Path("s"), start_delay=delay)


@pytest.mark.asyncio
async def test_delay_is_drawn_from_the_bounds_and_waited_before_the_start():
    events: list[str] = []
    draws: list[tuple[float, float]] = []

    def uniform(lo: float, hi: float) -> float:
        draws.append((lo, hi))
        return 7.25

    async def wait(stop: asyncio.Event, seconds: float) -> None:
        events.append(f"wait {seconds}")

    async def start() -> None:
        events.append("start")  # the agent: broker connections, first publish

    assert await delayed_start(config(30), asyncio.Event(), start, uniform=uniform, wait=wait)
    assert draws == [(0.0, 30)]
    assert events == ["wait 7.25", "start"]


@pytest.mark.asyncio
async def test_no_delay_means_no_wait():
    events: list[str] = []

    async def wait(stop: asyncio.Event, seconds: float) -> None:
        events.append("wait")

    async def start() -> None:
        events.append("start")

    assert await delayed_start(config(0), asyncio.Event(), start, wait=wait)
    assert events == ["start"]


@pytest.mark.asyncio
async def test_stop_during_the_delay_starts_nothing():
    stop = asyncio.Event()
    started: list[bool] = []

    async def start() -> None:
        started.append(True)

    async def wait(stop_: asyncio.Event, seconds: float) -> None:
        stop_.set()  # SIGTERM arrives while waiting

    assert not await delayed_start(config(600), stop, start, wait=wait)
    assert started == []


@pytest.mark.asyncio
async def test_default_wait_ends_at_once_when_stopped():
    """The real wait (asyncio) with a 600 s delay returns as soon as stop is set."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_soon(stop.set)
    started: list[bool] = []

    async def start() -> None:
        started.append(True)

    done = await asyncio.wait_for(
        delayed_start(config(600), stop, start, uniform=lambda lo, hi: hi), timeout=30
    )
    assert done is False
    assert started == []


def test_real_draws_stay_within_bounds():
    rng = random.Random(4)
    draws = []

    def uniform(lo: float, hi: float) -> float:
        draws.append(rng.uniform(lo, hi))
        return draws[-1]

    async def run_many() -> None:
        async def wait(stop: asyncio.Event, seconds: float) -> None:
            return None

        async def start() -> None:
            return None

        for _ in range(200):
            await delayed_start(config(45), asyncio.Event(), start, uniform=uniform, wait=wait)

    asyncio.run(run_many())
    assert all(0 <= d <= 45 for d in draws)
    assert max(draws) > 40  # spread over the range, not stuck near one end
    assert min(draws) < 5


@pytest.mark.parametrize("bad", ["-1", "601", "nan"])
def test_out_of_range_delay_is_refused(bad):
    with pytest.raises(ConfigError, match="start-delay"):
        load([*BASE, "--start-delay", bad])


def test_delay_flag_reaches_the_config():
    assert load([*BASE, "--start-delay", "12.5"]).start_delay == 12.5
