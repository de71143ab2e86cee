"""Who contributes what, and whether counters nobody can bend alone back it up.

A node's claims are its own `traffic` record. Evidence comes only from its neighbours over real
links (both ends list the link up) and from the endpoints of the traffic it says it carried; a
report about a non-neighbour is a finding against its reporter, never evidence. Every check is a
bound from flow conservation (a byte relayed came in from one neighbour and left to another), and
each figure ends in one of five states (`LEGEND`): a disagreement between two ends disputes the
link, naming both, and records taken at different times make a comparison pending, so neither
a liar nor publish skew can make an honest node "contradicted". docs/contribution.md says what
each check tolerates and what colluders can still do.

Figures come as deltas over a window (`before`, the bodies at its start) or, without one, as the
cumulative counters since each node's `since`. A counter that goes down while `boot_id` and
`since` stay the same is a regression the audit flags.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshd.attest import attest_consumption, attest_relayed, attested_through, received_from
from meshd.community import ContributionPolicy
from meshd.costshare import CostShare, cost_share
from meshd.evidence import (
    LEGEND,
    SEVERITY,
    Bound,
    Check,
    Figure,
    Mismatch,
    Side,
    Tolerance,
    describe,
    side_of,
)
from meshd.records import TrafficBody
from meshd.regression import Regression, regressions
from meshd.topology import MeshView

DEFAULT_TOLERANCE = Tolerance()

__all__ = [
    "LEGEND",
    "Bound",
    "Check",
    "Contribution",
    "CostShare",
    "Figure",
    "Mismatch",
    "Regression",
    "Tolerance",
    "contributions",
    "cost_share",
    "flow_bound",
    "regressions",
]


@dataclass(slots=True)
class Contribution:
    node_id: str
    hostname: str
    relayed: Figure
    gateway: Figure
    consumed: Figure
    uptime_s: Figure
    window_s: float | None
    share: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    mismatches: list[Mismatch] = field(default_factory=list)  # disputes on its links
    phantoms: list[str] = field(default_factory=list)  # non-neighbours it reported counters for
    basis: int = 0  # consumption the cost share uses: verified figure, else its lower bound
    basis_kind: str = "lower bound"

    @property
    def state(self) -> Check:
        """The worst state of its byte figures."""
        figs = (self.relayed, self.gateway, self.consumed)
        return max((f.check for f in figs), key=SEVERITY.__getitem__)

    @property
    def verified(self) -> bool:
        return all(f.check is Check.VERIFIED for f in (self.relayed, self.gateway, self.consumed))


def flow_bound(ins: Mapping[str, int], outs: Mapping[str, int]) -> int:
    """Most bytes a node can have relayed: from each neighbour, no more than came in from it
    and no more than left towards all the others (a byte sent back where it came from is not
    relayed). One neighbour: zero."""
    total_out = sum(outs.values())
    return sum(min(b, total_out - outs.get(n, 0)) for n, b in ins.items())


def _direction(s: int, r: int, snd: Side, rcv: Side, tol: Tolerance, rate: float) -> Check:
    """One direction of a link: what the sender counted vs what the receiver counted."""
    hi = s * (1 + tol.loss) + tol.slack_bytes
    lo = s * (1 - tol.loss) - tol.slack_bytes
    skew = (min(abs(rcv.at - snd.at), tol.max_skew_s) + 1) * rate  # +1 s: whole-second stamps
    if rcv.at >= snd.at:
        hi += skew
    if snd.at >= rcv.at:
        lo -= skew
    if lo <= r <= hi:
        return Check.VERIFIED
    lag = tol.read_lag_s
    ahead = rcv.covers_more(snd, lag) if r > hi else snd.covers_more(rcv, lag)
    return Check.PENDING if ahead else Check.DISPUTED


@dataclass(slots=True)
class _Evidence:
    """Per node: what each end of every real link says crossed it, in both directions."""

    in_n: dict[str, int] = field(default_factory=dict)  # neighbour's count of bytes to us
    out_n: dict[str, int] = field(default_factory=dict)  # neighbour's count of bytes from us
    in_o: dict[str, int] = field(default_factory=dict)  # our own counts
    out_o: dict[str, int] = field(default_factory=dict)
    disputed: set[str] = field(default_factory=set)
    mismatches: list[Mismatch] = field(default_factory=list)
    older: list[str] = field(default_factory=list)  # neighbours whose counters cover less
    newer: list[str] = field(default_factory=list)  # neighbours whose counters cover more
    skew_up: float = 0.0  # bytes skew can hide from neighbours with older records
    skew_down: float = 0.0  # bytes neighbours with newer records may count that we did not yet
    control: float = 0.0  # bytes of routing, probe and record traffic its links may carry

    def opt(self, favour_high: bool) -> tuple[dict[str, int], dict[str, int]]:
        """Neighbours' counts, but on disputed links the count most favourable to us."""
        pick = max if favour_high else min
        ins = {n: pick(v, self.in_o[n]) if n in self.disputed else v for n, v in self.in_n.items()}
        outs = {
            n: pick(v, self.out_o[n]) if n in self.disputed else v for n, v in self.out_n.items()
        }
        return ins, outs


