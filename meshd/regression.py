"""Counters that went down: a cumulative counter may only shrink when the node restarted its
count (a new `boot_id` or `since`); anything else is a regression the audit flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshd.evidence import sum_counters
from meshd.records import TrafficBody


@dataclass(frozen=True, slots=True)
class Regression:
    """A cumulative counter went down although the node did not restart its counting."""

    node_id: str
    counter: str
    before: int
    after: int


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
        old_n = sum_counters(old.neighbours)
        for n, (rx, tx) in sorted(sum_counters(cur.neighbours).items()):
            if n in old_n:
                pairs.append((f"rx_bytes from {n}", old_n[n][0], rx))
                pairs.append((f"tx_bytes to {n}", old_n[n][1], tx))
        out.extend(Regression(node_id, name, a, b) for name, a, b in pairs if b < a)
    return out
