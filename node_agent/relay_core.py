"""The relay's decisions, without I/O: one message in, a list of actions out.

Every node floods every record to every neighbour; this module decides what one incoming MQTT
message means. It never awaits, reads a clock, opens a socket or logs: the caller passes `now`
and performs the returned actions, so the same code runs in the agent (`node_agent.relay`) and
in simulations of a thousand nodes over an in-memory bus.

Public interface (kept small on purpose):

- ``RelayCore(store, node_id, rate=, burst=)`` -- wraps a `meshd.store.RecordStore`.
- ``core.on_message(source, topic, payload, now) -> list[Action]`` -- one message from a
  neighbour's broker (``Source(link, claimed, fingerprint)``) or from our own broker (`LOCAL`).
  It never raises: anything unexpected becomes ``Drop("internal_error", error=exc)``.
- ``core.own(envelope) -> list[Action]`` -- one of our own freshly signed records.
- ``core.expire(now)``, ``core.held()`` -- clear expired records; everything held (for a
  broker that reconnected). ``core.outdated(publish)`` -- checked when a publish is sent, so
  one decided before a newer record arrived never rewinds the broker.
- ``core.forget(link)`` -- the link is gone: drop its rate limit and its belief.
- ``core.counters`` (reason -> count) and ``core.by_source`` (link -> reason -> count, capped);
  ``core.count(source, reason)`` for drops the shell decides (a packet cut before the core).

Actions: `Publish(topic, payload, retain)` on our own broker (neighbours read it from there),
`Stored(envelope)` (the store changed), `Drop(reason, ...)` (counted, nothing else happens),
`NeighbourVerified(link, node_id)` (a record that verified came over `link` from the node that
link claims to be: only then is the neighbour believed), `NeighbourGone(link, node_id)` (the
neighbour said `offline`), `Revoked(revocation)` (persist it); with push replication
(`relay_push.PushCore`) also `Push(neighbour, payload)` and `Control(neighbour, message)`,
published (not retained) into our own broker on `_push/<neighbour>` / `_ctl/<neighbour>`, where
that neighbour reads them. `tick(now)`, `peer_up`, `peer_down` are no-ops here.

Order of checks for a neighbour's message, cheapest first and verify before trust: rate limit
per source link, size cap, topic and community, then `RecordStore.offer` (header triage, then
decode + signature + enrolment). Anything refused from our own broker is answered with a
Publish of the record held there (or a clear), so a broker never keeps garbage for new readers.
A `Stored` record of our own node that we did not sign now tells the shell to move its seq on.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, ClassVar

from meshd.codec import Envelope
from meshd.errors import RecordRejected, RejectReason
from meshd.records import Kind
from meshd.store import RecordStore
from meshd.topics import (
    CONTROL,
    PUSH,
    REVOCATIONS,
    STATUS,
    parse_topic,
    record_topic,
    revocation_topic,
)
from meshd.topics import status_topic as _status_topic
from meshd.trust import Revocation
from node_agent.neighbours import TokenBucket

MAX_SOURCES = 64  # per-link state kept (buckets, counters); least recently heard pruned first
KINDS = {k.value: k for k in Kind}


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: `link` is the address%iface it arrived over (what limits and
    counters are keyed by); `claimed` and `fingerprint` are what discovery says sits there,
    believed only once a verified record of `claimed` arrives over this link."""

    link: str
    claimed: str = ""
    fingerprint: str = ""


LOCAL = Source("local")


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Stored:
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str
    link: str = ""
    detail: str = ""
    error: BaseException | None = None  # the original exception, for the caller's log


@dataclass(frozen=True, slots=True)
class NeighbourVerified:
    link: str
    node_id: str


@dataclass(frozen=True, slots=True)
class NeighbourGone:
    link: str
    node_id: str


@dataclass(frozen=True, slots=True)
class Revoked:
    revocation: Revocation


@dataclass(frozen=True, slots=True)
class Push:
    """One full record for `neighbour`, on `_push/<neighbour>` of our broker (push only)."""

    neighbour: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Control:
    """One control message for `neighbour`, on `_ctl/<neighbour>` of our broker (push only)."""

    neighbour: str
    message: bytes


Action = Publish | Stored | Drop | NeighbourVerified | NeighbourGone | Revoked | Push | Control


