"""The fault suite (issue 9): real agents in the 7-node street, broken the way routers break.

A node's broker dies; every agent is killed at once and restarted (boot storm); the street is
cut in two halves that keep publishing and is healed; a hostile neighbour announces fake ids and
serves junk from its own broker. Every wait is a condition with a deadline; the timings are
printed so they can be quoted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.lab import procs
from cli.lab.topology import from_yaml_text, neighbourhood
from meshd.records import Kind
from tests.lab.labkit import AgentMesh, agent_mesh, partition_and_heal, wait_for

pytestmark = pytest.mark.lab

BOOT_STORM_LIMIT_S = 10.0  # issue 9: the 7-node mesh converges again within this
HEAL_LIMIT_S = 5.0  # issue 9: every broker holds every newest record this soon after routes
HALF_A = ("n1", "n2", "n6")  # the other half is n3, n4, n5, n7
PARTITION = (("n2", "n3"), ("n5", "n6"), ("n6", "n7"))


@pytest.fixture(scope="module")
def mesh() -> Iterator[AgentMesh]:
    with agent_mesh("fl", neighbourhood()) as kit:
        wait_for("the first convergence", kit.whole, 60, step=0.2)
        yield kit


def test_a_killed_broker_is_refilled_by_its_agent_and_nothing_is_lost(mesh: AgentMesh):
    lab, node = mesh.lab, "n4"
    wait_for("a whole picture", mesh.whole, 30, step=0.2)
    held = mesh.watch[node].newest()
    agent = lab.node_procs(node)["agent"]
    assert lab.kill(node, "mosquitto") == [f"{node}/mosquitto"]
    assert lab.start(node) == ["mosquitto"]
    restarted = time.time()
    # the broker came back empty (no persistence); the same agent reconnects and puts back
    # every record it held, its own ones republished with a higher seq
    refilled = wait_for(
        "the agent refills its broker",
        lambda: not mesh.lacking(held, since=restarted).get(node),
        30,
    )
    own = [mesh.topic(node, k) for k in Kind]
    republished = wait_for(
        "own records republished with a higher seq",
        lambda: all(mesh.watch[node].newest(restarted).get(t, -1) > held[t] for t in own),
        20,
    )
    assert procs.alive(agent), "the agent must survive its broker, not be restarted"
    # the neighbours' relays reconnected too: everyone gets the node's new records
    newest = {t: mesh.watch[node].newest()[t] for t in own}
    spread = wait_for("new records reach every broker", lambda: not mesh.lacking(newest), 20)
    print(
        f"\nbroker of {node} restarted: refilled with all {len(held)} records after"
        f" {refilled:.1f}s, own records republished after {refilled + republished:.1f}s,"
        f" on every broker {refilled + republished + spread:.1f}s after the restart"
    )


def test_boot_storm_converges_without_rewinding_seq_or_double_counting(mesh: AgentMesh):
    lab = mesh.lab
    wait_for("a whole picture", mesh.whole, 30, step=0.2)
    lab.traffic("n2", "n5", 2)  # relays count forwarded bytes: a double count would show
    after_traffic = time.time()
    wait_for(
        "counters folded after the traffic",
        lambda: all(mesh.status(n).get("time", 0) > after_traffic + 1 for n in mesh.honest),
        20,
    )
    before = {n: mesh.status(n) for n in mesh.honest}
    held = mesh.own_newest()
    crashed = lab.crash("agent")
    assert len(crashed) == len(mesh.honest)
    t0 = time.monotonic()
    restarted = time.time()
    for n in mesh.honest:
        mesh.start(n)

    def converged() -> bool:
        fresh = mesh.own_newest()
        return (
            all(fresh.get(t, -1) > s for t, s in held.items())
            and not mesh.lacking(fresh, since=restarted)
            and not mesh.neighbours_missing()
        )

    wait_for("convergence after the boot storm", converged, 60, step=0.1)
    took = time.monotonic() - t0
    print(f"\nboot storm: {len(crashed)} agents killed -9 and restarted; converged in {took:.2f}s")
    rewinds = [r for w in mesh.watch.values() for r in w.rewinds()]
    assert rewinds == []
    wait_for(
        "every agent published again",
        lambda: all(mesh.status(n).get("time", 0) > restarted + 1 for n in mesh.honest),
        20,
    )
    counted = 0
    for n in mesh.honest:
        after = mesh.status(n)
        assert after["seq_next"] > before[n]["seq_next"], f"{n}: seq rewound"
        for meter, value in before[n]["totals"].items():
            now = after["totals"].get(meter, 0)
            assert now >= value, f"{n} {meter} went backwards: {value} -> {now}"
            if value > 4_000_000:  # carried the traffic: a double count would add ~value
                counted += 1
                assert now - value < value / 2, f"{n} {meter} double-counted: {value} -> {now}"
    assert counted, "the traffic before the storm was counted nowhere"
    assert took <= BOOT_STORM_LIMIT_S


def test_partition_and_heal_every_broker_holds_every_newest_record(mesh: AgentMesh):
    wait_for("a whole picture", mesh.whole, 30, step=0.2)
    healed = partition_and_heal(mesh, HALF_A, PARTITION)
    print(
        f"\npartition of {len(PARTITION)} links healed: babel routes after {healed.routed_s:.2f}s,"
        f" every broker holds all {healed.records} newest records {healed.heal_s:.2f}s later"
    )
    assert healed.heal_s <= HEAL_LIMIT_S


HOSTILE_STREET = """
links:
  - [n1, n2]
  - [n2, n3]
  - [n3, n4]
  - [n4, n5]
  - [n5, n6]
  - [n6, n1]
  - [n3, n7]
  - [n7, n6]
  - [n4, evil]
