"""Attestation by the traffic's own endpoints: every node counts the bytes its clients send to
and receive from each mesh destination (node_agent/flows.py), so a relay's claim can be checked
against the end-to-end flows whose route passes through it, and a node's consumption against
what its peers say they received from it. Colluding relays cannot create traffic no endpoint saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from meshd.evidence import SEVERITY, Bound, Check, Figure, Side, Tolerance, describe
from meshd.graph import components, dijkstra
from meshd.records import OTHER_PEER
from meshd.topology import MeshView

ROUTE_BUDGET = 100_000  # node visits of Dijkstra runs per check (a 10,000-node mesh: 10 runs)


def attested_through(
    view: MeshView, sides: Mapping[str, Side], tol: Tolerance
) -> dict[str, tuple[Bound, list[str]]]:
    """Per relay claiming anything: the end-to-end bytes whose route may pass through it, from
    the endpoints' own counts (the sender's; only the receiver's grossed up for loss per hop
    when the sender does not attest), routed over the links
    records' babel costs on any path within `route_slack` of the least cost, plus every other
    endpoint's "other" bucket in its part of the mesh (it may pass anywhere); and the endpoints
    whose records cover less time than the relay's. Empty when no node attests (older agents)."""
    ends = {p: s.flows for p, s in sides.items() if s.flows}
    claimants = [r for r, s in sides.items() if s.forwarded > tol.slack_bytes]
    if not ends or not claimants:
        return {}
    dist: dict[str, tuple[dict[str, int], dict[str, str]]] = {}

    def d(a: str) -> dict[str, int]:
        if a not in dist:
            dist[a] = dijkstra(view.adjacency, a) if a in view.adjacency else ({a: 0}, {})
        return dist[a][0]

    def hops(src: str, dst: str) -> int:
        pred, n, x = dist[src][1], 0, dst
        while x != src and x in pred:
            x, n = pred[x], n + 1
        return n

    # (src, dst) -> (what src says it sent, what dst says it received); a relay carried at
    # most what the sender sent, and at least what arrived
    said: dict[tuple[str, str], tuple[int | None, int | None]] = {}
    for p, flows in ends.items():
        for q, (sent, received) in flows.items():
            if q in (OTHER_PEER, p) or q not in view.nodes:
                continue
            _, r_pq = said.get((p, q), (None, None))
            said[(p, q)] = (sent, r_pq)
            s_qp, _ = said.get((q, p), (None, None))
            said[(q, p)] = (s_qp, received)

    def carried(src: str, dst: str) -> int:
        sent, received = said[(src, dst)]
        if sent is not None:
            return sent
        return math.ceil((received or 0) / (1 - tol.loss) ** max(1, hops(src, dst)))

    pairs = {k: v[0] if v[0] is not None else (v[1] or 0) for k, v in said.items()}
    # Routing costs one Dijkstra per endpoint: within ROUTE_BUDGET node visits the biggest
    # endpoints are routed, the rest are pooled like "other" (looser, never wrong).
    weight: dict[str, int] = {}
    for (src, dst), nbytes in pairs.items():
        weight[src] = weight.get(src, 0) + nbytes
        weight[dst] = weight.get(dst, 0) + nbytes
    runs = max(2, ROUTE_BUDGET // max(1, len(view.nodes)))
    routed = set(sorted(weight, key=lambda e: (-weight[e], e))[:runs])
    pooled: dict[str, int] = {}
    for key in [k for k in pairs if not (k[0] in routed and k[1] in routed)]:
        pooled[key[0]] = pooled.get(key[0], 0) + pairs.pop(key)
    total: dict[str, int] = dict.fromkeys(claimants, 0)
    via: dict[str, set[str]] = {r: set() for r in claimants}
    for (src, dst), estimate in pairs.items():
        reach = d(src).get(dst) if estimate else None
        if reach is None:
            continue
        nbytes = carried(src, dst)
        far, back, most = d(src), d(dst), (1 + tol.route_slack) * reach
        for r in claimants:
            if r not in (src, dst) and far.get(r, most + 1) + back.get(r, most + 1) <= most:
                total[r] += nbytes
                via[r].update((src, dst))
    part = {n: i for i, comp in enumerate(components(view.adjacency)) for n in comp}
    other: dict[int, int] = {}
    others: dict[int, list[str]] = {}
    for p, flows in ends.items():
        sent, received = flows.get(OTHER_PEER, (0, 0))
        loose = sent + received + pooled.get(p, 0)
        if loose and p in part:
            other[part[p]] = other.get(part[p], 0) + loose
            others.setdefault(part[p], []).append(p)
    grow = tol.loss / (1 - tol.loss)
    out: dict[str, tuple[Bound, list[str]]] = {}
    what = "end-to-end flows their endpoints attest through it"
    for r in claimants:
        i = part.get(r, -1)
        own = sum(ends.get(r, {}).get(OTHER_PEER, (0, 0))) + pooled.get(r, 0)
        value = total[r] + other.get(i, 0) - (own if r in others.get(i, ()) else 0)
        bound = Bound(what, value, math.ceil(value * grow) + tol.slack_bytes)
        older: list[str] = []
        if sides[r].forwarded > bound.limit + bound.tolerance:  # only then is it needed
            seen = via[r] | set(others.get(i, ())) - {r}
            older = sorted(e for e in seen if sides[r].covers_more(sides[e], tol.read_lag_s))
        out[r] = (bound, older)
    return out


def attest_relayed(
    fig: Figure,
    found: tuple[Bound, list[str]] | None,
    names: Mapping[str, str],
    tol: Tolerance,
) -> Figure:
    """The relayed figure against the end-to-end flows attested through it (when any are)."""
    if found is None:
        return fig
    bound, older = found
    bounds = (*fig.bounds, bound)
    if fig.value <= bound.limit + bound.tolerance:
        return Figure(fig.value, fig.check, fig.evidence, bounds, fig.disputes)
    if SEVERITY[fig.check] >= SEVERITY[Check.DISPUTED]:
        return Figure(fig.value, fig.check, fig.evidence, bounds, fig.disputes)
    if older:
        who = ", ".join(sorted(names.get(n, n) for n in older))
        text = f"above {bound.what} ({describe(bound)}); endpoint records from {who} are older"
        return Figure(fig.value, Check.PENDING, text, bounds, fig.disputes)
    text = f"above {bound.what} ({describe(bound)}): the flows' endpoints dispute it"
    return Figure(fig.value, Check.DISPUTED, text, bounds, fig.disputes)


def received_from(sides: Mapping[str, Side]) -> dict[str, dict[str, int]]:
    """x -> {peer: bytes the peer attests it received from x}: one pass over every record."""
    out: dict[str, dict[str, int]] = {}
    for p, side in sides.items():
        for x, (_, got) in side.flows.items():
            if x not in (OTHER_PEER, p) and got:
                out.setdefault(x, {})[p] = got
    return out


def attest_consumption(
    fig: Figure,
    x: str,
    sides: Mapping[str, Side],
    received: Mapping[str, Mapping[str, int]],
    names: Mapping[str, str],
    tol: Tolerance,
) -> Figure:
    """What other endpoints say they received from this node, it must have sent: a lower bound
    no neighbour can change. Falling below it disputes the flows, naming the peers."""
    if fig.check is not Check.VERIFIED:
        return fig
    me = sides[x]
    got = received.get(x, {})
    total = sum(got.values())
    limit = total - tol.slack_bytes
    bound = Bound(
        "lower: what other endpoints attest they received from it", total, tol.slack_bytes
    )
    bounds = (*fig.bounds, bound)
    if not got or fig.value >= limit:
        return Figure(fig.value, fig.check, fig.evidence, bounds if got else fig.bounds)
    peers = [p for p in got if got[p]]
    if any(sides[p].covers_more(me, tol.read_lag_s) for p in peers):
        text = f"below what its peers attest ({total:,} B); their records are newer"
        return Figure(fig.value, Check.PENDING, text, bounds)
    flows = tuple(sorted(f"{names.get(x, x)}→{names.get(p, p)}" for p in peers))
    text = f"below what its peers attest they received from it ({total:,} B)"
    return Figure(fig.value, Check.DISPUTED, text, bounds, flows)
