"""Properties of the contribution checks over random meshes (10-60 nodes, random traffic, loss up
to 10 %, publish skew up to one publish interval, counter resets, bursts between counter reads
of one second or a few seconds apart), as docs/contribution.md states them: honest meshes are
never contradicted or disputed, one liar cannot inflate its relay figure past the
flow-conservation bound nor pin anything on an honest node, under-reporting is flagged, and two
colluders gain at most what their honest neighbours really exchanged with them.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshd import defaults
from meshd.contrib import Check, Contribution, Tolerance, contributions, flow_bound
from meshd.records import TrafficBody
from meshd.topology import MeshView
from tests.meshgen import SyntheticMesh

FAST = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
TOL = Tolerance()
GB = 1_000_000_000


def random_mesh(n: int, seed: int) -> SyntheticMesh:
    rng = random.Random(seed)
    mesh = SyntheticMesh.random(n, n + rng.randint(0, n), seed=seed)
    for node in mesh.nodes.values():
        for spec in node.links.values():
            spec.loss = round(rng.uniform(0.0, 0.10), 3)
    return mesh


def traffic(mesh: SyntheticMesh, rng: random.Random, flows: int) -> None:
    names = sorted(mesh.nodes)
    gateways = [h for h, x in mesh.nodes.items() if x.gateway_kbit]
    for _ in range(flows):
        src, dst = rng.sample(names, 2)
        size = rng.randint(1, 400) * 1_000_000
        if gateways and rng.random() < 0.2 and src not in gateways:
            mesh.flow(src, rng.choice(gateways), size, via_gateway=True)
        else:
            mesh.flow(src, dst, size)


def skew_and_resets(
    mesh: SyntheticMesh, rng: random.Random, spare: frozenset[str] = frozenset()
) -> None:
    """Some nodes publish up to one interval before the rest; some lost their counters."""
    names = sorted(set(mesh.nodes) - spare)
    for h in rng.sample(names, rng.randint(0, 2)):
        mesh.reset_counters(h)
    traffic(mesh, rng, rng.randint(1, 10))
    for h in rng.sample(names, rng.randint(0, len(names) // 3)):
        mesh.freeze(h)
    mesh.advance(rng.randint(1, defaults.PUBLISH_INTERVAL_S))
    traffic(mesh, rng, rng.randint(1, 10))


def judge(mesh: SyntheticMesh) -> dict[str, Contribution]:
    view = MeshView.build(mesh.store(), mesh.now)
    return {c.hostname: c for c in contributions(view, tolerance=TOL)}


def published(mesh: SyntheticMesh, host: str) -> TrafficBody:
    node = mesh.nodes[host]
    return node.frozen[0] if node.frozen else mesh.traffic_body(node)


def neighbours_bound(mesh: SyntheticMesh, liar: str) -> tuple[int, int]:
    """(flow-conservation bound, bytes exchanged) from the honest neighbours' published counts."""
    me = mesh.nodes[liar].node_id
    ins: dict[str, int] = {}
    outs: dict[str, int] = {}
    for nb in mesh.nodes[liar].links:
        for c in published(mesh, nb).neighbours:
            if c.neighbour == me:
                ins[nb], outs[nb] = c.tx_bytes, c.rx_bytes
    return flow_bound(ins, outs), sum(ins.values()) + sum(outs.values())


def tolerance_cap(mesh: SyntheticMesh, liar: str, bound: int) -> int:
    """The most tolerance docs/contribution.md allows: loss share, slack per link, rate × skew."""
    degree = len(mesh.nodes[liar].links)
    skew = 0.0
    me = mesh.nodes[liar].node_id
    for nb in mesh.nodes[liar].links:
        body = published(mesh, nb)
        at = mesh.nodes[nb].frozen[1] if mesh.nodes[nb].frozen else mesh.now
        for c in body.neighbours:
            if c.neighbour == me:
                skew += (c.rx_bytes + c.tx_bytes) / max(1, at - body.since) * (TOL.max_skew_s + 1)
    grow = TOL.loss / (1 - TOL.loss)
    return int(bound * grow + TOL.slack_bytes * (1 + degree) + skew) + 2


