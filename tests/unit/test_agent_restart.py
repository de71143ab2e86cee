"""kill -9 and restart: what the agent publishes never goes backwards, nothing is counted twice.

Interface counters come from a fake /sys reader so the bytes are exact; the agent, its state
file and its ledger are real.
"""

from __future__ import annotations

import time

import pytest

from node_agent import system


@pytest.fixture
def make_agent(tmp_path):
    from node_agent.__main__ import _load_identity
    from node_agent.agent import Agent
    from node_agent.config import load
    from tests.agentkit import provision

    _, keys = provision(tmp_path, ["m", "a", "b"])
    config = load(
        [
            "--key", str(tmp_path / "m" / "node.key"),
            "--cert", str(tmp_path / "m" / "cert.json"),
            "--community-file", str(tmp_path / "community.yaml"),
            "--state-dir", str(tmp_path / "m" / "state"),
            "--mesh-iface", "eth1", "--no-nft", "--no-mdns",
        ]
    )  # fmt: skip
    key, cert, community = _load_identity(config)

    def make():
        agent = Agent(config, key, cert, community)  # type: ignore[arg-type]
        agent._load_state()
        agent._reserve()
        return agent

    return make, keys["a"].node_id, keys["b"].node_id


@pytest.fixture
def wire(monkeypatch):
    raw = {"rx_bytes": 1_000, "tx_bytes": 0, "rx_packets": 0, "tx_packets": 0}
    monkeypatch.setattr(system, "iface_stats", lambda iface: dict(raw) if iface == "eth1" else None)
    monkeypatch.setattr(system, "iface_index", lambda iface: 7)
    return raw


@pytest.mark.asyncio
async def test_restored_meters_catch_up_before_discovery(make_agent, wire):
    make, a, _ = make_agent
    agent = make()
    await agent._read_counters()  # start: nobody known yet
    agent.save_state()
    agent.neighbours.seen(a, "eth1", "fe80::a%eth1", 1883, time.monotonic())
    wire["rx_bytes"] = 5_000
    await agent._read_counters()  # a found: its meter is new, so the state is saved
    wire["rx_bytes"] = 90_000
    await agent._read_counters()  # counted and published, then kill -9 (no save)
    published = agent.ledger.total(f"nb/{a}/eth1/rx_bytes")
    assert published == 89_000

    wire["rx_bytes"] = 95_000  # carried while the agent was down
    again = make()
    await again._read_counters()  # the first read, before mDNS has found anyone
    assert again.ledger.total(f"nb/{a}/eth1/rx_bytes") == 94_000  # never below what was published
    again.neighbours.seen(a, "eth1", "fe80::a%eth1", 1883, time.monotonic())
    wire["rx_bytes"] = 96_000
    await again._read_counters()
    assert again.ledger.total(f"nb/{a}/eth1/rx_bytes") == 95_000  # every byte once


@pytest.mark.asyncio
async def test_a_link_passing_to_another_node_is_saved_at_once(make_agent, wire):
    make, a, b = make_agent
    agent = make()
    await agent._read_counters()
    agent.save_state()
    agent.neighbours.seen(a, "eth1", "fe80::a%eth1", 1883, time.monotonic())
    wire["rx_bytes"] = 3_000
    await agent._read_counters()
    writes = agent.counters["state_writes"]
    wire["rx_bytes"] = 3_500
    await agent._read_counters()
    assert agent.counters["state_writes"] == writes  # plain counting writes nothing
    agent.neighbours.gone(a, time.monotonic())
    agent.neighbours.seen(b, "eth1", "fe80::b%eth1", 1883, time.monotonic())
    wire["rx_bytes"] = 10_000  # router replaced: b from here
    await agent._read_counters()
    assert agent.counters["state_writes"] == writes + 1
    wire["rx_bytes"] = 12_000
    await agent._read_counters()
    a_total, b_total = (agent.ledger.total(f"nb/{n}/eth1/rx_bytes") for n in (a, b))

    wire["rx_bytes"] = 12_500  # kill -9, restart: b keeps the link, a's bytes stay a's
    again = make()
    await again._read_counters()
    assert again.ledger.total(f"nb/{a}/eth1/rx_bytes") == a_total
    assert again.ledger.total(f"nb/{b}/eth1/rx_bytes") == b_total + 500
