"""The relay simulation at N = 100 as a correctness test: convergence, no regression, healing.

The large runs are `bench/relay_scale.py`; here the same code must simply be right: every node
ends with the same store, no record ever replaced a newer one, a partition heals, and the
header triage drops only what is not new.
"""

from __future__ import annotations

import random

import pytest

from bench.relay_counting import COUNTER, Stats, counting
from bench.relay_sim import EPOCH, Sim
from bench.relay_topology import chain, geometric
from meshd import sync
from meshd.codec import sign_record
from meshd.ids import SigningKey
from meshd.records import Kind, LinksBody
from meshd.store import RecordStore
from meshd.topics import record_topic
from meshd.trust import Enrollment, Trust
from node_agent.relay_core import RelayCore, Source, Stored


def converged(sim: Sim) -> bool:
    first = sim.nodes[0].relay.store.state()
    return all(node.relay.store.state() == first for node in sim.nodes[1:])


@pytest.mark.parametrize("protocol", ["old", "new"])
def test_hundred_nodes_converge_and_heal(protocol: str) -> None:
    graph, pos = geometric(100, 5.0, random.Random(7))
    cut = [
        (i, j) for i in graph for j in graph[i] if i < j and (pos[i][0] < 0.5) != (pos[j][0] < 0.5)
    ]
    with counting():
        sim = Sim(graph, protocol, seed=3, loss=0.01, links_changes_per_hour=6.0)
        sim.start()
        sim.tracker.measuring = True
        sim.run(120.0 if protocol == "new" else 30.0)
        sim.cut(cut)
        assert not sim.link_up(*cut[0])
        sim.run(sim.now + 60.0)
        # both halves published during the cut, so the halves now disagree
        assert not converged(sim)
        restored = sim.now
        sim.restore(cut)
        sim.expect_heal()
        assert sim.tracker.short > 0
        while sim.tracker.healed_at is None and sim.now < restored + 10:
            sim.run(sim.now + 0.1)
    assert sim.tracker.healed_at is not None, f"{sim.tracker.short} nodes still behind"
    assert sim.tracker.healed_at - restored <= 5.0
    assert sim.tracker.regressions == 0
    assert sim.tracker.reach_times, "no record was followed to every node"
    # once nobody signs any more and nothing is in flight, every store is the same
    with counting():
        sim.publishing = False
        sim.run(sim.now + 5.0)
    assert converged(sim)
    assert len(sim.nodes[0].relay.store) == 300


def test_new_protocol_reaches_a_chain_end_to_end() -> None:
    with counting():
        sim = Sim(chain(30), "new", seed=1, links_changes_per_hour=0)
        sim.start()
        sim.tracker.measuring = True
        sim.change_links(sim.nodes[0])
        sim.run(sim.now + 10.0)
    assert sim.tracker.reach_times
    assert max(sim.tracker.reach_times) < 1.0
    assert converged(sim)


def test_relay_core_never_takes_an_older_record_and_triages_copies() -> None:
    admin, key = SigningKey(bytes(32)), SigningKey(bytes([1]) * 32)
    cert = Enrollment.issue(
        admin, community="sim", hostname="n1", key=key.public, expires=2_000_000_000
    )
    relay = RelayCore(RecordStore(Trust("sim", frozenset({admin.public}))), "x" * 16)
    records = [
        sign_record(key, cert, LinksBody(()), seq=s, issued_at=1_800_000_000, ttl_s=600)
        for s in (5, 3, 9, 9)
    ]
    topic = record_topic("sim", key.node_id, Kind.LINKS)
    peer = Source("peer", "peer")
    with counting():
        COUNTER.current = stats = Stats()
        got = [
            [
                a.envelope.seq
                for a in relay.on_message(peer, topic, env.raw, EPOCH + 10.0)
                if isinstance(a, Stored)
            ]
            for env in records
        ]
    assert got == [[5], [], [9], []]
    assert relay.store.get(key.node_id, Kind.LINKS) == records[2]
    # the older and the repeated copy were refused from their headers: two decodes, not four
    assert stats.decodes == 2
    assert sum(relay.store.triaged.values()) == 2


def test_publish_schedule_signs_each_kind_on_its_own_clock() -> None:
    schedule = sync.PublishSchedule(sync.agent_policy(60.0))
    assert set(schedule.due(0.0)) == set(Kind)  # never published: all due at once
    for kind in Kind:
        schedule.published(kind, 0.0)
    assert schedule.due(30.0) == []
    assert schedule.wake_at(30.0) == 60.0
    assert set(schedule.due(60.0)) == {Kind.LINKS, Kind.TRAFFIC}  # the node record waits
    for kind in (Kind.LINKS, Kind.TRAFFIC):
        schedule.published(kind, 60.0)
    schedule.change(Kind.LINKS)
    assert schedule.due(60.5) == []  # at most once a second
    assert schedule.due(61.0) == [Kind.LINKS]
    assert Kind.NODE in schedule.due(600.0)


def test_peer_modes_keep_every_node_on_the_tree() -> None:
    modes = sync.PeerModes()
    for peer in ("a", "b", "c"):
        modes.up(peer)
    assert modes.prune("a")
    assert modes.prune("b")
    assert not modes.prune("c")  # never the last eager link
    assert modes.eager == {"c"}
    assert modes.pruned_by("c") == "a"  # told to drop its last one: grafts another at once
    assert modes.eager == {"a"}
    assert modes.down("a") == ["b", "c"]  # an eager link lost: every lazy link turns eager
    assert modes.eager == {"b", "c"}
    assert not modes.lazy
    have = sync.Have("x" * 16, Kind.LINKS, 4)
    modes.announced("b", have, 10.0)
    assert modes.overdue(10.2) == {}
    assert modes.overdue(10.6) == {"b": [have]}
    modes.announced("b", have, 11.0)
    modes.arrived(have)  # the tree delivered it: nothing to pull
    assert modes.overdue(12.0) == {}


def test_headers_round_trip_and_hostile_ones_are_dropped() -> None:
    heads = [sync.Have("b" * 16, Kind.NODE, 2), sync.Have("a" * 16, Kind.TRAFFIC, 9)]
    data = sync.encode_headers("have", heads)
    assert sync.decode_headers("have", data) == sorted(heads)
    assert sync.decode_headers("want", data) is None
    for bad in (b"[", b'{"have":[["x",1,2]]}', b'{"have":[["' + b"a" * 16 + b'","node",-1]]}'):
        assert sync.decode_headers("have", bad) is None
