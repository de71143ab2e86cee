"""The vocabulary of contribution checks: states, tolerances, bounds, figures, and each node's
counters over its window. Shared by `meshd.contrib` (neighbour evidence) and `meshd.attest`
(endpoint evidence); see docs/contribution.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from meshd import defaults
from meshd.records import NeighbourCounters, TrafficBody


class Check(StrEnum):
    VERIFIED = "verified"
    PENDING = "pending"
    DISPUTED = "disputed"
    CONTRADICTED = "contradicted"
    UNCHECKED = "unchecked"


#: One plain sentence per state, as the CLI prints it under the table.
LEGEND: dict[Check, str] = {
    Check.VERIFIED: "the neighbours' and endpoints' own counters allow this figure, within the "
    "stated tolerance",
    Check.PENDING: "the records compared were published at different times or cover different "
    "periods, so the figure is judged once newer records line up",
    Check.DISPUTED: "counters that should agree do not (the two ends of a link, a flow's "
    "endpoints, a node's links and its clients); all are named, none is blamed, and the "
    "figure earns nothing until they agree",
    Check.CONTRADICTED: "the node's own counters, or counters both ends agree on, make this "
    "figure impossible",
    Check.UNCHECKED: "no neighbour publishes counters over a real two-sided link, so nobody can "
    "check it",
}
SEVERITY = {
    Check.VERIFIED: 0,
    Check.UNCHECKED: 1,
    Check.PENDING: 2,
    Check.DISPUTED: 3,
    Check.CONTRADICTED: 4,
}


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far counters may disagree before a check fails; docs/contribution.md explains each."""

    loss: float = 0.10  # relative: frames lost on a link, header accounting differences
    slack_bytes: int = 64 * 1024  # absolute, per link: counters read a moment apart
    max_skew_s: float = defaults.PUBLISH_INTERVAL_S  # publish skew turned into rate × skew
    read_lag_s: float = 0.0  # how long before its stamp an agent may read its counters
    control_bps: int = 2048  # per link: routing hellos and link probes
    replication: float = 3.0  # per link: this many copies of every record per publish interval
    route_slack: float = 0.5  # a flow may use any path up to 1.5 × its least cost


@dataclass(frozen=True, slots=True)
class Bound:
    """One bound a figure was checked against: the figure passes at `limit + tolerance`."""

    what: str
    limit: int
    tolerance: int

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "limit": self.limit, "tolerance": self.tolerance}


@dataclass(frozen=True, slots=True)
class Figure:
    value: int
    check: Check
    evidence: str  # plain words: what it was compared with, and the outcome
    bounds: tuple[Bound, ...] = ()
    disputes: tuple[str, ...] = ()  # the links ("a–b") or flows ("p→q") in dispute

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "check": self.check.value,
            "evidence": self.evidence,
            "bounds": [b.to_json() for b in self.bounds],
            "disputes": list(self.disputes),
        }


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Two ends of one link disagree on the bytes that went across it: a dispute of the link."""

    sender: str
    receiver: str
    sent: int  # what the sender says it sent
    received: int  # what the receiver says it got


def describe(bound: Bound) -> str:
    return f"{bound.limit:,} B + {bound.tolerance:,} B tolerance"


@dataclass(slots=True)
class Side:
    """One node's counters over its window [start, at], from its own records."""

    start: float
    at: float
    forwarded: int
    gateway: int
    client: int
    uptime: int
    per: dict[str, tuple[int, int]]  # neighbour -> (rx, tx) from this node's view
    flows: dict[str, tuple[int, int]]  # peer -> (sent, received) end to end
    interval: float = float(defaults.PUBLISH_INTERVAL_S)  # its publish interval, from its TTL

    def rate(self, nb: str) -> float:
        rx, tx = self.per.get(nb, (0, 0))
        return (rx + tx) / max(1.0, self.at - self.start)

    def covers_more(self, other: Side, read_lag_s: float) -> bool:
        """Its counters may span time the other's do not: an earlier start, or a record that is
        not clearly older. A record stamped `at` (whole seconds, taken after the counters were
        read) holds counters read in [at - read_lag_s, at + 1), so two records less than
        1 s + read_lag_s apart are unordered: either may hold the newer counters, and a burst
        moves far more in that time than the window's average rate (the rate × skew
        tolerance) allows."""
        return self.start < other.start or self.at + 1 + read_lag_s > other.at


def sum_counters(entries: tuple[NeighbourCounters, ...]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for c in entries:
        rx, tx = out.get(c.neighbour, (0, 0))
        out[c.neighbour] = (rx + c.rx_bytes, tx + c.tx_bytes)
    return out


def _flows(body: TrafficBody) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for e in body.endpoints:
        s, r = out.get(e.peer, (0, 0))
        out[e.peer] = (s + e.sent_bytes, r + e.received_bytes)
    return out


def _minus(
    a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    return {
        k: (max(0, x - b.get(k, (0, 0))[0]), max(0, y - b.get(k, (0, 0))[1]))
        for k, (x, y) in a.items()
    }


def side_of(now: TrafficBody, at: float, before: TrafficBody | None, start: float | None) -> Side:
    """Counters over the window; a restarted count (new `since`) counts from its own start."""
    if before is None or before.since != now.since or start is None:
        begin = float(now.since) if start is None else max(start, float(now.since))
        uptime = now.uptime_s if start is None else min(now.uptime_s, int(at - begin))
        return Side(
            begin,
            at,
            now.forwarded_bytes,
            now.gateway_bytes,
            now.client_bytes,
            max(0, uptime),
            sum_counters(now.neighbours),
            _flows(now),
        )
    uptime = now.uptime_s - before.uptime_s if now.boot_id == before.boot_id else now.uptime_s
    return Side(
        start,
        at,
        max(0, now.forwarded_bytes - before.forwarded_bytes),
        max(0, now.gateway_bytes - before.gateway_bytes),
        max(0, now.client_bytes - before.client_bytes),
        max(0, min(uptime, int(at - start))),
        _minus(sum_counters(now.neighbours), sum_counters(before.neighbours)),
        _minus(_flows(now), _flows(before)),
    )
