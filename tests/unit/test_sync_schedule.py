"""The agent's publish schedule by community size, and when a links record is worth sending
early (meshd/sync.py, docs/protocol.md §8.2)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from meshd import sync
from meshd.records import Kind, LinkEntry, LinksBody


def refresh(interval: float, nodes: int) -> dict[str, float]:
    return {k.value: p.refresh_s for k, p in sync.agent_policy(interval, nodes).items()}


@pytest.mark.parametrize("nodes", [0, 7, sync.SLOW_FROM_NODES])
def test_a_small_mesh_keeps_the_publish_interval(nodes: int):
    assert refresh(60, nodes) == {"node": 600, "links": 60, "traffic": 60}
    assert refresh(2, nodes) == {"node": 20, "links": 2, "traffic": 2}  # the lab's agents


def test_a_large_community_slides_to_the_slow_refresh_and_stays_under_the_stale_threshold():
    mid, full = refresh(60, 300), refresh(60, sync.SCALE_NODES)
    assert 60 < mid["links"] < full["links"] == sync.PUBLISH_POLICY[Kind.LINKS].refresh_s
    assert full == {k.value: p.refresh_s for k, p in sync.PUBLISH_POLICY.items()}
    assert refresh(60, 10 * sync.SCALE_NODES) == full
    for nodes in (100, 300, 1000, 5000):
        policy = sync.agent_policy(60, nodes)
        # traffic keeps every node fresh, and every record outlives three refreshes
        assert policy[Kind.TRAFFIC].refresh_s * 2 <= 600
        assert all(p.ttl_s >= 3 * p.refresh_s for p in policy.values())


LINK = LinkEntry("abcdefghijklmnop", "mesh0", "wifi", True, 256, 256, 1.0, 1.0, 1.0, 0.0, 1.0)
BODY = LinksBody((LINK,))


@pytest.mark.parametrize(
    "changed",
    [
        replace(LINK, up=False),
        replace(LINK, rxcost=400),
        replace(LINK, txcost=None),
        replace(LINK, loss=0.06),
        replace(LINK, neighbour="qrstuvwxyzabcdef"),
    ],
    ids=["down", "cost", "cost gone", "loss", "another neighbour"],
)
def test_a_measured_change_publishes_links_early(changed: LinkEntry):
    assert sync.links_changed(BODY, LinksBody((changed,)))
    assert sync.links_changed(BODY, LinksBody(()))
    assert sync.links_changed(None, BODY)


def test_noise_does_not():
    noisy = replace(LINK, rxcost=300, rtt_ms=9.0, loss=0.04, delivery_rx=0.9)
    assert not sync.links_changed(BODY, LinksBody((noisy,)))
    assert not sync.links_changed(BODY, BODY)
