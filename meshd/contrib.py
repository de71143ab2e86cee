"""Who contributes what, and whether the neighbours' own counters back it up.

A node's claims are its own `traffic` record; the evidence is its neighbours' records. What A says
it sent to B is compared with what B says it received from A, and the reverse, within a
tolerance for loss. A node cannot have forwarded more than its neighbours saw it send (nor more
than they sent to it), and cannot have carried more to its uplink than its neighbours gave it.

Figures come as deltas between two moments (a window, `--since`) or, without a baseline, as the
cumulative counters. Counters restart when a node's counting restarts (`since` changes); a
counter that goes down while `boot_id` and `since` stay the same is a regression the audit flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from meshd.community import ContributionPolicy
from meshd.records import NeighbourCounters, TrafficBody
from meshd.topology import MeshView


class Check(StrEnum):
    VERIFIED = "verified"  # the neighbours' counters back the figure up
    CONTRADICTED = "contradicted"  # the neighbours' counters make the figure impossible
    UNCHECKED = "unchecked"  # no neighbour publishes counters about this node


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far counters may disagree before a claim is called contradicted."""

    loss: float = 0.10  # relative: lost frames, header accounting differences
    slack_bytes: int = 256 * 1024  # absolute: publish-time skew between two records


@dataclass(frozen=True, slots=True)
class Figure:
    value: int
    check: Check
    evidence: str  # plain words: what it was compared with


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Two ends of one link disagree on the bytes that went across it."""

    sender: str
    receiver: str
    sent: int  # what the sender says it sent
    received: int  # what the receiver says it got


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
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(
            f.check is not Check.CONTRADICTED
            for f in (self.relayed, self.gateway, self.consumed, self.uptime_s)
        )


@dataclass(frozen=True, slots=True)
class Regression:
    """A cumulative counter went down although the node did not restart its counting."""

    node_id: str
    counter: str
    before: int
    after: int


@dataclass(slots=True)
class _Delta:
    forwarded: int
    gateway: int
    client: int
    uptime: int
    per_neighbour: dict[str, tuple[int, int]]  # neighbour -> (rx, tx) from this node's view


def _sum_counters(entries: tuple[NeighbourCounters, ...]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for c in entries:
        rx, tx = out.get(c.neighbour, (0, 0))
        out[c.neighbour] = (rx + c.rx_bytes, tx + c.tx_bytes)
    return out


def _delta(now: TrafficBody, before: TrafficBody | None, window_s: float | None) -> _Delta:
    """Counters over the window; a restarted count (new `since`) counts from zero."""
    cur = _sum_counters(now.neighbours)
    if before is None or before.since != now.since:
        uptime = now.uptime_s if window_s is None else min(now.uptime_s, int(window_s))
        return _Delta(now.forwarded_bytes, now.gateway_bytes, now.client_bytes, uptime, cur)
    old = _sum_counters(before.neighbours)
    per = {
        n: (max(0, rx - old.get(n, (0, 0))[0]), max(0, tx - old.get(n, (0, 0))[1]))
        for n, (rx, tx) in cur.items()
    }
    uptime = now.uptime_s
    if now.boot_id == before.boot_id:
        uptime = now.uptime_s - before.uptime_s
    if window_s is not None:
        uptime = min(uptime, int(window_s))
    return _Delta(
        max(0, now.forwarded_bytes - before.forwarded_bytes),
        max(0, now.gateway_bytes - before.gateway_bytes),
        max(0, now.client_bytes - before.client_bytes),
        max(0, uptime),
        per,
    )


def regressions(
    now: Mapping[str, TrafficBody], before: Mapping[str, TrafficBody]
) -> list[Regression]:
    """Counters that shrank between two snapshots without a restart of the count."""
    out: list[Regression] = []
    for node_id, cur in sorted(now.items()):
        old = before.get(node_id)
        if old is None or old.since != cur.since or old.boot_id != cur.boot_id:
            continue
        pairs = [
            ("forwarded_bytes", old.forwarded_bytes, cur.forwarded_bytes),
            ("gateway_bytes", old.gateway_bytes, cur.gateway_bytes),
            ("client_bytes", old.client_bytes, cur.client_bytes),
            ("uptime_s", old.uptime_s, cur.uptime_s),
        ]
        old_n = _sum_counters(old.neighbours)
        for n, (rx, tx) in sorted(_sum_counters(cur.neighbours).items()):
            if n in old_n:
                pairs.append((f"rx_bytes from {n}", old_n[n][0], rx))
                pairs.append((f"tx_bytes to {n}", old_n[n][1], tx))
        out.extend(Regression(node_id, name, a, b) for name, a, b in pairs if b < a)
    return out


def _figure_le(value: int, bound: int, tol: Tolerance, what: str) -> Figure:
    limit = int(bound * (1 + tol.loss)) + tol.slack_bytes
    if value <= limit:
        return Figure(value, Check.VERIFIED, f"<= {what} ({bound:,} B)")
    return Figure(value, Check.CONTRADICTED, f"exceeds {what} ({bound:,} B) by {value - bound:,} B")


def contributions(
    view: MeshView,
    before: Mapping[str, TrafficBody] | None = None,
    *,
    window_s: float | None = None,
    policy: ContributionPolicy | None = None,
    tolerance: Tolerance = Tolerance(),
) -> list[Contribution]:
    """Per-node figures with their checks, shares of the total and a weighted score."""
    before = before or {}
    policy = policy or ContributionPolicy()
    deltas: dict[str, _Delta] = {}
    for node_id, nv in view.nodes.items():
        body = nv.counters
        if body is not None:
            deltas[node_id] = _delta(body, before.get(node_id), window_s)
    # what each node's neighbours say they exchanged with it: x -> [(reporter, rx_from_x, tx_to_x)]
    seen_by: dict[str, list[tuple[str, int, int]]] = {}
    for reporter, d in deltas.items():
        for other, (rx, tx) in d.per_neighbour.items():
            seen_by.setdefault(other, []).append((reporter, rx, tx))

    out: list[Contribution] = []
    for node_id, nv in sorted(view.nodes.items()):
        found = deltas.get(node_id)
        if found is None:
            missing = Figure(0, Check.UNCHECKED, "no traffic record")
            out.append(
                Contribution(node_id, nv.hostname, missing, missing, missing, missing, window_s)
            )
            continue
        d = found
        reports = seen_by.get(node_id, [])
        mismatches: list[Mismatch] = []
        for reporter, rx_from_x, tx_to_x in reports:
            own_rx, own_tx = d.per_neighbour.get(reporter, (0, 0))
            # x's tx to the reporter should arrive (minus loss); the reporter cannot get more
            if not _agree(own_tx, rx_from_x, tolerance):
                mismatches.append(Mismatch(node_id, reporter, own_tx, rx_from_x))
            if not _agree(tx_to_x, own_rx, tolerance):
                mismatches.append(Mismatch(reporter, node_id, tx_to_x, own_rx))
        if reports:
            sent_seen = sum(r[1] for r in reports)
            recv_seen = sum(r[2] for r in reports)
            relayed = _figure_le(
                d.forwarded,
                min(sent_seen, recv_seen),
                tolerance,
                "what its neighbours exchanged with it",
            )
            if relayed.check is Check.VERIFIED:
                relayed = Figure(
                    d.forwarded,
                    Check.VERIFIED,
                    f"neighbours saw {sent_seen:,} B leave and {recv_seen:,} B arrive",
                )
            gateway = _figure_le(d.gateway, recv_seen, tolerance, "what its neighbours sent it")
            if d.gateway and not nv.is_gateway:
                gateway = Figure(d.gateway, Check.CONTRADICTED, "node offers no uplink")
            local_seen = max(0, sent_seen + recv_seen - 2 * min(d.forwarded, sent_seen, recv_seen))
            if nv.is_gateway:
                consumed = Figure(d.client, Check.UNCHECKED, "a gateway's clients use its uplink")
            else:
                consumed = _figure_le(d.client, local_seen, tolerance, "its own mesh traffic")
            live = view.adjacency.get(node_id, {})  # holds exactly the links in the graph
            alive = [r for r, _, _ in reports if r in live]
            uptime = Figure(
                d.uptime,
                Check.VERIFIED if alive else Check.UNCHECKED,
                f"{len(alive)} neighbour(s) report a live link" if alive else "no live link seen",
            )
        else:
            none = "no neighbour reports counters about it"
            relayed = Figure(d.forwarded, Check.UNCHECKED, none)
            gateway = Figure(d.gateway, Check.UNCHECKED, none)
            consumed = Figure(d.client, Check.UNCHECKED, none)
            uptime = Figure(d.uptime, Check.UNCHECKED, none)
        if mismatches and relayed.check is Check.VERIFIED:
            relayed = Figure(
                relayed.value, Check.CONTRADICTED, "its counters disagree with a neighbour's"
            )
        out.append(
            Contribution(
                node_id,
                nv.hostname,
                relayed,
                gateway,
                consumed,
                uptime,
                window_s,
                mismatches=mismatches,
            )
        )
    _shares(out, policy)
    return out


def _agree(sent: int, received: int, tol: Tolerance) -> bool:
    """The receiver cannot get more than was sent, nor much less than loss explains."""
    if received > sent * (1 + tol.loss) + tol.slack_bytes:
        return False
    return received >= sent * (1 - tol.loss) - tol.slack_bytes


def _credited(fig: Figure) -> int:
    """A contradicted figure earns nothing: it does not count towards shares or score."""
    return 0 if fig.check is Check.CONTRADICTED else fig.value


def _shares(items: list[Contribution], policy: ContributionPolicy) -> None:
    """Each figure's share of the total (contradicted figures count as zero); the score
    counts verified figures only."""
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
        c.score = (
            sum(weights[k] * c.share[k] for k in weights if figs[k].check is Check.VERIFIED) / wsum
        )


@dataclass(frozen=True, slots=True)
class CostShare:
    node_id: str
    hostname: str
    base: float
    consumption: float

    @property
    def total(self) -> float:
        return self.base + self.consumption


def cost_share(
    items: list[Contribution], amount: float, policy: ContributionPolicy
) -> list[CostShare]:
    """Guifi.net-style split: an equal base part plus a part proportional to consumption."""
    members = list(items)
    if not members:
        return []
    base = amount * policy.base_share / len(members)
    consumed_total = sum(c.consumed.value for c in members)
    variable = amount * policy.consumption_share
    out = []
    for c in members:
        if consumed_total:
            part = variable * c.consumed.value / consumed_total
        else:
            part = variable / len(members)  # nobody consumed: split it equally
        out.append(CostShare(c.node_id, c.hostname, base, part))
    return out