meshes = st.tuples(st.integers(10, 60), st.integers(0, 2**31))


@FAST
@given(meshes)
def test_a_honest_mesh_is_never_contradicted_or_disputed(case: tuple[int, int]) -> None:
    n, seed = case
    rng = random.Random(seed)
    mesh = random_mesh(n, seed)
    traffic(mesh, rng, rng.randint(5, 40))
    skew_and_resets(mesh, rng)
    judged = assert_no_verdict(mesh)
    assert not any(c.phantoms for c in judged)


def assert_no_verdict(mesh: SyntheticMesh) -> list[Contribution]:
    """Every honest figure is verified, pending or unchecked: never disputed or contradicted."""
    judged = list(judge(mesh).values())
    for c in judged:
        for fig in (c.relayed, c.gateway, c.consumed):
            assert fig.check not in (Check.CONTRADICTED, Check.DISPUTED), (c.hostname, fig)
        assert not c.mismatches
    return judged


def bursts_between_reads(mesh: SyntheticMesh, rng: random.Random) -> None:
    """Nodes read their counters at different moments of one second, or a few seconds apart,
    while bursts far above the window's average rate cross the mesh between the reads."""
    names = sorted(mesh.nodes)
    for _ in range(rng.randint(1, 3)):
        for h in rng.sample(names, rng.randint(1, max(1, len(names) // 3))):
            mesh.freeze(h)
        for _ in range(rng.randint(1, 5)):  # one burst: the same few flows, 1-20 GB each
            src, dst = rng.sample(names, 2)
            mesh.flow(src, dst, rng.randint(1, 20) * GB)
        mesh.advance(rng.choice((0, 0, 1, 2, 5)))


@FAST
@given(meshes)
def test_a_honest_mesh_under_bursts_between_reads_is_never_disputed(case: tuple[int, int]) -> None:
    n, seed = case
    rng = random.Random(seed)
    mesh = random_mesh(n, seed)
    traffic(mesh, rng, rng.randint(5, 40))
    bursts_between_reads(mesh, rng)
    assert_no_verdict(mesh)


def lie(mesh: SyntheticMesh, liar: str, rng: random.Random) -> None:
    """A random mix of validly signed lies by one node."""
    node = mesh.nodes[liar]
    extra = rng.randint(1, 50) * GB
    if rng.random() < 0.8:  # grossly, or just above what it really relayed
        small = node.forwarded // rng.randint(1, 4) + rng.randint(1, 50) * 1_000_000
        mesh.claim(liar, forwarded_bytes=node.forwarded + rng.choice((extra, small)))
    if rng.random() < 0.5:
        mesh.claim(liar, client_bytes=rng.choice((0, node.client_bytes * 3)))
    if rng.random() < 0.5 and node.gateway_kbit:
        mesh.claim(liar, gateway_bytes=extra)
    for nb in sorted(node.links):
        r = rng.random()
        rx, tx = node.rx.get(nb, 0), node.tx.get(nb, 0)
        if r < 0.3:
            mesh.claim_neighbour(liar, nb, rx + extra, tx + extra)
        elif r < 0.5:
            mesh.claim_neighbour(liar, nb, 0, 0)
        elif r < 0.6:
            mesh.claim_neighbour(liar, nb, rx * 2, tx // 2)
    if rng.random() < 0.4:
        stranger = rng.choice(sorted(set(mesh.nodes) - set(node.links) - {liar}))
        mesh.claim_neighbour(liar, stranger, extra, extra)
    if rng.random() < 0.3:
        for peer in list(node.flows):
            node.flows[peer] = [rng.randint(0, 3) * node.flows[peer][0], 0]


@FAST
@given(meshes)
def test_b_one_liar_cannot_raise_its_relayed_figure_past_the_bound(case: tuple[int, int]) -> None:
    n, seed = case
    rng = random.Random(seed)
    mesh = random_mesh(n, seed)
    traffic(mesh, rng, rng.randint(5, 40))
    liar = rng.choice(sorted(mesh.nodes))
    skew_and_resets(mesh, rng, spare=frozenset({liar}))
    lie(mesh, liar, rng)
    fig = judge(mesh)[liar].relayed
    if fig.check is Check.VERIFIED:
        bound, _ = neighbours_bound(mesh, liar)
        assert fig.value <= bound + tolerance_cap(mesh, liar, bound), (fig, bound)


@FAST
@given(meshes)
def test_c_one_liar_cannot_make_an_honest_node_contradicted(case: tuple[int, int]) -> None:
    n, seed = case
    rng = random.Random(seed)
    mesh = random_mesh(n, seed)
    traffic(mesh, rng, rng.randint(5, 40))
    liar = rng.choice(sorted(mesh.nodes))
    skew_and_resets(mesh, rng, spare=frozenset({liar}))
    lie(mesh, liar, rng)
    for host, c in judge(mesh).items():
        if host == liar:
            continue
        for fig in (c.relayed, c.gateway, c.consumed):
            assert fig.check is not Check.CONTRADICTED, (host, liar, fig)


@FAST
@given(meshes)
def test_d_under_reported_consumption_is_flagged(case: tuple[int, int]) -> None:
    n, seed = case
    rng = random.Random(seed)
    mesh = random_mesh(n, seed)
    traffic(mesh, rng, rng.randint(5, 20))
    names = sorted(h for h, x in mesh.nodes.items() if not x.gateway_kbit)
    cheat, peer = rng.sample(names, 2)
    for _ in range(3):  # its clients move real traffic: 3 x 5 GB each way
        mesh.flow(cheat, peer, 5 * GB)
        mesh.flow(peer, cheat, 5 * GB)
    true = mesh.nodes[cheat].client_bytes
    mesh.claim(cheat, client_bytes=rng.randint(0, true // 10))
    fig = judge(mesh)[cheat].consumed
    assert fig.check is not Check.VERIFIED, fig
    assert fig.bounds
    assert fig.value < max(b.limit for b in fig.bounds if "lower" in b.what)


@FAST
@given(meshes)
def test_e_two_colluders_gain_at_most_what_honest_neighbours_saw(case: tuple[int, int]) -> None:
    n, seed = case
    rng = random.Random(seed)
    mesh = random_mesh(n, seed)
    traffic(mesh, rng, rng.randint(5, 40))
    a = rng.choice(sorted(h for h, x in mesh.nodes.items() if x.links))
    b = rng.choice(sorted(mesh.nodes[a].links))
    extra = rng.choice((rng.randint(1, 100) * GB, rng.randint(1, 500) * 1_000_000))
    for x, y in ((a, b), (b, a)):  # both ends agree on a fake flood across their link
        node = mesh.nodes[x]
        mesh.claim_neighbour(x, y, node.rx.get(y, 0) + extra, node.tx.get(y, 0) + extra)
        mesh.claim(x, forwarded_bytes=node.forwarded + extra)
        for peer in list(node.flows):  # and as endpoints they attest whatever helps
            node.flows[peer] = [node.flows[peer][0] + extra, node.flows[peer][1] + extra]
    items = judge(mesh)
    for x, y in ((a, b), (b, a)):
        fig = items[x].relayed
        if fig.check is not Check.VERIFIED:
            continue
        me = mesh.nodes[x].node_id
        seen = 0  # what the honest neighbours really exchanged with the colluder
        for nb in mesh.nodes[x].links:
            if nb == y:
                continue
            for c in published(mesh, nb).neighbours:
                if c.neighbour == me:
                    seen += c.rx_bytes + c.tx_bytes
        assert fig.value <= seen + tolerance_cap(mesh, x, seen), (x, fig, seen)
