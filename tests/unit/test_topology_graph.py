"""Graph maths of meshd.graph against networkx on random graphs, and link states."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from meshd.graph import betweenness, components, cut_points, gini, shortest_path
from meshd.records import LinkEntry
from meshd.topology import (
    Direction,
    LinkState,
    LinkThresholds,
    classify,
)
from tests.meshgen import LinkSpec, SyntheticMesh


def _random_graph(seed: int) -> tuple[nx.Graph, dict[str, dict[str, int]]]:
    rng = random.Random(seed)
    g = nx.gnm_random_graph(30, rng.randint(20, 60), seed=seed)
    adj: dict[str, dict[str, int]] = {str(n): {} for n in g}
    for a, b in g.edges():
        w = rng.choice([1, 2, 3, 5])
        g[a][b]["w"] = w
        adj[str(a)][str(b)] = adj[str(b)][str(a)] = w
    return g, adj


@pytest.mark.parametrize("seed", range(12))
def test_cut_points_match_networkx(seed):
    g, adj = _random_graph(seed)
    cuts = cut_points(adj)
    assert set(cuts.points) == {str(x) for x in nx.articulation_points(g)}
    assert set(cuts.bridges) == {tuple(sorted((str(a), str(b)))) for a, b in nx.bridges(g)}
    for (a, b), side in cuts.bridges.items():
        h = g.copy()
        h.remove_edge(int(a), int(b))
        sizes = sorted(len(c) for c in nx.connected_components(h) if int(a) in c or int(b) in c)
        assert side == sizes[0]


@pytest.mark.parametrize("seed", range(12))
def test_exact_betweenness_matches_networkx(seed):
    g, adj = _random_graph(seed)
    ours = betweenness(adj, max_sources=1000)
    assert ours.exact
    theirs = nx.betweenness_centrality(g, weight="w", normalized=False)
    for n in g:
        k = len(nx.node_connected_component(g, n))
        expected = 2 * theirs[n] / ((k - 1) * (k - 2)) if k > 2 else 0.0
        assert ours.share[str(n)] == pytest.approx(expected, abs=1e-9)


def test_sampled_betweenness_finds_the_hub():
    # a star of stars: the centre carries nearly every path
    adj: dict[str, dict[str, int]] = {"hub": {}}
    for i in range(40):
        arm = f"a{i:02d}"
        adj[arm] = {"hub": 1}
        adj["hub"][arm] = 1
    sampled = betweenness(adj, max_sources=8)
    assert not sampled.exact
    top = sampled.top()
    assert top is not None
    assert top[0] == "hub"
    assert top[1] > 0.9


def test_components_and_paths():
    adj = {"a": {"b": 1}, "b": {"a": 1, "c": 5}, "c": {"b": 5}, "x": {"y": 1}, "y": {"x": 1}}
    assert components(adj) == [["a", "b", "c"], ["x", "y"]]
    assert shortest_path(adj, "a", "c") == ["a", "b", "c"]
    assert shortest_path(adj, "a", "x") is None


def test_gini_extremes():
    assert gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 100]) == pytest.approx(0.75)
    assert gini([]) == 0.0


def _entry(**kw):
    return LinkEntry("a" * 16, "eth0", **kw)


def test_link_states():
    t = LinkThresholds()
    good = _entry(delivery_tx=0.99, delivery_rx=0.99, txcost=256)
    assert (
        classify(Direction("a", "b", good, good), Direction("b", "a", good, good), 0, t)[0]
        is LinkState.GOOD
    )
    bad = _entry(delivery_tx=0.6, delivery_rx=0.99, txcost=256)
    state, reason = classify(Direction("a", "b", bad, good), Direction("b", "a", good, bad), 0, t)
    assert state is LinkState.ASYMMETRIC
    assert "40%" in reason
    lossy = _entry(delivery_tx=0.8, delivery_rx=0.8, txcost=256)
    assert (
        classify(Direction("a", "b", lossy, lossy), Direction("b", "a", lossy, lossy), 0, t)[0]
        is LinkState.LOSSY
    )
    assert (
        classify(Direction("a", "b", good, None), Direction("b", "a", None, good), 0, t)[0]
        is LinkState.ONE_SIDED
    )
    assert (
        classify(Direction("a", "b", good, good), Direction("b", "a", good, good), 5, t)[0]
        is LinkState.FLAPPING
    )


def test_view_keeps_one_sided_links_out_of_the_graph():
    mesh = SyntheticMesh.chain(3)
    mesh.nodes["n3"].links.pop("n2")  # n3 no longer reports n2; n2 still does
    from meshd.topology import MeshView

    view = MeshView.build(mesh.store(), mesh.now)
    n2, n3 = mesh.nodes["n2"].node_id, mesh.nodes["n3"].node_id
    link = view.link(n2, n3)
    assert link is not None
    assert link.state is LinkState.ONE_SIDED
    assert not link.in_graph
    assert len(components(view.adjacency)) == 2


def test_view_reports_unknown_neighbours():
    mesh = SyntheticMesh.chain(3)
    mesh.nodes["n3"].publish_links = True
    stranger = SyntheticMesh(name="other").add_node("x")
    mesh.add_node("ghost", key=stranger.key)
    mesh.link("n1", "ghost", ab=LinkSpec(), ba=LinkSpec())
    store = mesh.store()
    # drop the ghost's own records: it is heard but has published nothing valid
    for kind in list(store.records):
        if kind[0] == stranger.node_id:
            del store.records[kind]
    from meshd.topology import MeshView

    view = MeshView.build(store, mesh.now)
    assert stranger.node_id in view.unknown_neighbours
