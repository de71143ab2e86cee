"""Replication policy at community scale: publish schedule, eager/lazy links, digests.

Pure like the rest of `meshd/`: values in, values out, time and randomness passed in. The
records, topics, merge rules and header triage stay those of `store.py`; this module only
decides *when* a node signs a new record and *which* neighbour gets it in full.
docs/protocol.md §8 is the prose for every rule here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from meshd.codec import Envelope
from meshd.encoding import canonical_json
from meshd.ids import is_node_id
from meshd.records import Kind, LinksBody

_KINDS = {k.value: k for k in Kind}


class Have(NamedTuple):
    """One slot and the seq held there: what header batches and digests list.

    (The header peeked out of a record's own bytes is `codec.Header`; the store's `triage`
    decides "newer or not" from it before any decode.)"""

    node_id: str
    kind: Kind
    seq: int

    @property
    def slot(self) -> tuple[str, Kind]:
        return (self.node_id, self.kind)

    def to_json(self) -> list[Any]:
        return [self.node_id, self.kind.value, self.seq]


# -- publish schedule ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KindPolicy:
    """respondd-style per-kind timing: sign on change (not more often than `min_gap_s`),
    otherwise re-sign every `refresh_s` so the record neither expires nor goes stale."""

    refresh_s: float
    ttl_s: int
    min_gap_s: float


PUBLISH_POLICY: Mapping[Kind, KindPolicy] = {
    Kind.NODE: KindPolicy(refresh_s=3600, ttl_s=14_400, min_gap_s=10),
    Kind.LINKS: KindPolicy(refresh_s=1800, ttl_s=5400, min_gap_s=2),
    # counters always change; 300 s keeps every node under STALE_AFTER_S (600 s)
    Kind.TRAFFIC: KindPolicy(refresh_s=300, ttl_s=900, min_gap_s=30),
}

LEGACY_INTERVAL_S = 60.0  # the agent before per-kind schedules: every kind every minute


#: Below this many nodes every link stays eager (no prune): flooding a small mesh costs a few
#: messages a second, while a spanning tree would add hops (and lazy repairs) to every record.
TREE_FROM_NODES = 50
SLOW_FROM_NODES = TREE_FROM_NODES  # the same "small mesh": see agent_policy
#: Community sizes between which the agent's schedule slides from its publish interval to
#: PUBLISH_POLICY's slow refresh: below SLOW_FROM_NODES nothing changes (a small mesh floods
#: cheaply); from SCALE_NODES on every kind refreshes as PUBLISH_POLICY says.
SCALE_NODES = 1000


def agent_policy(interval: float, nodes: int = 0) -> dict[Kind, KindPolicy]:
    """The schedule of an agent run with `--publish-interval interval` in a community of
    `nodes` (as many as it holds records of).

    Links and traffic keep the interval (and links still publish at once on a change, at most
    once a second); the node record, which only changes when the agent restarts, is refreshed
    every 10 intervals (at most every quarter of its lifetime) instead of every interval. In a
    large community each refresh stretches towards PUBLISH_POLICY's, so the records the whole
    mesh carries stay within a router's budget (docs/protocol.md §8.2); links then rely on
    `links_changed` to publish a measured change at once.
    """
    scale = min(1.0, max(0.0, (nodes - SLOW_FROM_NODES) / (SCALE_NODES - SLOW_FROM_NODES)))

    def stretch(kind: Kind, floor: float) -> float:
        return max(floor, PUBLISH_POLICY[kind].refresh_s * scale)

    links, traffic = stretch(Kind.LINKS, interval), stretch(Kind.TRAFFIC, interval)
    long_ttl = max(3600, int(12 * interval))
    node = stretch(Kind.NODE, min(long_ttl / 4, 10 * interval))
    return {
        Kind.NODE: KindPolicy(refresh_s=node, ttl_s=max(long_ttl, int(4 * node)), min_gap_s=1.0),
        Kind.LINKS: KindPolicy(refresh_s=links, ttl_s=max(10, int(3 * links + 1)), min_gap_s=1.0),
        Kind.TRAFFIC: KindPolicy(
            refresh_s=traffic, ttl_s=max(10, int(3 * traffic + 1)), min_gap_s=1.0
        ),
    }


#: How much a link's figures must move before a new links record is worth publishing early
COST_STEP = 0.25  # babel rxcost / txcost, relative
LOSS_STEP = 0.05  # loss, absolute


def links_changed(old: LinksBody | None, new: LinksBody) -> bool:
    """A neighbour came, went or changed state, or a link's cost or loss crossed a step: what
    someone troubleshooting a link needs at once, not at the next slow refresh."""
    if old is None:
        return True
    before = {(e.neighbour, e.iface): e for e in old.links}
    after = {(e.neighbour, e.iface): e for e in new.links}
    if before.keys() != after.keys():
        return True
    for k, e in after.items():
        o = before[k]
        if e.up != o.up or e.medium != o.medium:
            return True
        for a, b in ((o.rxcost, e.rxcost), (o.txcost, e.txcost)):
            if (a is None) != (b is None) or (
                a is not None and b is not None and abs(b - a) > COST_STEP * max(a, b, 1)
            ):
                return True
        if (o.loss is None) != (e.loss is None) or (
            o.loss is not None and e.loss is not None and abs(e.loss - o.loss) >= LOSS_STEP
        ):
            return True
    return False


@dataclass
class PublishSchedule:
    """When each of a node's kinds is due. `jitter` in [0.9, 1.1] comes from the caller."""

    policy: Mapping[Kind, KindPolicy] = field(default_factory=lambda: PUBLISH_POLICY)
    last: dict[Kind, float] = field(default_factory=dict)
    next_refresh: dict[Kind, float] = field(default_factory=dict)
    changed: set[Kind] = field(default_factory=set)

    def change(self, kind: Kind) -> None:
        """The content of `kind` changed significantly: publish it as soon as its gap allows."""
        self.changed.add(kind)

    def due(self, now: float) -> list[Kind]:
        """Kinds to sign and publish now (a never-published kind is always due)."""
        out = []
        for kind, p in self.policy.items():
            last = self.last.get(kind)
            refresh = last is None or now >= self.next_refresh[kind]
            if refresh or (kind in self.changed and last is not None and now >= last + p.min_gap_s):
                out.append(kind)
        return out

    def published(self, kind: Kind, now: float, jitter: float = 1.0) -> None:
        self.last[kind] = now
        self.next_refresh[kind] = now + self.policy[kind].refresh_s * jitter
        self.changed.discard(kind)

    def wake_at(self, now: float) -> float:
        """The next time `due` can return something (for a sleeping publisher)."""
        times = []
        for kind, p in self.policy.items():
            last = self.last.get(kind)
            if last is None:
                return now
            times.append(self.next_refresh[kind])
            if kind in self.changed:
                times.append(last + p.min_gap_s)
        return max(now, min(times))