"""
OVERSIZE = 40_000_000  # twice what a router could spare, retained on the hostile broker
RSS_GROWTH_LIMIT = 20_000_000


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_hostile_neighbour_does_not_stop_the_honest_mesh():
    honest = [f"n{i}" for i in range(1, 8)]
    with agent_mesh("fh", from_yaml_text(HOSTILE_STREET, "hostile street"), honest) as mesh:
        lab = mesh.lab
        wait_for("the honest mesh converges", mesh.whole, 60, step=0.2)
        agents = {n: lab.node_procs(n)["agent"] for n in honest}
        rss = {n: _rss(r.pid) for n, r in agents.items()}
        lab.start_hostile(
            "evil", victims=[mesh.ids[n] for n in honest], fake_ids=40, oversize=OVERSIZE
        )
        for round_ in (1, 2):  # still converging while the junk is served, and after it
            mark = mesh.own_newest()
            try:
                took = wait_for(
                    f"round {round_}: fresh records everywhere",
                    lambda mark=mark: (
                        all(s > mark[t] for t, s in mesh.own_newest().items())
                        and not mesh.lacking(mesh.own_newest())
                    ),
                    30,
                )
            except AssertionError as exc:
                dead = {
                    n: procs.log_tail(r.log, 3) for n, r in agents.items() if not procs.alive(r)
                }
                lacking = mesh.lacking(mesh.own_newest())
                raise AssertionError(f"{exc}; dead agents: {dead}; lacking: {lacking}") from None
            print(f"\nround {round_} beside the hostile node: whole again in {took:.1f}s")
        dead = [n for n, r in agents.items() if not procs.alive(r)]
        assert dead == [], f"agents died: {dead}"
        assert mesh.neighbours_missing() == {}
        grown = {n: _rss(r.pid) - rss[n] for n, r in agents.items()}
        print(f"agent memory growth (bytes): {grown}")
        assert max(grown.values()) < RSS_GROWTH_LIMIT
        # push replication's control messages (no seq) are what an honest agent writes on its
        # own broker for an honest neighbour: `_ctl/<that neighbour's id>`
        control = tuple(f"/_ctl/{mesh.ids[n]}" for n in mesh.honest)
        junk = [
            (n, m.topic, m.size)
            for n, w in mesh.watch.items()
            for m in w.messages()
            if m.size > 65536
            or (m.size and m.seq is None and not m.topic.endswith(("/status", *control)))
        ]
        assert junk == [], "hostile payloads reached honest brokers"
        print(f"n4 rejections: {mesh.status('n4').get('rejections')}")
