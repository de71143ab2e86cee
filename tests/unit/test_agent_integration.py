"""Agents against real mosquitto brokers on loopback (no namespaces, no root needed).

Three agents in a chain A - B - C, told their neighbours with --static-neighbour (mDNS and
nftables are off: this runs in the host's namespace and must not touch its firewall or LAN).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshd.codec import decode, sign_record
from meshd.errors import RejectReason
from meshd.records import Kind, NodeBody
from meshd.topics import record_topic
from node_agent.agent import Agent
from node_agent.config import load
from tests.agentkit import COMMUNITY, Broker, argv, free_port, provision, wait_until

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")
_wait = wait_until


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_chain_of_three_agents_shares_every_record_and_refuses_forgeries(tmp_path):
    import aiomqtt

    from node_agent.__main__ import _load_identity

    names = ["a", "b", "c"]
    _, keys = provision(tmp_path, names)
    brokers = {n: Broker(tmp_path, n) for n in names}
    probes = {n: free_port(socket.SOCK_DGRAM) for n in names}
    ids = {n: keys[n].node_id for n in names}

    def nb(n: str) -> str:
        return f"{ids[n]}@127.0.0.1:{brokers[n].port}/{probes[n]}"

    topology = {"a": ["b"], "b": ["a", "c"], "c": ["b"]}
    agents: dict[str, Agent] = {}
    try:
        for n in names:
            config = load(argv(tmp_path, n, brokers[n], probes[n], [nb(m) for m in topology[n]]))
            key, cert, community = _load_identity(config)
            agents[n] = await Agent(config, key, cert, community).__aenter__()  # type: ignore[arg-type]

        def complete() -> bool:
            return all(
                agents[n].store.get(ids[m], kind) is not None
                for n in names
                for m in names
                for kind in Kind
            )

        await _wait(complete, 15)
        # every broker holds every node's three records as retained messages
        for n in names:
            got: dict[str, bytes] = {}
            async with aiomqtt.Client("127.0.0.1", brokers[n].port) as client:
                await client.subscribe(f"mesh/v1/{COMMUNITY}/+/+")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        async for msg in client.messages:
                            got[msg.topic.value] = bytes(msg.payload)
            for m in names:
                for kind in Kind:
                    env = decode(got[record_topic(COMMUNITY, ids[m], kind)])
                    assert env.node_id == ids[m]

        # links: A sees B up with a clean ETX, C sees B
        await _wait(
            lambda: (
                (agents["a"].store.get(ids["a"], Kind.LINKS).body.links or [None])[0] is not None
            )
        )
        links = agents["c"].store.get(ids["a"], Kind.LINKS).body.links
        assert [e.neighbour for e in links] == [ids["b"]]
        await _wait(
            lambda: (
                (e := agents["c"].store.get(ids["b"], Kind.LINKS).body.links)
                and all(x.etx is not None and x.etx <= 1.05 for x in e)
                and len(e) == 2
            ),
            10,
        )

        # forgery and replay straight into A's broker: refused by A and by B, never at C
        forged_kit = sign_record(
            keys["a"], agents["a"].cert, NodeBody("a", "m", "s", ("10.0.0.1",)),
            seq=10**9, issued_at=int(time.time()), ttl_s=600,
        )  # fmt: skip
        forged = bytearray(forged_kit.raw)
        forged[forged.index(b'"model":"m"') + 9] = ord("x")  # signed bytes changed
        # current: a replay once b moves on (traffic: the node record is refreshed only hourly)
        old_b = agents["a"].store.get(ids["b"], Kind.TRAFFIC).raw
        b_seq = decode(old_b).seq
        await _wait(lambda: agents["c"].store.get(ids["b"], Kind.TRAFFIC).seq > b_seq, 10)
        before = {n: dict(agents[n].store.rejections) for n in names}
        async with aiomqtt.Client("127.0.0.1", brokers["a"].port) as client:
            await client.publish(
                record_topic(COMMUNITY, ids["a"], Kind.NODE), bytes(forged), retain=True
            )
            await client.publish(
                record_topic(COMMUNITY, ids["b"], Kind.TRAFFIC), old_b, retain=True
            )

        def counted(n: str, reason: RejectReason) -> bool:
            return agents[n].store.rejections[reason] > before[n].get(reason, 0)

        await _wait(
            lambda: (
                counted("a", RejectReason.BAD_SIGNATURE)
                and counted("b", RejectReason.BAD_SIGNATURE)
            ),
            10,
        )
        await _wait(lambda: counted("a", RejectReason.STALE), 10)
        assert agents["c"].store.get(ids["a"], Kind.NODE).body.model != "x"
        assert agents["c"].store.rejections[RejectReason.BAD_SIGNATURE] == before["c"].get(
            RejectReason.BAD_SIGNATURE, 0
        )
        # A put the good record back on its broker
        async with aiomqtt.Client("127.0.0.1", brokers["a"].port) as client:
            await client.subscribe(record_topic(COMMUNITY, ids["a"], Kind.NODE))
            async with asyncio.timeout(3):
                async for msg in client.messages:
                    assert decode(bytes(msg.payload)).node_id == ids["a"]
                    break

        # stopping C: B marks it lost (status offline / silence)
        await agents.pop("c").__aexit__(None, None, None)
        await _wait(lambda: not agents["b"].neighbours.entries[ids["c"]].up, 10)
        status = json.loads((tmp_path / "b" / "status.json").read_text())
        assert status["node_id"] == ids["b"]
    finally:
        for agent in agents.values():
            await agent.__aexit__(None, None, None)
        for b in brokers.values():
            b.stop()


@pytest.mark.timeout(60)
def test_kill_9_keeps_seq_growing_and_counters_monotonic(tmp_path):
    """A real meshd process, killed with SIGKILL and restarted on the same state dir."""
    names = ["k", "p"]
    _, keys = provision(tmp_path, names)
    broker = Broker(tmp_path, "k")
    probe = free_port(socket.SOCK_DGRAM)
    peer_probe = free_port(socket.SOCK_DGRAM)
    # a silent static neighbour on lo: its counters are lo's counters, which we drive ourselves
    args = argv(tmp_path, "k", broker, probe, [f"{keys['p'].node_id}@127.0.0.1:1/{peer_probe}"])
    meshd = [sys.executable, "-m", "node_agent"]
    status_file = tmp_path / "k" / "status.json"

    def status() -> dict:
        try:
            return json.loads(status_file.read_text())
        except (OSError, ValueError):
            return {}

    def lo_rx() -> int:
        return int(Path("/sys/class/net/lo/statistics/rx_bytes").read_text())

    def wait_status(pred, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = status()
            if s and pred(s):
                s["lo_rx"] = lo_rx()
                return s
            time.sleep(0.1)
        raise AssertionError(f"status never satisfied: {status()}")

    def lo_traffic(nbytes: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(nbytes // 1000):
                s.sendto(b"x" * 1000, ("127.0.0.1", peer_probe))

    key = f"nb/{keys['p'].node_id}/lo/rx_bytes"
    proc = subprocess.Popen([*meshd, *args], stderr=subprocess.DEVNULL)
    try:
        first = wait_status(lambda s: s["seq_next"] > 5 and key in s["totals"])
        lo_traffic(200_000)
        before_kill = wait_status(lambda s: s["totals"][key] >= first["totals"][key] + 200_000)
        lo_traffic(100_000)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        status_file.unlink()
        lo_traffic(50_000)  # while down: still this neighbour's bytes, counted once on restart
        proc = subprocess.Popen([*meshd, *args], stderr=subprocess.DEVNULL)
        after = wait_status(lambda s: key in s["totals"] and s["seq_next"] > 0)
        assert after["seq_next"] > before_kill["seq_next"]
        # resumed from the saved baseline: nothing lost, nothing counted twice
        assert after["totals"][key] >= before_kill["totals"][key] + 150_000
        # the raw counter moved this much meanwhile; a double count of the ~300 kB between the
        # last save and the kill would show up as that much extra
        counted = after["totals"][key] - first["totals"][key]
        raw = after["lo_rx"] - first["lo_rx"]
        assert abs(counted - raw) < 100_000, (counted, raw)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        saved = json.loads((tmp_path / "k" / "state" / "state.json").read_text())
        assert saved["seq_reserved"] >= after["seq_next"]
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()
        os.sync()


def _lo_traffic(nbytes: int, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(nbytes // 1000):
            s.sendto(b"x" * 1000, ("127.0.0.1", port))


def _lo_rx() -> int:
    return int(Path("/sys/class/net/lo/statistics/rx_bytes").read_text())


@pytest.mark.asyncio
async def test_per_neighbour_meters_count_from_agent_start_not_from_discovery(tmp_path):
    """Traffic before a neighbour is discovered is its own; a new node on the link gets a fresh
    meter. The agent's own fold over the real `lo` counters (no broker, no tasks started)."""
    from node_agent.__main__ import _load_identity

    _, keys = provision(tmp_path, ["m", "x", "y"])
    broker_port, sink = free_port(), free_port(socket.SOCK_DGRAM)
    args = [
        "--key", str(tmp_path / "m" / "node.key"),
        "--cert", str(tmp_path / "m" / "cert.json"),
        "--community-file", str(tmp_path / "community.yaml"),
        "--state-dir", str(tmp_path / "m" / "state"),
        "--mesh-iface", "lo", "--hostname", "m", "--broker-port", str(broker_port),
        "--no-nft", "--no-mdns",
    ]  # fmt: skip
    config = load(args)
    key, cert, community = _load_identity(config)
    agent = Agent(config, key, cert, community)  # type: ignore[arg-type]
    x, y = keys["x"].node_id, keys["y"].node_id
    rx = f"nb/{x}/lo/rx_bytes"

    raw0 = _lo_rx()
    await agent._read_counters()  # agent start: lo watched, nobody known
    _lo_traffic(300_000, sink)
    agent.neighbours.seen(x, "lo", "127.0.0.1", 1, time.monotonic())  # discovered later
    await agent._read_counters()
    counted = agent.ledger.total(rx)
    assert 300_000 <= counted <= _lo_rx() - raw0, counted

    # x vanishes and y turns up on the same link: y starts where x stopped
    agent.neighbours.gone(x, time.monotonic())
    agent.neighbours.seen(y, "lo", "127.0.0.2", 1, time.monotonic())
    _lo_traffic(100_000, sink)
    raw1 = _lo_rx()
    await agent._read_counters()
    assert agent.ledger.total(rx) == counted
    assert 100_000 <= agent.ledger.total(f"nb/{y}/lo/rx_bytes") <= _lo_rx() - raw0 - counted

    # both heard at once: a shared link, not credited to either by the interface counters
    agent.neighbours.heard(x, time.monotonic())
    y_total = agent.ledger.total(f"nb/{y}/lo/rx_bytes")
    _lo_traffic(50_000, sink)
    await agent._read_counters()
    assert agent.ledger.total(rx) == counted
    assert agent.ledger.total(f"nb/{y}/lo/rx_bytes") == y_total
    assert _lo_rx() - raw1 >= 50_000


