"""Finding asyncio tasks and threads a test leaves running.

Every event loop in the tests is closed by an `asyncio.Runner` (asyncio.run and pytest-asyncio),
which cancels the tasks still pending: those are the leaks, recorded as the runner finds them.
New threads get a short grace to finish (executors and zeroconf wind down on close).
"""

from __future__ import annotations

import asyncio
import asyncio.runners
import threading
import time
from collections.abc import Callable
from typing import Any

THREAD_GRACE_S = 3.0
_CANCEL_ALL: Callable[[Any], None] | None = getattr(asyncio.runners, "_cancel_all_tasks", None)


class LeakGuard:
    def __init__(self, grace_s: float = THREAD_GRACE_S) -> None:
        self.grace_s = grace_s
        self.leaked_tasks: list[str] = []
        self._before: set[threading.Thread] = set()
        self._original: Callable[[Any], None] | None = None

    def start(self) -> None:
        self._before = set(threading.enumerate())
        self._original = getattr(asyncio.runners, "_cancel_all_tasks", None)
        if self._original is not None:
            asyncio.runners._cancel_all_tasks = self._spy  # type: ignore[attr-defined]

    def _spy(self, loop: asyncio.AbstractEventLoop) -> None:
        self.leaked_tasks.extend(repr(t) for t in asyncio.all_tasks(loop) if not t.done())
        assert _CANCEL_ALL is not None
        _CANCEL_ALL(loop)  # the real one: an inner guard's leaks are its own

    def stop(self) -> list[str]:
        """Undo the hook; the problems found (empty when nothing leaked)."""
        if self._original is not None:
            asyncio.runners._cancel_all_tasks = self._original  # type: ignore[attr-defined]
        deadline = time.monotonic() + self.grace_s
        for thread in set(threading.enumerate()) - self._before:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = sorted(t.name for t in set(threading.enumerate()) - self._before if t.is_alive())
        problems = []
        if self.leaked_tasks:
            problems.append(
                f"asyncio tasks still pending when their loop closed: {self.leaked_tasks}"
            )
        if alive:
            problems.append(f"threads still running after the test: {alive}")
        return problems
