"""Run the admin CLI's reading commands inside a lab node, against that node's own broker.

The CLI verifies every record itself with the community file the lab wrote; nothing here parses
records on the CLI's behalf.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cli.lab import broker
from cli.lab.lab import Lab
from cli.lab.topology import Topology
from tests.lab.labkit import lab_name, skip_reason

T = TypeVar("T")

# fast agent timers so the suite stays short (publish every 2 s; records live 3 intervals)
FAST_AGENT = ["--publish-interval", "2", "--probe-interval", "0.1", "--mdns-fast"]
MUTUALMESH = str(Path(sys.executable).parent / "mutualmesh")


@contextmanager
def agent_lab(suffix: str, topo: Topology) -> Iterator[Lab]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(lab_name(suffix), topo, agents=True, agent_args=FAST_AGENT, echo=print)
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        lab.down()


def cli(lab: Lab, node: str, *args: str, timeout: float = 60) -> tuple[int, str]:
    """`mutualmesh ARGS --broker <node's broker> --community <lab community>` inside `node`."""
    argv: Sequence[str] = [
        MUTUALMESH,
        *args,
        "--broker",
        f"127.0.0.1:{broker.BROKER_PORT}",
        "--community",
        str(lab.run_dir / "community.yaml"),
    ]
    proc = lab.popen(node, argv)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def cli_json(lab: Lab, node: str, *args: str) -> tuple[int, Any]:
    code, out = cli(lab, node, *args, "--json")
    try:
        return code, json.loads(out)
    except ValueError:
        raise AssertionError(
            f"`mutualmesh {' '.join(args)}` printed no JSON ({code}): {out}"
        ) from None


def wait_for(what: str, probe: Callable[[], T | None], limit_s: float, step: float = 1.0) -> T:
    deadline = time.monotonic() + limit_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"{what}: not reached within {limit_s} s (last: {last!r})")