def _evidence(
    x: str, sides: Mapping[str, Side], linked: list[str], tol: Tolerance, record_bytes: int
) -> _Evidence:
    me, ev = sides[x], _Evidence()
    for n in linked:
        nb = sides[n]
        rx_o, tx_o = me.per.get(n, (0, 0))
        rx_n, tx_n = nb.per.get(x, (0, 0))
        ev.in_n[n], ev.out_n[n], ev.in_o[n], ev.out_o[n] = tx_n, rx_n, rx_o, tx_o
        rate = nb.rate(x)
        for s, r, snd, rcv, who in ((tx_n, rx_o, nb, me, (n, x)), (tx_o, rx_n, me, nb, (x, n))):
            if _direction(s, r, snd, rcv, tol, rate) is Check.DISPUTED:
                ev.disputed.add(n)
                ev.mismatches.append(Mismatch(who[0], who[1], s, r))
        if me.covers_more(nb, tol.read_lag_s):
            ev.older.append(n)
        if nb.covers_more(me, tol.read_lag_s):
            ev.newer.append(n)
        skew = (min(abs(me.at - nb.at), tol.max_skew_s) + 1) * rate
        if me.at >= nb.at:
            ev.skew_up += skew
        if nb.at >= me.at:
            ev.skew_down += skew
        per_s = tol.control_bps + tol.replication * record_bytes / nb.interval
        ev.control += per_s * max(0.0, nb.at - nb.start)
    return ev


def _judge(
    value: int,
    what: str,
    bound: Bound,
    own: Bound,
    opt: Bound,
    *,
    pending: list[str],
    disputes: Iterable[str],
    missing: list[str],
    names: Mapping[str, str],
) -> Figure:
    """An upper bound check: verified, else pending / disputed / contradicted / unchecked."""
    bounds = (bound, own, opt) if opt.limit != bound.limit else (bound, own)
    limit = bound.limit + bound.tolerance
    if value <= limit:
        return Figure(value, Check.VERIFIED, f"<= {bound.what}: {describe(bound)}", bounds)
    if value > own.limit + own.tolerance:
        text = f"exceeds {own.what} ({describe(own)}) by {value - own.limit:,} B"
        return Figure(value, Check.CONTRADICTED, text, bounds)
    if pending:
        who = ", ".join(sorted(names.get(n, n) for n in pending))
        text = f"above {bound.what} ({describe(bound)}); {who} published earlier: wait for them"
        return Figure(value, Check.PENDING, text, bounds)
    if missing:
        who = ", ".join(sorted(names.get(n, n) for n in missing))
        return Figure(value, Check.UNCHECKED, f"needs counters from {who}", bounds)
    pairs = tuple(sorted(disputes))
    if pairs and value <= opt.limit + opt.tolerance:
        text = (
            f"above {bound.what} ({describe(bound)}) only over disputed link(s) {', '.join(pairs)}"
        )
        return Figure(value, Check.DISPUTED, text, bounds, pairs)
    return Figure(
        value,
        Check.CONTRADICTED,
        f"exceeds {bound.what} ({describe(bound)}) by {value - bound.limit:,} B",
        bounds,
    )