# -- headers, digests ---------------------------------------------------------------------------

MAX_HEADERS = 8192  # one control message never lists more slots than a large community holds


def encode_headers(tag: str, headers: Iterable[Have]) -> bytes:
    """A control message `{tag: [[node_id, kind, seq], ...]}`, sorted, canonical JSON."""
    return canonical_json({tag: sorted(h.to_json() for h in headers)})


def decode_headers(tag: str, data: bytes) -> list[Have] | None:
    """The headers of a control message, or None if it is not one (hostile input: just drop)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    items = value.get(tag) if isinstance(value, dict) else None
    if not isinstance(items, list) or len(items) > MAX_HEADERS:
        return None
    out = []
    for item in items:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        node_id, kind, seq = item
        if not is_node_id(node_id) or kind not in _KINDS or type(seq) is not int or seq < 0:
            return None
        out.append(Have(node_id, _KINDS[kind], seq))
    return out


CONTROL_TAGS = ("digest", "echo", "graft", "have", "prune", "want")
CHUNK = 400  # headers per control message: 400 x ~30 B stays under the 16 KiB record cap


def encode_chunks(tag: str, headers: Iterable[Have]) -> list[bytes]:
    """`encode_headers` split so that no message outgrows the cap a receiver applies first."""
    items = sorted(headers)
    return [encode_headers(tag, items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]


def decode_control(data: bytes) -> tuple[str, list[Have]] | None:
    """(tag, headers) of one control message, or None: exactly one known tag holding a list of
    at most MAX_HEADERS valid headers (hostile input: the caller counts and drops)."""
    if len(data) > MAX_HEADERS * 64:
        return None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(value, dict) or len(value) != 1:
        return None
    (tag,) = value
    if tag not in CONTROL_TAGS:
        return None
    headers = decode_headers(tag, data)
    return None if headers is None else (tag, headers)


def held_headers(records: Iterable[Envelope]) -> list[Have]:
    return [Have(e.node_id, e.kind, e.seq) for e in records]


def newer_in(theirs: Iterable[Have], ours: Mapping[tuple[str, Kind], Envelope]) -> list[Have]:
    """The slots where the other side holds a higher seq than we do: what to pull."""
    out = []
    for h in theirs:
        held = ours.get(h.slot)
        if held is None or held.seq < h.seq:
            out.append(h)
    return out


# -- eager / lazy links (Plumtree-like) ----------------------------------------------------------

HAVE_INTERVAL_S = 0.5  # header batches to lazy neighbours (1.0 -> 0.5: heal 5.6 -> 1.9 s at N=1000)
GRAFT_AFTER_S = 0.25  # a header's record not seen by then is pulled and its link made eager
ANTI_ENTROPY_S = 600.0  # digest to one neighbour, repairs anything lost (a digest is ~28 B a slot)


@dataclass
class PeerModes:
    """Which neighbour links carry full records (eager) and which only headers (lazy).

    Links start eager; a full record that arrives twice prunes the later link unless it is the
    last eager one, so cycles break into a spanning tree and each record crosses each node once.
    A header for a record that then fails to arrive grafts its link back (tree repair).
    """

    eager: set[str] = field(default_factory=set)
    lazy: set[str] = field(default_factory=set)
    # header slot -> (neighbour that announced it, seq, deadline)
    waiting: dict[tuple[str, Kind], tuple[str, int, float]] = field(default_factory=dict)

    def up(self, peer: str) -> None:
        self.lazy.discard(peer)
        self.eager.add(peer)

    def down(self, peer: str) -> list[str]:
        """`peer` is gone. If it was an eager link, every lazy link turns eager (returned: tell
        them with a graft): the tree may be cut here, and flooding until the next duplicates
        prune it again repairs it at once instead of one header batch later."""
        was_eager = peer in self.eager
        self.eager.discard(peer)
        self.lazy.discard(peer)
        for slot, (who, _, _) in list(self.waiting.items()):
            if who == peer:
                del self.waiting[slot]
        if not was_eager:
            return []
        grafted = sorted(self.lazy)
        self.eager |= self.lazy
        self.lazy.clear()
        return grafted

    def prune(self, peer: str) -> bool:
        """A duplicate came in full from `peer`; True when its link turned lazy."""
        if peer in self.eager and len(self.eager) > 1:
            self.eager.discard(peer)
            self.lazy.add(peer)
            return True
        return False

    def pruned_by(self, peer: str) -> str | None:
        """`peer` pruned our link. A node left with no eager link grafts another one at once
        (returned: tell it with a graft) rather than wait for a header batch."""
        if peer in self.eager:
            self.eager.discard(peer)
            self.lazy.add(peer)
        if self.eager:
            return None
        others = sorted(self.lazy - {peer})
        if not others:
            return None
        self.graft(others[0])
        return others[0]

    def graft(self, peer: str) -> bool:
        if peer in self.lazy:
            self.lazy.discard(peer)
            self.eager.add(peer)
            return True
        return False

    def announced(self, peer: str, header: Have, now: float) -> None:
        """`peer` holds `header`'s record and we do not: wait a little for the tree, then pull."""
        held = self.waiting.get(header.slot)
        if held is None or held[1] < header.seq:
            self.waiting[header.slot] = (peer, header.seq, now + GRAFT_AFTER_S)

    def arrived(self, header: Have) -> None:
        held = self.waiting.get(header.slot)
        if held is not None and held[1] <= header.seq:
            del self.waiting[header.slot]

    def overdue(self, now: float) -> dict[str, list[Have]]:
        """Per neighbour, the headers to pull now; their links are grafted by the caller."""
        out: dict[str, list[Have]] = {}
        for slot, (peer, seq, deadline) in list(self.waiting.items()):
            if deadline <= now:
                out.setdefault(peer, []).append(Have(slot[0], slot[1], seq))
                del self.waiting[slot]
        return out
