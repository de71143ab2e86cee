"""A shared radio segment: three nodes on one bridge, n1 and n3 out of each other's range."""

from __future__ import annotations

import pytest

from cli.lab.lab import Lab
from cli.lab.measure import parse_ping
from cli.lab.topology import from_yaml_text
from tests.lab.labkit import lab_name, running_lab

pytestmark = pytest.mark.lab

TOPOLOGY = """
segments:
  - {name: s1, nodes: [n1, n2, n3], loss: {n1-n3: 100}}
"""


@pytest.fixture(scope="module")
def lab():
    with running_lab(lab_name("sg"), from_yaml_text(TOPOLOGY, "segment.yaml")) as built:
        yield built


def _seg_ping(lab: Lab, a: str, b: str, count: int, interval: float):
    """Ping b's address on the segment from a (the connected /24: always the segment itself)."""
    return lab.popen(a, lab.ping_argv(lab.segment_addr("s1", b), count, interval))


def test_hidden_node_is_reached_through_the_middle_one(lab: Lab):
    assert lab.segment_ifaces("n1") == {"s1": "sg-s1"}
    assert lab.mesh_ifaces("n2") == ["sg-s1"]
    # n1 and n3 never hear each other: no direct reply, and babel sees one neighbour each
    direct = parse_ping(_seg_ping(lab, "n1", "n3", 3, 0.05).communicate(timeout=30)[0])
    assert direct.received == 0, direct
    dumps = lab.dumps()
    n1, n2 = dumps["n1"], dumps["n2"]
    assert n1 is not None
    assert n2 is not None
    assert len([nb for nb in n1.neighbours if nb.cost < 65535]) == 1
    assert len([nb for nb in n2.neighbours if nb.cost < 65535]) == 2
    route = n1.installed()[f"{lab.addr('n3')}/32"]
    assert route.iface == "sg-s1"
    assert route.metric >= 2 * 96  # two hops, via n2
    assert lab.path("n1", "n3") == ["n1", "n2", "n3"]
    r = lab.ping("n1", lab.addr("n3"), count=5, interval=0.05)
    assert r.received == 5, r


def test_loss_on_a_pair_is_measured_and_spares_the_other_pairs(lab: Lab):
    lab.impair("n1", "n2", loss=30)
    try:
        pings = {pair: _seg_ping(lab, *pair, 500, 0.01) for pair in (("n1", "n2"), ("n2", "n3"))}
        loss = {
            pair: parse_ping(p.communicate(timeout=60)[0]).loss_pct for pair, p in pings.items()
        }
        print(f"\nsegment ping loss with --loss 30 on n1-n2: {loss}")
        assert 22 <= loss[("n1", "n2")] <= 38
        assert loss[("n2", "n3")] < 2
        assert lab.status()["segments"][0]["pairs"]["n1-n2"].startswith("loss 30%")
    finally:
        lab.heal("n1", "n2")
    # heal returns once the pair answers again
    assert lab.link_usable("n1", "n2") == []


def test_cut_pair_stops_hearing_each_other_and_restore_brings_it_back(lab: Lab):
    lab.cut("n2", "n3")
    try:
        r = parse_ping(_seg_ping(lab, "n2", "n3", 3, 0.05).communicate(timeout=30)[0])
        assert r.received == 0, r
        # n1 still hears n2: the cut is per pair, not per node
        r = parse_ping(_seg_ping(lab, "n1", "n2", 3, 0.05).communicate(timeout=30)[0])
        assert r.received == 3, r
    finally:
        assert lab.restore("n2", "n3")
    assert lab.wait_converged(30) == []
    assert lab.ping("n1", lab.addr("n3"), count=3, interval=0.05).received == 3


def test_agents_on_a_segment_see_exactly_the_members_in_range():
    """`up` returns once each agent sees its in-range members, and never the hidden one."""
    from cli.lab import agent
    from tests.lab.labkit import skip_reason

    reason = skip_reason() or (None if agent.agent_available() else "node agent not installed")
    if reason:
        pytest.skip(reason)
    topo = from_yaml_text(TOPOLOGY, "segment.yaml")
    lab = Lab(lab_name("sa"), topo, agents=True, agent_args=["--mdns-fast"], echo=print)
    try:
        lab.up(timeout=60)
        assert lab.agents_missing() == {}
        ids = agent.node_ids(topo, lab.run_dir)
        port = agent.metrics_port(lab.agent_args)
        seen = {
            n: agent.neighbours_up(
                agent.read_status(lab.ns(n), agent.AgentFiles.of(lab.run_dir, n).status, port)
            )
            for n in topo.names
        }
        names = {v: k for k, v in ids.items()}
        print(
            f"\nagents ready after {lab.timings['agents_ready']:.1f}s; neighbours: "
            f"{ {n: sorted(names.get(i, i) for i in s) for n, s in seen.items()} }"
        )
        assert seen["n1"] == {ids["n2"]}
        assert seen["n3"] == {ids["n2"]}
        assert seen["n2"] == {ids["n1"], ids["n3"]}
    finally:
        lab.down()
