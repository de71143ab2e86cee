"""Hostile input against the agent's own code paths (issue 9): each test feeds what an attacker
in radio range can send and checks it is counted and dropped, never fatal, never believed."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshd.codec import sign_record
from meshd.linkquality import ECHO, PROBE, Packet
from meshd.records import Kind, NodeBody
from meshd.topics import record_topic, revocation_topic
from meshd.trust import Revocation
from node_agent import fsutil
from node_agent.discovery import parse_announcement
from node_agent.neighbours import NeighbourTable
from node_agent.relay_core import LOCAL, Source
from tests.agentkit import COMMUNITY, make_agent, provision


@dataclass
class Topic:
    value: str


@dataclass
class Message:
    """What aiomqtt hands the relay: a topic and a payload."""

    topic: Topic
    payload: Any


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    admin, keys = provision(tmp_path, ["m", "x", "y"])
    a: Any = make_agent(tmp_path, "m")
    a.admin, a.keys = admin, keys
    return a


def revocation(agent: Any, victim: str, reason: str) -> Revocation:
    return Revocation.issue(
        [agent.admin],
        community=COMMUNITY,
        key=agent.keys[victim].public,
        issued_at=int(time.time()),
        reason=reason,
    )


# -- every message handler catches everything -------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 2048,
        b'{"v":1,"type":"revocation","reason":"\\ud800"}',
        "SURROGATE",  # a correctly signed revocation whose reason is a lone surrogate
    ],
    ids=["deep-json", "surrogate-unsigned", "surrogate-signed"],
)
async def test_a_hostile_revocation_is_counted_and_the_agent_lives(agent: Any, payload: Any):
    if payload == "SURROGATE":
        rev = revocation(agent, "x", "x")
        data = json.loads(rev.encode())
        data["reason"] = "\ud800"
        payload = json.dumps(data).encode()
    topic = revocation_topic(COMMUNITY, agent.keys["x"].node_id)
    for source in (LOCAL, Source("fe80::1%lo", agent.keys["y"].node_id)):
        await agent.relay.handle(source, Message(Topic(topic), payload))
    assert (
        agent.core.counters["revocation_malformed"] + agent.core.counters["revocation_refused"] == 2
    )
    assert agent.core.counters["internal_error"] == 0


@pytest.mark.asyncio
async def test_whatever_performing_an_action_raises_is_caught_and_logged(agent: Any, caplog):
    class Boom(Exception):
        pass

    async def broken(actions: list[Any]) -> None:
        raise Boom("publish path broke")

    agent.relay.perform = broken
    agent._reserve()
    env = agent.publisher.sign(NodeBody("m", "m", "s", ()), 60)
    topic = record_topic(COMMUNITY, agent.node_id, Kind.NODE)
    await agent.relay.handle(LOCAL, Message(Topic(topic), env.raw))
    assert agent.core.counters["internal_error"] == 1
    assert any(r.exc_info and r.exc_info[0] is Boom for r in caplog.records)


# -- revocations and seq survive restarts and full disks --------------------------------------


@pytest.mark.asyncio
async def test_revocations_are_persisted_and_reloaded(agent: Any, tmp_path: Path):
    agent._load_state()
    agent._reserve()
    rev = revocation(agent, "x", "key stolen")
    topic = revocation_topic(COMMUNITY, agent.keys["x"].node_id)
    await agent.relay.handle(LOCAL, Message(Topic(topic), rev.encode()))
    assert agent.keys["x"].node_id in agent.store.revoked
    again: Any = make_agent(tmp_path, "m")
    again._load_state()
    assert agent.keys["x"].node_id in again.store.revoked  # after a reboot: still revoked
    held = [p.topic for p in again.core.held()]
    assert topic in held  # and passed on again to our broker


def test_a_short_write_on_a_full_disk_keeps_the_old_state(agent: Any, monkeypatch):
    agent._load_state()
    agent._reserve()
    agent.save_state()
    path = agent.state.path
    good = path.read_bytes()
    reserved = agent.seq.reserved
    real_write = os.write

    room = [10]

    def full_disk(fd: int, data: Any) -> int:  # 10 bytes fit, then the flash is full
        n = min(room[0], len(data))
        room[0] -= n
        return real_write(fd, bytes(data)[:n]) if n else 0

    monkeypatch.setattr(fsutil.os, "write", full_disk)
    with pytest.raises(OSError, match="short write"):
        agent.save_state()
    monkeypatch.undo()
    assert path.read_bytes() == good  # the old, complete file
    assert not list(path.parent.glob(".*.tmp"))
    restarted: Any = make_agent(agent.config.state_dir.parent.parent, "m")
    restarted._load_state()
    restarted._reserve()
    assert restarted.seq.next_seq > reserved  # never restarts at 1
    assert path.stat().st_mode & 0o777 == 0o600


# -- mDNS claims ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("txt", "why"),
    [
        ({"v": "1", "id": "../../etc", "community": COMMUNITY}, "bad_id"),
        ({"v": "1", "id": "A" * 16, "community": COMMUNITY}, "bad_id"),
        ({"v": "1", "id": "a" * 16, "community": COMMUNITY, "fp": "zz"}, "bad_fingerprint"),
        ({"v": "1", "id": "a" * 16, "community": COMMUNITY, "port": "99999"}, "bad_port"),
        ({"v": "1", "id": "a" * 16, "community": COMMUNITY, "port": "1e3"}, "bad_port"),
        ({"v": "2", "id": "a" * 16, "community": COMMUNITY}, "protocol_version"),
        ({"v": "1", "id": "a" * 16, "community": "other"}, "other_community"),
    ],
)
def test_announcements_must_be_well_formed(txt: dict[str, str], why: str):
    props = {k.encode(): v.encode() for k, v in txt.items()}
    assert parse_announcement(props, COMMUNITY, "b" * 16) == (None, why)


def test_a_good_announcement_parses():
    props = {b"v": b"1", b"id": b"a" * 16, b"community": COMMUNITY.encode(), b"port": b"1884",
             b"probe": b"4244", b"fp": b"0123456789abcdef", b"junk": None}  # fmt: skip
    ann, why = parse_announcement(props, COMMUNITY, "b" * 16)
    assert why == ""
    assert ann is not None
    assert (ann.node_id, ann.broker_port, ann.probe_port) == ("a" * 16, 1884, 4244)


def fake_id(i: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    out = ""
    for _ in range(16):
        out += alphabet[i % 32]
        i //= 32
    return out


def test_3000_fake_ids_do_not_grow_state_or_status(agent: Any, monkeypatch):
    import ipaddress

    from node_agent.system import LocalAddress

    local = [LocalAddress("lo", 1, "10.5.0.1", ipaddress.ip_network("10.5.0.0/16"))]
    monkeypatch.setattr(agent.rt.sys, "local_addresses", lambda ifaces: local)
    for i in range(3000):
        props = {b"v": b"1", b"id": fake_id(i).encode(), b"community": COMMUNITY.encode()}
        address = f"10.5.{1 + i % 3}.{1 + i % 200}"  # a few hosts, many ids
        agent.discovery.on_resolved(f"{fake_id(i)}._x", props, [address])
    assert len(agent.neighbours.entries) <= agent.neighbours.max_entries
    assert len(json.dumps(agent.status())) < 40_000


def test_a_fake_id_on_a_point_to_point_link_does_not_stop_the_real_neighbours_credit(agent: Any):
    real, fake = agent.keys["x"].node_id, agent.keys["y"].node_id
    now = time.monotonic()
    agent.neighbours.seen(real, "lo", "fe80::a%lo", 1883, now)
    agent.neighbours.verify(real, "fe80::a%lo")
    agent.neighbours.seen(fake, "lo", "fe80::f%lo", 1883, now)  # also up, never verified
    assert agent.p2p_owner("lo") == real


def test_a_verified_live_neighbour_is_not_moved_by_an_announcement():
    table = NeighbourTable()
    table.seen("a" * 16, "mesh0", "fe80::a%mesh0", 1883, 0.0)
    assert table.verify("a" * 16, "fe80::a%mesh0")
    assert table.seen("a" * 16, "mesh0", "fe80::bad%mesh0", 1883, 1.0) is None
    assert table.entries["a" * 16].address == "fe80::a%mesh0"


# -- UDP probes -------------------------------------------------------------------------------


def probe_packet(node_id: str) -> bytes:
    return Packet(PROBE, 77, 1, 1.0, 0, 0, node_id).encode()


def test_probes_keep_alive_only_a_verified_neighbour_at_its_own_address(agent: Any):
    x = agent.keys["x"].node_id
    agent.neighbours.seen(x, "lo", "fe80::a%lo", 1883, 0.0)
    agent.neighbours.entries[x].up = False  # lost: only an echo can bring it back
    echo = Packet(ECHO, agent.prober.session, 1, 1.0, 1, 1, x).encode()
    agent.prober.on_datagram(echo, ("fe80::a", 4243, 0, 1))
    assert not agent.neighbours.entries[x].up  # unverified: measured, not believed
    agent.neighbours.verify(x, "fe80::a%lo")
    agent.prober.on_datagram(echo, ("fe80::666", 4243, 0, 1))
    assert not agent.neighbours.entries[x].up  # verified id, someone else's address
    agent.prober.on_datagram(probe_packet(x), ("fe80::a", 4243, 0, 1))
    assert not agent.neighbours.entries[x].up  # a probe proves nothing, even from there
    wrong = Packet(ECHO, agent.prober.session ^ 1, 1, 1.0, 1, 1, x).encode()
    agent.prober.on_datagram(wrong, ("fe80::a", 4243, 0, 1))
    assert not agent.neighbours.entries[x].up  # an echo of a session we never sent
    agent.prober.on_datagram(echo, ("fe80::a", 4243, 0, 1))
    assert agent.neighbours.entries[x].up
    assert agent.prober.counters["probe_unverified"] == 2
    assert agent.prober.counters["probe_bad_session"] == 1
    agent.prober.on_datagram(b"\x00" * 7, ("fe80::a", 4243, 0, 1))
    assert agent.prober.counters["probe_malformed"] == 1


def test_our_links_record_names_only_neighbours_that_proved_their_id(agent: Any):
    x, y = agent.keys["x"].node_id, agent.keys["y"].node_id
    agent.neighbours.seen(x, "lo", "fe80::a%lo", 1883, time.monotonic())
    agent.neighbours.seen(y, "lo", "fe80::b%lo", 1883, time.monotonic())
    agent.neighbours.verify(x, "fe80::a%lo")
    agent._reserve()
    links = next(e for e in agent.own_records() if e.kind is Kind.LINKS)
    assert [e.neighbour for e in links.body.links] == [x]


@pytest.mark.asyncio
async def test_lost_state_never_restarts_seq_below_what_the_mesh_holds(agent: Any):
    """State gone (new flash, corrupt file): our old records come back from the brokers, and
    the agent continues above them instead of publishing seq 1 that everyone refuses."""
    agent._load_state()
    agent._reserve()
    assert agent.seq.next_seq == 1
    old = sign_record(
        agent.key, agent.cert, NodeBody("m", "m", "s", ()), seq=5_000,
        issued_at=int(time.time()), ttl_s=600,
    )  # fmt: skip
    topic = record_topic(COMMUNITY, agent.node_id, Kind.NODE)
    await agent.relay.handle(LOCAL, Message(Topic(topic), old.raw))
    assert agent.seq.next_seq == 5_001
    assert agent.seq.reserved >= 5_001
    saved = json.loads(agent.state.path.read_text())
    assert saved["seq_reserved"] >= 5_001  # persisted before any number is used
    mine = next(e for e in agent.own_records() if e.kind is Kind.NODE)
    assert mine.seq > 5_000


@pytest.mark.asyncio
async def test_a_failing_activity_is_logged_and_restarted_not_fatal(agent: Any, caplog):
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise KeyError("something no handler foresaw")

    agent.rt.backoff = lambda attempt, cap=10.0: 0.0
    await agent._supervised("flaky", flaky)
    assert len(runs) == 3
    assert agent.counters["task_failed/flaky"] == 2
    assert sum(1 for r in caplog.records if r.exc_info and r.exc_info[0] is KeyError) == 2
