"""Fake neighbours that accept TCP and never answer MQTT must not delay a real one: the replay
slot is taken only after CONNACK (issue 9: 12 fakes delayed a real neighbour to 36 s)."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from meshd.codec import sign_record
from meshd.records import Kind, NodeBody
from meshd.topics import record_topic
from provisioning.keys import load_certificate
from tests.agentkit import COMMUNITY, Broker, free_port, make_agent, provision, wait_until

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs mosquitto")
FAKES = 12


def fake_id(i: int) -> str:
    return "".join("abcdefghijklmnopqrstuvwxyz234567"[(i >> (5 * k)) % 32] for k in range(16))


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_silent_fake_neighbours_do_not_delay_a_real_one(tmp_path: Path):
    import aiomqtt

    _, keys = provision(tmp_path, ["m", "x"])
    local, real = Broker(tmp_path, "m"), Broker(tmp_path, "x")
    silent = [socket.create_server(("127.0.0.1", 0), backlog=64) for _ in range(FAKES)]
    x = keys["x"]
    env = sign_record(
        x,
        load_certificate(tmp_path / "x" / "cert.json"),
        NodeBody("x", "m", "s", ()),
        seq=1,
        issued_at=int(time.time()),
        ttl_s=600,
    )
    async with aiomqtt.Client("127.0.0.1", real.port) as client:
        await client.publish(record_topic(COMMUNITY, x.node_id, Kind.NODE), env.raw, retain=True)
    statics: list[str] = []
    for i, s in enumerate(silent):  # the fakes first: they get their relay tasks first
        statics += ["--static-neighbour", f"{fake_id(i)}@127.0.0.1:{s.getsockname()[1]}"]
    statics += ["--static-neighbour", f"{x.node_id}@127.0.0.1:{real.port}"]
    agent: Any = make_agent(
        tmp_path, "m", "--broker-port", str(local.port), "--metrics-port", "0",
        "--probe-port", str(free_port(socket.SOCK_DGRAM)), "--babel-port", str(free_port()),
        *statics,
    )  # fmt: skip
    try:
        await agent.__aenter__()
        took = await wait_until(lambda: agent.store.get(x.node_id, Kind.NODE) is not None, 20)
        assert took < 3.0, took  # before: up to 3 s per silent fake, 36 s in all
        assert agent.neighbours.entries[x.node_id].verified
        assert not any(agent.neighbours.entries[fake_id(i)].verified for i in range(FAKES))
    finally:
        await agent.__aexit__(None, None, None)
        for s in silent:
            s.close()
        local.stop()
        real.stop()