async def _lone_agent(tmp_path: Path, name: str) -> tuple[Agent, Broker, str]:
    """One started agent with no neighbours on its own real broker; the caller stops both."""
    from node_agent.__main__ import _load_identity

    _, keys = provision(tmp_path, [name])
    broker = Broker(tmp_path, name)
    config = load(argv(tmp_path, name, broker, free_port(socket.SOCK_DGRAM), []))
    key, cert, community = _load_identity(config)
    agent = await Agent(config, key, cert, community).__aenter__()  # type: ignore[arg-type]
    return agent, broker, keys[name].node_id


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_restarted_broker_gets_fresh_own_records_before_their_refresh(tmp_path):
    """The broker comes back empty: the agent refills it and signs every kind afresh at once,
    not at the node record's next refresh (10 publish intervals away), so neighbours see the
    node current within seconds of its broker's restart."""
    agent, broker, node_id = await _lone_agent(tmp_path, "r")
    try:
        await _wait(lambda: all(agent.store.get(node_id, k) is not None for k in Kind), 15)
        before = {k: agent.store.get(node_id, k).seq for k in Kind}
        schedule = agent.publisher.schedule
        node_due = schedule.next_refresh[Kind.NODE]
        broker.stop()
        broker.start()
        await _wait(lambda: all(agent.store.get(node_id, k).seq > before[k] for k in Kind), 15)
        renewed_at = agent.rt.clock.monotonic()
        assert renewed_at < node_due, (
            f"node record re-signed only at its refresh ({renewed_at:.1f} >= {node_due:.1f})"
        )
    finally:
        await agent.__aexit__(None, None, None)
        broker.stop()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_a_stop_cut_short_after_the_tasks_end_still_leaves_offline_on_the_broker(tmp_path):
    """SIGTERM then SIGKILL (or power) right after the relay's clean disconnect, which drops
    the will: the agent said `offline` on the live connection before that, so the mesh does not
    go on believing a dead node is online."""
    import aiomqtt

    from meshd.topics import status_topic

    agent, broker, node_id = await _lone_agent(tmp_path, "s")
    topic = status_topic(COMMUNITY, node_id)

    async def retained_status() -> bytes:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(topic)
            async with asyncio.timeout(3):
                async for msg in client.messages:
                    return bytes(msg.payload)
        return b""

    async def cut_short(said: bool) -> None:  # the process dies before any goodbye connection
        await agent.discovery.close()

    stopped = False
    try:
        await _wait(lambda: agent.store.get(node_id, Kind.NODE) is not None, 15)
        assert (await retained_status()).startswith(b"online")
        agent._goodbye = cut_short  # type: ignore[method-assign]
        stopped = True
        await agent.__aexit__(None, None, None)
        assert await retained_status() == b"offline"
    finally:
        if not stopped:
            await agent.__aexit__(None, None, None)
        broker.stop()
