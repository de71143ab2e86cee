"""The shared test harness itself: the leak guard finds leaks, the CLI helper shows tracebacks."""

from __future__ import annotations

import asyncio
import threading

import click
import pytest

from tests.clikit import invoke
from tests.leakguard import LeakGuard


def test_leak_guard_reports_a_pending_task_and_a_live_thread():
    guard = LeakGuard(grace_s=0.2)
    guard.start()
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="left-running", daemon=True)
    thread.start()

    async def main() -> None:
        asyncio.get_running_loop().create_task(asyncio.sleep(60), name="forgotten")

    asyncio.run(main())
    problems = guard.stop()
    stop.set()
    thread.join()
    assert any("forgotten" in p for p in problems)
    assert any("left-running" in p for p in problems)


def test_leak_guard_is_quiet_when_everything_ends():
    guard = LeakGuard(grace_s=1.0)
    guard.start()

    async def main() -> None:
        await asyncio.gather(asyncio.sleep(0), asyncio.to_thread(lambda: None))

    asyncio.run(main())
    assert guard.stop() == []


def test_invoke_shows_an_uncaught_exception():
    @click.command()
    def broken() -> None:
        raise KeyError("boom")

    with pytest.raises(AssertionError, match="KeyError"):
        invoke(command=broken)
    assert invoke("--version").exit_code == 0
