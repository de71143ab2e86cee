"""The neighbour table and per-neighbour flood limits (pure: times are passed in).

mDNS says a neighbour exists and where; it is not liveness (a crashed node's mDNS records live
for minutes). Liveness comes from our own probes and the neighbour's MQTT status, so a neighbour
is `up` while we hear it and `lost` once it has been silent for `lost_after` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Event(StrEnum):
    APPEARED = "appeared"
    LOST = "lost"
    MOVED = "moved"  # same node, new address or interface


@dataclass
class Neighbour:
    node_id: str
    iface: str
    address: str  # where to reach it: IPv4 in the link's subnet, or fe80::…%iface
    broker_port: int
    fingerprint: str = ""
    advertised: tuple[str, ...] = ()
    up: bool = False
    appeared_at: float = 0.0
    heard_at: float | None = None
    lost_at: float | None = None
    probe_port: int = 0  # 0 = the same port as ours
    verified: bool = False  # a verified record of `node_id` arrived over `link`

    @property
    def link(self) -> str:
        """Where its bytes come from (address and interface): what limits are keyed by."""
        return self.address if "%" in self.address else f"{self.address}%{self.iface}"


MAX_NEIGHBOURS = 64  # entries kept; a router has a handful of neighbours, fakes have thousands
MAX_PER_LINK = 16  # unverified identities claimed from one address (lab hosts share one)


@dataclass
class NeighbourTable:
    """Keyed by node id for lookups, but at most `max_per_link` unverified identities per link
    (address and interface) and `max_entries` in all, so announcing fake ids costs the
    announcer, not us; a verified, live neighbour is never evicted or moved by announcements."""

    lost_after: float = 10.0
    forget_after: float = 600.0  # a lost neighbour stays listed (up=false) this long
    max_entries: int = MAX_NEIGHBOURS
    max_per_link: int = MAX_PER_LINK
    entries: dict[str, Neighbour] = field(default_factory=dict)
    refused: int = 0  # announcements not taken (table full, link held by a verified node)

    def seen(
        self,
        node_id: str,
        iface: str,
        address: str,
        broker_port: int,
        now: float,
        fingerprint: str = "",
        advertised: tuple[str, ...] = (),
    ) -> Event | None:
        """Discovery found (or refreshed) a neighbour."""
        n = self.entries.get(node_id)
        link = address if "%" in address else f"{address}%{iface}"
        if n is None:
            same = [o for o in self.entries.values() if o.link == link and not o.verified]
            if len(same) >= self.max_per_link:  # one address announcing many ids: oldest out
                oldest = min(same, key=lambda o: o.heard_at or o.appeared_at)
                del self.entries[oldest.node_id]
        if n is not None and n.verified and n.up and n.link != link:
            self.refused += 1  # a proven, live neighbour does not move on an announcement
            return None
        if n is None:
            if len(self.entries) >= self.max_entries and not self._evict():
                self.refused += 1
                return None
            self.entries[node_id] = Neighbour(
                node_id, iface, address, broker_port, fingerprint, advertised, True, now, now
            )
            return Event.APPEARED
        moved = (n.iface, n.address, n.broker_port) != (iface, address, broker_port)
        if moved:
            n.verified = False  # proven at the old link, not at the new one
        n.iface, n.address, n.broker_port = iface, address, broker_port
        n.fingerprint, n.advertised = fingerprint or n.fingerprint, advertised or n.advertised
        # Discovery alone never brings a lost neighbour back: it must be heard again.
        return Event.MOVED if moved else None

    def _evict(self) -> bool:
        """Make room by dropping one unverified entry (lost ones first); False if none."""
        spare = [n for n in self.entries.values() if not n.verified]
        if not spare:
            return False
        victim = min(spare, key=lambda n: (n.up, n.heard_at or n.appeared_at))
        del self.entries[victim.node_id]
        return True

    def verify(self, node_id: str, link: str) -> bool:
        """A verified record of `node_id` came over `link`; True when that is news."""
        n = self.entries.get(node_id)
        if n is None or n.link != link or n.verified:
            return False
        n.verified = True
        return True

    def heard(self, node_id: str, now: float) -> Event | None:
        """A probe or echo arrived from the neighbour."""
        n = self.entries.get(node_id)
        if n is None:
            return None
        n.heard_at = now
        if not n.up:
            n.up, n.lost_at, n.appeared_at = True, None, now
            return Event.APPEARED
        return None

    def gone(self, node_id: str, now: float) -> Event | None:
        """Explicit goodbye (mDNS removal or MQTT status `offline`)."""
        n = self.entries.get(node_id)
        if n is None or not n.up:
            return None
        n.up, n.lost_at = False, now
        return Event.LOST

    def tick(self, now: float) -> list[tuple[str, Event]]:
        """Mark silent neighbours lost; forget long-lost ones."""
        events: list[tuple[str, Event]] = []
        for node_id, n in list(self.entries.items()):
            last = n.heard_at if n.heard_at is not None else n.appeared_at
            if n.up and now - last > self.lost_after:
                n.up, n.lost_at = False, now
                events.append((node_id, Event.LOST))
            elif not n.up and n.lost_at is not None and now - n.lost_at > self.forget_after:
                del self.entries[node_id]
        return events

    def up(self) -> list[Neighbour]:
        return [n for n in self.entries.values() if n.up]


@dataclass
class TokenBucket:
    """At most `rate` messages per second on average, `burst` at once (the retained replay)."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False
