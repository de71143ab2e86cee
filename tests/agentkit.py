"""Helpers for tests that run real agents against real mosquitto brokers on loopback; the
harness shared with bench/ lives in `devkit.loopback` and is re-exported here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from devkit.loopback import COMMUNITY, Broker, argv, free_port, provision

__all__ = [
    "COMMUNITY",
    "Broker",
    "agent_config_args",
    "argv",
    "free_port",
    "make_agent",
    "provision",
    "wait_until",
]


async def wait_until(predicate: Callable[[], object], limit_s: float = 10.0) -> float:
    """Poll `predicate` until true; seconds it took. Raises AssertionError at the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def agent_config_args(tmp: Path, name: str, *extra: str) -> list[str]:
    """meshd arguments for an agent that is built but not started (no broker, no mDNS)."""
    return [
        "--key", str(tmp / name / "node.key"),
        "--cert", str(tmp / name / "cert.json"),
        "--community-file", str(tmp / "community.yaml"),
        "--state-dir", str(tmp / name / "state"),
        "--mesh-iface", "lo", "--hostname", name, "--no-nft", "--no-mdns",
        *extra,
    ]  # fmt: skip


def make_agent(tmp: Path, name: str, *extra: str) -> object:
    """An `Agent` for `name` (provisioned in `tmp` already), built, not entered."""
    from node_agent.__main__ import _load_identity
    from node_agent.agent import Agent
    from node_agent.config import load

    config = load(agent_config_args(tmp, name, *extra))
    key, cert, community = _load_identity(config)
    return Agent(config, key, cert, community)  # type: ignore[arg-type]
