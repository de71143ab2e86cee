"""Push replication (docs/protocol.md §8.3-8.4) in the 7-node street with real brokers: a new
node's records reach every broker within JOIN_LIMIT_S of its agent starting, and after a cut
that both halves published through, every broker holds every newest record within
HEAL_LIMIT_S of babel routing over the links again (issue 12). Every wait is a condition
with a deadline; the measured times are printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cli.lab.lab import Lab
from cli.lab.topology import neighbourhood
from meshd.records import Kind
from tests.lab.labkit import (
    FAST_AGENT,
    AgentMesh,
    lab_name,
    partition_and_heal,
    skip_reason,
    wait_for,
)

pytestmark = pytest.mark.lab

JOIN_LIMIT_S = 3.0
HEAL_LIMIT_S = 5.0
JOINER = "n7"
HALF_A = ("n1", "n2", "n6")  # the other half is n3, n4, n5, n7
PARTITION = (("n2", "n3"), ("n5", "n6"), ("n6", "n7"))
PUSH = [*FAST_AGENT, "--replication", "push"]  # the last flag wins


class PushMesh(AgentMesh):
    """Every agent on push replication; the joiner's agent only when the test says so."""

    joined = False

    def start(self, node: str) -> None:
        if node != JOINER or self.joined:
            self.lab.start_agent(node, extra_args=PUSH)


@pytest.fixture(scope="module")
def mesh() -> Iterator[PushMesh]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(lab_name("hj"), neighbourhood(), agents=False, echo=print)
    kit = None
    try:
        lab.up(timeout=60)
        kit = PushMesh(lab, lab.node_names())
        yield kit
    finally:
        if kit is not None:
            kit.stop()
        lab.down()


def test_a_new_node_reaches_every_broker_then_the_street_converges(mesh: PushMesh):
    others = [n for n in mesh.honest if n != JOINER]
    first = {t: s for t, s in mesh.own_newest().items() if f"/{mesh.ids[JOINER]}/" not in t}

    def six_converged() -> bool:
        newest = mesh.own_newest()
        want = {mesh.topic(o, k) for o in others for k in Kind}
        return set(newest) >= want and all(
            mesh.watch[n].newest().get(t, -1) >= newest[t] for n in others for t in want
        )

    took = wait_for("six agents converge", six_converged, 60, step=0.2)
    print(f"\nsix push agents converged {took:.2f}s after the first check ({len(first)} seen)")
    mesh.joined = True
    mesh.start(JOINER)
    joiner_topics = [mesh.topic(JOINER, k) for k in Kind]
    joined = wait_for(
        "the new node's records on every broker",
        lambda: all(t in mesh.watch[n].newest() for n in mesh.honest for t in joiner_topics),
        30,
        step=0.05,
    )
    whole = wait_for("a whole picture with the new node", mesh.whole, 60, step=0.2)
    print(
        f"new node {JOINER}: its {len(joiner_topics)} records on all {len(mesh.honest)} brokers"
        f" {joined:.2f}s after its agent started; whole picture {whole:.2f}s later"
    )
    assert mesh.watch[JOINER].rewinds() == []
    assert joined <= JOIN_LIMIT_S


def test_a_cut_street_heals_within_5s_of_babel_routing_again(mesh: PushMesh):
    wait_for("a whole picture", mesh.whole, 60, step=0.2)
    healed = partition_and_heal(mesh, HALF_A, PARTITION)
    print(
        f"\npush: partition of {len(PARTITION)} links healed: babel routes after"
        f" {healed.routed_s:.2f}s, every broker holds all {healed.records} newest records"
        f" {healed.heal_s:.2f}s later"
    )
    assert [r for n in mesh.honest for r in mesh.watch[n].rewinds()] == []
    assert healed.heal_s <= HEAL_LIMIT_S


def test_each_agent_counts_its_relay_traffic_per_neighbour(mesh: PushMesh):
    """The counters a lab run is set against bench/relay_scale.py with."""
    rows = []
    for n in mesh.honest:
        status = mesh.status(n)
        assert status.get("replication") == "push"
        traffic = status.get("relay_traffic", {})
        up = {mesh.ids[m] for m in mesh.lab.topology.neighbours(n)}
        assert up <= set(traffic), f"{n}: {sorted(traffic)}"
        rows.append(
            f"{n}: " + ", ".join(f"{sum(t[k] for t in traffic.values())} {k}" for k in sorted(
                {"msgs_in", "bytes_in", "msgs_out", "bytes_out"}
            ))
        )  # fmt: skip
        assert all(t["msgs_out"] > 0 for p, t in traffic.items() if p in up)
    print("\nrelay traffic since start:\n" + "\n".join(rows))


def test_a_v1_flooding_agent_among_push_agents_stays_in_the_picture(mesh: PushMesh):
    """A community upgrades router by router: n4 restarted on v1 flooding (it publishes plain
    `online`), its push neighbours read its whole broker, and every broker keeps converging."""
    wait_for("a whole picture", mesh.whole, 60, step=0.2)
    mesh.lab.crash("agent", ["n4"])
    mesh.lab.start_agent("n4", extra_args=[*FAST_AGENT, "--replication", "flood"])
    restarted = time.time()
    mark = mesh.own_newest()

    def fresh_everywhere() -> bool:
        fresh = mesh.own_newest()
        newer = all(s > mark[t] for t, s in fresh.items())
        return newer and not mesh.lacking(fresh, since=restarted)

    took = wait_for("fresh records everywhere, n4 flooding", fresh_everywhere, 60)
    assert mesh.status("n4").get("replication") == "flood"
    for n in mesh.lab.topology.neighbours("n4"):
        flooding = mesh.status(n).get("counters", {}).get("flooding_neighbours", 0)
        assert flooding >= 1, f"{n} did not read n4 as a flooding neighbour"
    print(f"\nn4 on v1 flooding among push agents: every broker fresh after {took:.2f}s")
