"""Push replication (docs/protocol.md §8.3-8.4) on top of the flooding `RelayCore`, still pure.

A relay writes only into its *own* broker, never into a neighbour's: a full record for
neighbour X on `_push/<X>`, a control message on `_ctl/<X>`, not retained. X reads both over its
connection to our broker (it subscribes to exactly those two topics and to our own records), so
whatever arrives on `_push/<us>`/`_ctl/<us>` over a link comes from the node that link belongs
to, rate-limited and counted per link like everything else: nobody can speak for a neighbour,
and a router's mesh listener needs no write access at all. The eager / lazy bookkeeping is
`meshd.sync.PeerModes`; timed work (header batches to lazy links, pulls of announced records that
did not arrive, anti-entropy digests) comes from `tick(now)`.

A neighbour takes part (`peer_up`) only once the shell has verified it (a valid record of its
own arrived over that link): pushes are never spent on an identity someone merely announced.
Records pushed over a link still verify themselves like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from meshd.codec import Envelope, peek_header
from meshd.errors import RecordRejected, RejectReason
from meshd.records import Kind
from meshd.sync import (
    ANTI_ENTROPY_S,
    HAVE_INTERVAL_S,
    TREE_FROM_NODES,
    Have,
    PeerModes,
    decode_control,
    encode_chunks,
    encode_headers,
    held_headers,
    newer_in,
)
from meshd.topics import CONTROL, record_topic
from node_agent.relay_core import (
    LOCAL,
    Action,
    Control,
    Drop,
    Publish,
    Push,
    RelayCore,
    Source,
    Stored,
)

TICK_S = 0.1  # how often the shell (or a simulation) calls `tick`: header batches, pulls
PRUNE = encode_headers("prune", [])
GRAFT = encode_headers("graft", [])


def _header(env: Envelope) -> Have:
    return Have(env.node_id, env.kind, env.seq)


@dataclass
class PushCore(RelayCore):
    replication: ClassVar[str] = "push"
    modes: PeerModes = field(default_factory=PeerModes)
    tree_from_nodes: int = TREE_FROM_NODES
    # per lazy neighbour, the headers to announce in the next batch: fixed when the record
    # arrives, so a link grafted before the batch still hears of it (it got no full copy)
    pending: dict[str, dict[tuple[str, Kind], Have]] = field(default_factory=dict)
    next_have: float = 0.0
    next_anti_entropy: float = 0.0
    turn: int = 0  # which neighbour gets the next anti-entropy digest

    # -- the way in -------------------------------------------------------------------------

    def _on_relay(
        self, source: Source, middle: str, addressee: str, payload: bytes, now: float
    ) -> list[Action]:
        if source.link == LOCAL.link:
            # our own broker: only we write pushes there, for neighbours to read (no-local
            # keeps our own from coming back), so this is someone else's write
            return [Drop("push_on_own_broker", source.link, f"{middle}/{addressee}")]
        if addressee != self.node_id:
            return [Drop("push_not_for_us", source.link, f"{middle}/{addressee}")]
        sender = source.claimed
        if sender == self.node_id:
            return [Drop("own_echo", source.link)]
        if middle == CONTROL:
            if sender not in self.modes.eager and sender not in self.modes.lazy:
                return [Drop("control_unverified", source.link, sender[:32])]
            return self._on_control(source, sender, payload, now)
        try:
            env = self.store.offer(payload, now)
        except RecordRejected as exc:
            if exc.reason in (RejectReason.DUPLICATE, RejectReason.STALE):
                self.counters["push_redundant"] += 1
                # a sender's own record also comes over our subscription to its topics: not a
                # cycle in the eager tree, so no prune for it
                own = exc.reason is RejectReason.DUPLICATE and self._sender_own(sender, payload)
                if not own and self._may_prune() and self.modes.prune(sender):
                    self.counters["prunes_sent"] += 1
                    return [Control(sender, PRUNE)]
                return []
            return [Drop(exc.reason.value, source.link, exc.detail)]
        self.counters["relayed"] += 1
        return [
            Stored(env),
            Publish(record_topic(env.community, env.node_id, env.kind), env.raw),
            *self._pass_on(env, sender),
        ]

    def _may_prune(self) -> bool:
        """Below `tree_from_nodes` every link stays eager: a small mesh floods for latency."""
        return len(self.store.records) >= self.tree_from_nodes * len(Kind)

    def _sender_own(self, sender: str, payload: bytes) -> bool:
        """The very bytes held of the sender's own record (the header is only a lookup key)."""
        h = peek_header(payload)
        held = None if h is None else self.store.records.get((h.node_id, h.kind))
        return held is not None and held.node_id == sender and held.raw == payload

    def _on_control(self, source: Source, sender: str, payload: bytes, now: float) -> list[Action]:
        parsed = decode_control(payload)
        if parsed is None:
            return [Drop("control_malformed", source.link, payload[:64].hex())]
        tag, headers = parsed
        self.counters[f"control_{tag}_in"] += 1
        records = self.store.records
        if tag == "have":
            queued = self.pending.get(sender, {})
            for h in headers:  # it holds these: no need to announce them to it
                mine = queued.get(h.slot)
                if mine is not None and mine.seq <= h.seq:
                    del queued[h.slot]
            for h in newer_in(headers, records):
                self.modes.announced(sender, h, now)
            return []
        if tag == "want":
            held = [records.get(h.slot) for h in headers]
            return [Push(sender, e.raw) for e in held if e is not None]
        if tag in ("digest", "echo"):
            actions: list[Action] = [
                Control(sender, m) for m in encode_chunks("want", newer_in(headers, records))
            ]
            if tag == "digest":  # answered with ours, so it pulls what it lacks too
                actions += self._digest(sender, "echo")
            return actions
        if tag == "prune":
            other = self.modes.pruned_by(sender)
            return [] if other is None else [Control(other, GRAFT)]
        self.modes.graft(sender)  # "graft"
        return []

    # -- passing records on -----------------------------------------------------------------

    def _pass_on(self, env: Envelope, came_from: str | None) -> list[Action]:
        """In full to eager links, a header to lazy ones next batch (not back where it came)."""
        h = _header(env)
        announced = self.modes.waiting.get(h.slot)  # a lazy link that told us it holds it
        holder = announced[0] if announced is not None and announced[1] >= h.seq else None
        self.modes.arrived(h)
        for p in self.modes.lazy:
            if p != came_from and p != holder:
                self.pending.setdefault(p, {})[h.slot] = h
        return [Push(p, env.raw) for p in sorted(self.modes.eager) if p != came_from]

    def _digest(self, peer: str, tag: str = "digest") -> list[Action]:
        headers = held_headers(self.store.records.values())
        return [Control(peer, m) for m in encode_chunks(tag, headers)] or [
            Control(peer, encode_headers(tag, []))
        ]

    def peer_up(self, peer: str, now: float) -> list[Action]:
        """Reading `peer`'s broker, and `peer` verified there: an eager link, and our digest
        instead of a replay."""
        self.modes.up(peer)
        return self._digest(peer)

    def peer_down(self, peer: str) -> list[Action]:
        self.pending.pop(peer, None)
        return [Control(p, GRAFT) for p in self.modes.down(peer)]

    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        for peer, headers in sorted(self.modes.overdue(now).items()):
            out += [Control(peer, m) for m in encode_chunks("want", headers)]
            if self.modes.graft(peer):
                out.append(Control(peer, GRAFT))
        if now >= self.next_have:
            self.next_have = now + HAVE_INTERVAL_S
            live = self.modes.eager | self.modes.lazy
            for p, heads in sorted(self.pending.items()):
                if p in live:
                    out += [Control(p, m) for m in encode_chunks("have", heads.values())]
            self.pending.clear()
        peers = sorted(self.modes.eager | self.modes.lazy)
        if not self.next_anti_entropy:  # every connect sent a digest already
            self.next_anti_entropy = now + ANTI_ENTROPY_S
        if now >= self.next_anti_entropy:
            self.next_anti_entropy = now + ANTI_ENTROPY_S
            if peers:
                self.turn += 1
                # one way: that neighbour pulls what it lacks; its own turn repairs ours
                out += self._digest(peers[self.turn % len(peers)], "echo")
        return out