@dataclass
class RelayCore:
    replication: ClassVar[str] = "flood"  # what the shell subscribes to on a neighbour
    store: RecordStore
    node_id: str
    rate: float = 50.0
    burst: float = 2000.0
    max_sources: int = MAX_SOURCES
    counters: Counter[str] = field(default_factory=Counter)
    by_source: OrderedDict[str, Counter[str]] = field(default_factory=OrderedDict)
    buckets: OrderedDict[str, TokenBucket] = field(default_factory=OrderedDict)
    verified: OrderedDict[str, str] = field(default_factory=OrderedDict)  # link -> node id

    @property
    def community(self) -> str:
        return self.store.trust.community

    # -- the way in -------------------------------------------------------------------------

    def on_message(self, source: Source, topic: str, payload: bytes, now: float) -> list[Action]:
        """What one message means; never raises."""
        try:
            actions = self._on_message(source, topic, payload, now)
        except Exception as exc:  # no single message may end the node
            actions = [Drop("internal_error", source.link, f"{type(exc).__name__}: {exc}", exc)]
        for a in actions:
            if isinstance(a, Drop):
                self.count(source, a.reason)
        return actions

    def _on_message(self, source: Source, topic: str, payload: bytes, now: float) -> list[Action]:
        remote = source is not LOCAL and source.link != LOCAL.link
        if remote and not self._bucket(source.link).allow(now):
            return [Drop("rate_limited", source.link)]
        if len(payload) > self.store.limits.max_bytes:
            self.store.rejections[RejectReason.TOO_LARGE] += 1
            return [Drop(RejectReason.TOO_LARGE.value, source.link, f"{len(payload)} bytes")]
        if not payload:
            return []  # a cleared topic
        parsed = parse_topic(topic)
        if parsed is None:
            return [Drop("foreign_topic", source.link, topic[:200])]
        community, middle, last = parsed
        if community != self.community:
            return [Drop("other_community_topic", source.link, community[:64])]
        if middle == REVOCATIONS:
            return self._on_revocation(source, payload)
        if middle in (PUSH, CONTROL):
            return self._on_relay(source, middle, last, payload, now)
        if last == STATUS:
            claimed = remote and middle == source.claimed
            if claimed and payload == b"offline" and self.verified.get(source.link) == middle:
                return [NeighbourGone(source.link, middle)]
            return []
        return self._on_record(source, topic, middle, last, payload, now, remote)

    def _on_record(
        self,
        source: Source,
        topic: str,
        node_id: str,
        kind: str,
        payload: bytes,
        now: float,
        remote: bool,
    ) -> list[Action]:
        try:
            env = self.store.offer(payload, now)
        except RecordRejected as exc:
            actions: list[Action] = []
            held = self.store.records.get((node_id, KINDS[kind])) if kind in KINDS else None
            same = held is not None and held.raw == payload
            if exc.reason is RejectReason.DUPLICATE and same:
                if remote and held is not None:
                    actions += self._verify(source, held)  # the same bytes verified before
                return actions
            if exc.reason is RejectReason.DUPLICATE and remote:
                return actions  # a tampered copy of a record held (triage): nothing to learn
            actions.append(Drop(exc.reason.value, source.link, exc.detail))
            if not remote:
                actions += self._restore(topic, node_id, kind)
            return actions
        actions = [Stored(env)]
        if remote:
            actions += self._verify(source, env)
        if env.node_id != node_id or env.kind.value != kind:
            # a valid record on the wrong topic: keep it, but put it where it belongs
            actions += self._restore(topic, node_id, kind)
        self.counters["relayed" if remote else "accepted_local"] += 1
        actions.append(Publish(record_topic(env.community, env.node_id, env.kind), env.raw))
        return actions + self._pass_on(env, source.claimed or None)

    def _pass_on(self, env: Envelope, came_from: str | None) -> list[Action]:
        """A record newly held, from neighbour `came_from` (None: ours or our broker's): what
        beyond our own broker carries it on. Flooding: nothing, neighbours read our broker."""
        return []

    def _on_relay(
        self, source: Source, middle: str, sender: str, payload: bytes, now: float
    ) -> list[Action]:
        """`_push`/`_ctl` traffic: only the push core (`relay_push.PushCore`) speaks it."""
        return [Drop("replication_unsupported", source.link, f"{middle}/{sender}")]

    def tick(self, now: float) -> list[Action]:
        """Timed work (header batches, pulls); flooding has none."""
        return []

    def peer_up(self, peer: str, now: float) -> list[Action]:
        """Our client reached `peer`'s broker; flooding just subscribes there."""
        return []

    def peer_down(self, peer: str) -> list[Action]:
        return []

    def _verify(self, source: Source, env: Envelope) -> list[Action]:
        if not source.claimed or env.node_id != source.claimed:
            return []  # relayed on behalf of someone else: says nothing about the sender
        if source.fingerprint and env.key.fingerprint != source.fingerprint:
            return [Drop("fingerprint_mismatch", source.link, source.fingerprint[:32])]
        if self.verified.get(source.link) == env.node_id:
            self.verified.move_to_end(source.link)
            return []
        self.verified[source.link] = env.node_id
        self._cap(self.verified)
        return [NeighbourVerified(source.link, env.node_id)]

    def _restore(self, topic: str, node_id: str, kind: str) -> list[Action]:
        """Something invalid sits on our broker: replace it with what we hold, or clear it."""
        held = self.store.records.get((node_id, KINDS[kind])) if kind in KINDS else None
        wanted = held.raw if held is not None else b""
        if held is not None and topic != record_topic(held.community, held.node_id, held.kind):
            wanted = b""
        self.counters["local_restored"] += 1
        return [Publish(topic, wanted)]

    def _on_revocation(self, source: Source, payload: bytes) -> list[Action]:
        """Parsed by the store with the record's caps and canonical checks; a node already
        revoked is a quiet duplicate."""
        try:
            revocation = self.store.offer_revocation(payload)
        except RecordRejected as exc:
            if exc.reason is RejectReason.DUPLICATE:
                return []
            reason = (
                "revocation_malformed"
                if exc.reason is RejectReason.MALFORMED
                else ("revocation_refused")
            )
            return [Drop(reason, source.link, exc.detail)]
        return self.apply_revocation(revocation, revocation.encode())

    def apply_revocation(self, revocation: Revocation, encoded: bytes) -> list[Action]:
        """A revocation the store has accepted: pass it on and clear the node's topics."""
        self.counters["revocations_applied"] += 1
        actions: list[Action] = [
            Revoked(revocation),
            Publish(revocation_topic(self.community, revocation.node_id), encoded),
        ]
        actions += [
            Publish(record_topic(self.community, revocation.node_id, kind), b"") for kind in Kind
        ]
        actions.append(Publish(_status_topic(self.community, revocation.node_id), b""))
        return actions

    # -- our own side -----------------------------------------------------------------------

    def own(self, env: Envelope) -> list[Action]:
        """One of our own records, just signed: hold it and put it on our broker."""
        self.store.merge(env)
        return [
            Stored(env),
            Publish(record_topic(env.community, env.node_id, env.kind), env.raw),
            *self._pass_on(env, None),
        ]

    def expire(self, now: float) -> list[Action]:
        return [
            Publish(record_topic(e.community, e.node_id, e.kind), b"")
            for e in self.store.expire(now)
        ]

    def outdated(self, p: Publish) -> bool:
        """A retained record publish the store has moved past since it was decided: a newer
        record of that slot arrived, or a cleared slot was filled again. The shell checks at
        send time because it awaits between actions (each QoS 1 publish, the `held()` refill):
        sending the older copy after the newer one would rewind our broker's record."""
        if not p.retain:
            return False
        parsed = parse_topic(p.topic)
        if parsed is None or parsed[2] not in KINDS:
            return False
        held = self.store.records.get((parsed[1], KINDS[parsed[2]]))
        if held is None or held.raw == p.payload:
            return False
        # every record publish carries what the store held when it was decided, and the store
        # only moves forward: other bytes there now are newer. A clear is outdated only if the
        # slot holds a record for this very topic again.
        return bool(p.payload) or record_topic(held.community, held.node_id, held.kind) == p.topic

    def held(self) -> list[Publish]:
        """Everything held, to put back on a broker that may have lost it."""
        out = [
            Publish(record_topic(e.community, e.node_id, e.kind), e.raw)
            for e in self.store.records.values()
        ]
        out += [
            Publish(revocation_topic(self.community, r.node_id), r.encode())
            for r in self.store.revoked.values()
        ]
        return out

    # -- per-source state -------------------------------------------------------------------

    def forget(self, link: str) -> None:
        """The link is gone: drop its limits and its belief (counters stay until pruned)."""
        self.buckets.pop(link, None)
        self.verified.pop(link, None)

    def _bucket(self, link: str) -> TokenBucket:
        bucket = self.buckets.get(link)
        if bucket is None:
            bucket = self.buckets[link] = TokenBucket(self.rate, self.burst)
            self._cap(self.buckets)
        else:
            self.buckets.move_to_end(link)
        return bucket

    def count(self, source: Source, reason: str) -> None:
        """Count a drop by reason, in all and per source link (capped)."""
        self.counters[reason] += 1
        if source.link == LOCAL.link:
            return
        per = self.by_source.get(source.link)
        if per is None:
            per = self.by_source[source.link] = Counter()
            self._cap(self.by_source)
        else:
            self.by_source.move_to_end(source.link)
        per[reason] += 1

    def _cap(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self.max_sources:
            table.popitem(last=False)
