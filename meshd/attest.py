"""Attestation by the traffic's own endpoints: every node counts the bytes its clients send to
and receive from each mesh destination (node_agent/flows.py), so a relay's claim can be checked
against the end-to-end flows whose route passes through it, and a node's consumption against
what its peers say they received from it. Colluding relays cannot create traffic no endpoint saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from meshd.evidence import SEVERITY, Bound, Check, Figure, Side, Tolerance, describe
from meshd.records import OTHER_PEER
from meshd.topology import MeshView, dijkstra


def attested_through(
    view: MeshView, sides: Mapping[str, Side], tol: Tolerance
) -> dict[str, tuple[Bound, list[str], float]]:
    """Per relay: the end-to-end bytes whose route may pass through it, from the endpoints' own
    counts (both ends' when both attest: the smaller), routed over the links records' babel
    costs on any path within `route_slack` of the least cost; an endpoint's "other" bucket may
    pass anywhere. Empty when no node attests (older agents)."""
    ends = {p: s.flows for p, s in sides.items() if s.flows}
    if not ends:
        return {}
    dist: dict[str, dict[str, int]] = {}

    def d(a: str) -> dict[str, int]:
        if a not in dist:
            dist[a] = dijkstra(view.adjacency, a)[0] if a in view.adjacency else {a: 0}
        return dist[a]

    pairs: dict[tuple[str, str], int] = {}
    for p, flows in ends.items():
        for q, (sent, received) in flows.items():
            if q in (OTHER_PEER, p) or q not in view.nodes:
                continue
            for key, value in (((p, q), sent), ((q, p), received)):
                pairs[key] = min(pairs.get(key, value), value) if key in pairs else value
    total: dict[str, int] = dict.fromkeys(sides, 0)
    via: dict[str, set[str]] = {r: set() for r in sides}
    for (src, dst), nbytes in pairs.items():
        reach = d(src).get(dst)
        if not nbytes or reach is None:
            continue
        far, back = d(src), d(dst)
        for r in total:
            if r in (src, dst) or r not in far or r not in back:
                continue
            if far[r] + back[r] <= (1 + tol.route_slack) * reach:
                total[r] += nbytes
                via[r].update((src, dst))
    for p, flows in ends.items():
        sent, received = flows.get(OTHER_PEER, (0, 0))
        if sent + received:
            for r in total:
                if r != p and r in d(p):
                    total[r] += sent + received
                    via[r].add(p)
    grow = tol.loss / (1 - tol.loss)
    out: dict[str, tuple[Bound, list[str], float]] = {}
    for r, value in total.items():
        older = sorted(e for e in via[r] if e in sides and sides[r].covers_more(sides[e]))
        what = "end-to-end flows their endpoints attest through it"
        out[r] = (Bound(what, value, math.ceil(value * grow) + tol.slack_bytes), older, value)
    return out


def attest_relayed(
    fig: Figure,
    found: tuple[Bound, list[str], float] | None,
    names: Mapping[str, str],
    tol: Tolerance,
) -> Figure:
    """The relayed figure against the end-to-end flows attested through it (when any are)."""
    if found is None:
        return fig
    bound, older, _ = found
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


def attest_consumption(
    fig: Figure, x: str, sides: Mapping[str, Side], names: Mapping[str, str], tol: Tolerance
) -> Figure:
    """What other endpoints say they received from this node, it must have sent: a lower bound
    no neighbour can change. Falling below it disputes the flows, naming the peers."""
    if fig.check is not Check.VERIFIED:
        return fig
    me = sides[x]
    got = {p: s.flows[x][1] for p, s in sides.items() if p != x and x in s.flows}
    total = sum(got.values())
    limit = total - tol.slack_bytes
    bound = Bound(
        "lower: what other endpoints attest they received from it", total, tol.slack_bytes
    )
    bounds = (*fig.bounds, bound)
    if not got or fig.value >= limit:
        return Figure(fig.value, fig.check, fig.evidence, bounds if got else fig.bounds)
    peers = [p for p in got if got[p]]
    if any(sides[p].covers_more(me) for p in peers):
        text = f"below what its peers attest ({total:,} B); their records are newer"
        return Figure(fig.value, Check.PENDING, text, bounds)
    flows = tuple(sorted(f"{names.get(x, x)}→{names.get(p, p)}" for p in peers))
    text = f"below what its peers attest they received from it ({total:,} B)"
    return Figure(fig.value, Check.DISPUTED, text, bounds, flows)