def _two_sided(view: MeshView, was_live: set[tuple[str, str]]) -> dict[str, set[str]]:
    """Links both ends list as up now, or that were in the graph during the window."""
    out: dict[str, set[str]] = {n: set() for n in view.nodes}
    for (a, b), link in view.links.items():
        if (link.ab.reported and link.ba.reported) or (a, b) in was_live:
            out[a].add(b)
            out[b].add(a)
    return out


def contributions(
    view: MeshView,
    before: Mapping[str, TrafficBody] | None = None,
    *,
    window_s: float | None = None,
    before_at: Mapping[str, float] | None = None,
    was_live: Iterable[tuple[str, str]] = (),
    policy: ContributionPolicy | None = None,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> list[Contribution]:
    """Per-node figures with their checks, shares of the total and a weighted score.

    `before` holds the traffic bodies at the window's start, `before_at` when each was
    published (default: all at `view.now - window_s`); `was_live` the links (a < b) that were
    in the graph at the window's start.
    """
    before = before or {}
    policy = policy or ContributionPolicy()
    default_start = None if window_s is None else view.now - window_s
    sides: dict[str, Side] = {}
    for node_id, nv in view.nodes.items():
        body, env = nv.counters, nv.traffic
        if body is None or env is None:
            continue
        start = (before_at or {}).get(node_id, default_start) if node_id in before else None
        if start is None and default_start is not None and node_id not in before:
            start = default_start
        side = side_of(body, float(env.issued_at), before.get(node_id), start)
        if env.ttl_s > 10:  # the agent's TTL is 3 intervals + 1 s (at least 10 s)
            side.interval = max(1.0, (env.ttl_s - 1) / 3)
        else:
            side.interval = 3.0
        sides[node_id] = side
    record_bytes = sum(
        len(e.raw) for nv in view.nodes.values() for e in (nv.node, nv.links, nv.traffic) if e
    )
    live = _two_sided(view, {(min(a, b), max(a, b)) for a, b in was_live})
    attested = attested_through(view, sides, tolerance)
    received = received_from(sides)
    names = {n: nv.hostname for n, nv in view.nodes.items()}
    out = [
        _contribution(
            view,
            node_id,
            sides,
            live,
            (attested, received),
            names,
            window_s,
            tolerance,
            record_bytes,
        )
        for node_id in sorted(view.nodes)
    ]
    _shares(out, policy)
    return out


def _contribution(
    view: MeshView,
    x: str,
    sides: Mapping[str, Side],
    live: Mapping[str, set[str]],
    endpoints: tuple[Mapping[str, tuple[Bound, list[str]]], Mapping[str, Mapping[str, int]]],
    names: Mapping[str, str],
    window_s: float | None,
    tol: Tolerance,
    record_bytes: int,
) -> Contribution:
    nv = view.nodes[x]
    attested, received = endpoints
    me = sides.get(x)
    if me is None:
        missing = Figure(0, Check.UNCHECKED, "no traffic record")
        return Contribution(x, nv.hostname, missing, missing, missing, missing, window_s)
    neighbours = live.get(x, set())
    phantoms = sorted(n for n, (rx, tx) in me.per.items() if n not in neighbours and rx + tx)
    linked = sorted(n for n in neighbours if n in sides)
    silent = sorted(n for n in neighbours if n not in sides)
    if not linked:
        why = "no neighbour over a two-sided link publishes counters"
        r, g, c, u = (
            Figure(v, Check.UNCHECKED, why)
            for v in (me.forwarded, me.gateway, me.client, me.uptime)
        )
        # its own counters, whoever they name, still bound what it can have relayed
        own = flow_bound(
            {n: rx for n, (rx, _) in me.per.items()}, {n: t for n, (_, t) in me.per.items()}
        )
        limit = Bound(
            "flow conservation from its own counters",
            own,
            math.ceil(own * tol.loss / (1 - tol.loss)) + tol.slack_bytes,
        )
        if me.forwarded > limit.limit + limit.tolerance:
            text = f"exceeds {limit.what} ({describe(limit)}) by {me.forwarded - own:,} B"
            r = Figure(me.forwarded, Check.CONTRADICTED, text, (limit,))
        return Contribution(x, nv.hostname, r, g, c, u, window_s, phantoms=phantoms)
    ev = _evidence(x, sides, linked, tol, record_bytes)
    # bytes its own counters put on links that are not two-sided now (a neighbour that went, a
    # phantom): no evidence there either way, so such a figure is unchecked, never contradicted
    unseen = sorted(
        set(silent) | {n for n, (rx, tx) in me.per.items() if n not in linked and rx + tx}
    )
    pair = {n: _link_name(names, x, n) for n in linked}
    disputes = [pair[n] for n in ev.disputed]
    slack = tol.slack_bytes * (1 + len(linked))
    grow = tol.loss / (1 - tol.loss)

    def tolerance_for(limit: int, skew: float = ev.skew_up) -> int:
        return math.ceil(limit * grow + slack + skew)

    def own_tolerance(limit: int) -> int:
        """One record's counters are read together: no skew, one slack."""
        return math.ceil(limit * grow) + tol.slack_bytes

    # relayed: flow conservation, from the neighbours' counts, from our own, and optimistic
    b_n = flow_bound(ev.in_n, ev.out_n)
    # its own bound uses every counter it publishes, silent neighbours' too: a neighbour whose
    # agent stopped must not shrink it (that made an honest relay "contradicted" at once)
    b_o = flow_bound(
        {n: rx for n, (rx, _) in me.per.items()}, {n: tx for n, (_, tx) in me.per.items()}
    )
    b_x = flow_bound(*ev.opt(favour_high=True))
    what = "flow conservation from the neighbours' counters"
    relayed = _judge(
        me.forwarded,
        "relayed",
        Bound(what, b_n, tolerance_for(b_n)),
        Bound("flow conservation from its own counters", b_o, own_tolerance(b_o)),
        Bound("flow conservation, disputed links at its own counts", b_x, tolerance_for(b_x)),
        pending=ev.older,
        disputes=disputes,
        missing=unseen,
        names=names,
    )
    relayed = attest_relayed(relayed, attested.get(x), names, tol)
    credited = min(me.forwarded, b_n + tolerance_for(b_n))

    # gateway: bytes in from neighbours that were not relayed, and only with an uplink offered
    if not nv.is_gateway and me.gateway > tol.slack_bytes:
        gateway = Figure(me.gateway, Check.CONTRADICTED, "node offers no uplink")
    else:
        g_n = max(0, sum(ev.in_n.values()) - credited)
        g_o = max(0, sum(ev.in_o.values()) - min(me.forwarded, b_o))
        g_x = max(0, sum(ev.opt(favour_high=True)[0].values()) - min(me.forwarded, b_x))
        gateway = _judge(
            me.gateway,
            "gateway",
            Bound("what its neighbours sent it, less what it relayed", g_n, tolerance_for(g_n)),
            Bound("what its own counters say arrived", g_o, own_tolerance(g_o)),
            Bound("what arrived, disputed links at its own counts", g_x, tolerance_for(g_x)),
            pending=ev.older,
            disputes=disputes,
            missing=unseen,
            names=names,
        )
    consumed, basis = _consumption(nv.is_gateway, me, ev, credited, b_o, disputes, tol, slack)
    consumed = attest_consumption(consumed, x, sides, received, names, tol)
    alive = [names.get(n, n) for n in linked]
    uptime = Figure(me.uptime, Check.VERIFIED, f"{len(alive)} neighbour(s) report a live link")
    return Contribution(
        x,
        nv.hostname,
        relayed,
        gateway,
        consumed,
        uptime,
        window_s,
        mismatches=ev.mismatches,
        phantoms=phantoms,
        basis=consumed.value if consumed.check is Check.VERIFIED else basis,
        basis_kind="verified" if consumed.check is Check.VERIFIED else "lower bound",
    )


def _link_name(names: Mapping[str, str], a: str, b: str) -> str:
    x, y = sorted((names.get(a, a), names.get(b, b)))
    return f"{x}–{y}"


def _consumption(
    gateway: bool,
    me: Side,
    ev: _Evidence,
    relayed: int,
    b_o: int,
    disputes: list[str],
    tol: Tolerance,
    slack: int,
) -> tuple[Figure, int]:
    """Bounded from both sides: what arrived and did not leave again, plus what it sent that
    had not arrived, is its own traffic (less routing and record traffic, `control_bps`)."""
    control = math.ceil(ev.control)
    keep = 1 - tol.loss

    def low(ins: Mapping[str, int], outs: Mapping[str, int], fwd: int, skew: float) -> int:
        return max(
            0,
            math.floor(
                sum(ins.values()) * keep + sum(outs.values()) - 2 * fwd - control - slack - skew
            ),
        )

    ins_min = {n: min(v, ev.in_o[n]) for n, v in ev.in_n.items()}
    outs_min = {n: min(v, ev.out_o[n]) for n, v in ev.out_n.items()}
    basis = low(ins_min, outs_min, max(relayed, min(me.forwarded, b_o)), ev.skew_down)
    if gateway:
        why = "a gateway's clients use its uplink, which no neighbour sees"
        return Figure(me.client, Check.UNCHECKED, why), 0
    l_n = low(ev.in_n, ev.out_n, relayed, ev.skew_down)
    # from its own link counters alone, with the most relay they allow: its forwarded counter
    # is read just before them (node_agent/counters.py), and a liar could claim b_o anyway
    l_o = low(ev.in_o, ev.out_o, b_o, 0)
    high = sum(ev.in_n.values()) + math.ceil(sum(ev.out_n.values()) / keep) + slack
    bounds = (
        Bound("lower: delivered by neighbours and not forwarded", l_n, 0),
        Bound("upper: everything that crossed its links", high, math.ceil(ev.skew_up)),
    )
    c = me.client
    if c > high + ev.skew_up:
        text = f"more than crossed its links ({high:,} B)"
        if ev.older:
            text += "; its neighbours published earlier: wait for them"
            return Figure(c, Check.PENDING, text, bounds), basis
        text += ": local client traffic or an over-claim"
        return Figure(c, Check.DISPUTED, text, bounds, tuple(disputes)), basis
    if c >= l_n:
        return Figure(c, Check.VERIFIED, f"between {l_n:,} B and {high:,} B", bounds), basis
    # Below the lower bound is flagged, but never "contradicted": the agent's client counter
    # leaves out the router's own traffic, which its links carry too (docs/contribution.md).
    short = f"below what its neighbours delivered and it did not forward ({l_n:,} B)"
    # its own counters, read together in one record, need no timing excuse
    if c < l_o:
        text = (
            f"below what its own link counters say it sent or received ({l_o:,} B) by "
            f"{l_o - c:,} B: an under-report, or traffic of the router itself"
        )
        return Figure(c, Check.DISPUTED, text, bounds, tuple(disputes)), basis
    if ev.newer:
        return Figure(c, Check.PENDING, f"{short}; records cover different periods", bounds), basis
    # A neighbour that published earlier has not yet counted what this node forwarded to it,
    # so the credited relay is short and the lower bound too high by twice that: judged with
    # the most relay its own counters allow, a claim that meets it waits for that neighbour.
    if ev.older and c >= low(ev.in_n, ev.out_n, max(relayed, b_o), ev.skew_down):
        text = f"{short}; its neighbours published earlier: wait for them"
        return Figure(c, Check.PENDING, text, bounds), basis
    where = f", over disputed link(s) {', '.join(sorted(disputes))}" if disputes else ""
    return Figure(
        c, Check.DISPUTED, f"{short} by {l_n - c:,} B{where}", bounds, tuple(disputes)
    ), basis


def _credited(fig: Figure) -> int:
    """Only a verified figure earns anything: it alone counts towards shares and score."""
    return fig.value if fig.check is Check.VERIFIED else 0


def _shares(items: list[Contribution], policy: ContributionPolicy) -> None:
    """Each figure's share of the verified total; the score weighs verified figures only."""
    names = ("relayed", "gateway", "consumed", "uptime")

    def figures(c: Contribution) -> dict[str, Figure]:
        return dict(zip(names, (c.relayed, c.gateway, c.consumed, c.uptime_s), strict=True))

    all_figs = [figures(c) for c in items]
    totals = {k: sum(_credited(figs[k]) for figs in all_figs) for k in names}
    weights = {
        "relayed": policy.relay_weight,
        "gateway": policy.gateway_weight,
        "uptime": policy.uptime_weight,
    }
    wsum = sum(weights.values()) or 1.0
    for c, figs in zip(items, all_figs, strict=True):
        c.share = {k: (_credited(figs[k]) / totals[k] if totals[k] else 0.0) for k in names}
        c.score = sum(weights[k] * c.share[k] for k in weights) / wsum
