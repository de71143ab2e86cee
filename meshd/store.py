"""The replicated record store: every node holds the newest record of every node and kind.

Merging is a join on a per-slot order (seq, then signature bytes), so it is commutative,
associative and idempotent: nodes that have seen the same records hold the same store, whatever
the order, duplication or replay on the way. `offer` is the only way in from the network and
runs every check before a record touches the store (verify before trust).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from meshd.codec import DEFAULT_LIMITS, Envelope, Limits, decode, signature_valid
from meshd.errors import RecordRejected, RejectReason
from meshd.records import Kind
from meshd.trust import Enrollment, Revocation, Trust

MAX_FUTURE_S = 300  # clocks on community routers drift; more than this ahead is refused


@dataclass
class RecordStore:
    trust: Trust
    limits: Limits = DEFAULT_LIMITS
    max_future_s: int = MAX_FUTURE_S
    records: dict[tuple[str, Kind], Envelope] = field(default_factory=dict)
    revoked: dict[str, Revocation] = field(default_factory=dict)
    rejections: Counter[RejectReason] = field(default_factory=Counter)
    # Certificates whose signature already verified: each node's three records share one, so
    # this saves a third of the signature checks. Expiry is still checked on every record.
    _good_certs: set[Enrollment] = field(default_factory=set, repr=False)

    # -- the way in -------------------------------------------------------------------------

    def offer(self, data: bytes, now: float) -> Envelope:
        """Decode, check and merge one record from the wire; returns it when it is new.

        Raises RecordRejected (already counted) for anything refused, including a record that is
        not newer than the one held, so the relay knows not to pass it on.
        """
        try:
            envelope = decode(data, self.limits)
            self.check(envelope, now)
            if not self.merge(envelope):
                held = self.records[envelope.slot]
                reason = RejectReason.DUPLICATE if held.raw == envelope.raw else RejectReason.STALE
                raise RecordRejected(reason, f"seq {envelope.seq} <= held {held.seq}")
        except RecordRejected as exc:
            self.rejections[exc.reason] += 1
            raise
        return envelope

    def check(self, envelope: Envelope, now: float) -> None:
        """Every check that does not depend on what the store holds; raises RecordRejected."""
        if envelope.community != self.trust.community:
            raise RecordRejected(RejectReason.OTHER_COMMUNITY, f"community {envelope.community!r}")
        if envelope.key.node_id != envelope.node_id:
            raise RecordRejected(
                RejectReason.NODE_ID_MISMATCH, f"key belongs to {envelope.key.node_id}"
            )
        if envelope.issued_at > now + self.max_future_s:
            raise RecordRejected(
                RejectReason.FUTURE, f"issued {envelope.issued_at - now:.0f} s ahead"
            )
        if envelope.expires_at <= now:
            raise RecordRejected(RejectReason.EXPIRED, f"expired at {envelope.expires_at}")
        if not signature_valid(envelope):
            raise RecordRejected(RejectReason.BAD_SIGNATURE, "record signature does not verify")
        if envelope.node_id in self.revoked:
            raise RecordRejected(RejectReason.REVOKED, "node key was revoked by the admins")
        if envelope.cert.key != envelope.key:
            raise RecordRejected(RejectReason.UNENROLLED, "certificate is for another key")
        cert = envelope.cert
        if cert in self._good_certs:
            if now > cert.expires:
                raise RecordRejected(
                    RejectReason.UNENROLLED, f"certificate expired at {cert.expires}"
                )
        else:
            problem = cert.problem(self.trust, now)
            if problem:
                raise RecordRejected(RejectReason.UNENROLLED, problem)
            if len(self._good_certs) > 100_000:  # bound memory against certificate spam
                self._good_certs.clear()
            self._good_certs.add(cert)
        body = envelope.body
        if envelope.kind is Kind.NODE and getattr(body, "hostname", None) != envelope.cert.hostname:
            raise RecordRejected(RejectReason.UNENROLLED, "hostname differs from the certificate")

    # -- the lattice ------------------------------------------------------------------------

    def merge(self, envelope: Envelope) -> bool:
        """Keep `envelope` if it is newer than its slot's record; True when the store changed."""
        held = self.records.get(envelope.slot)
        if held is not None and held.order_key() >= envelope.order_key():
            return False
        self.records[envelope.slot] = envelope
        return True

    def merge_all(self, envelopes: Iterable[Envelope]) -> int:
        return sum(self.merge(e) for e in envelopes)

    def expire(self, now: float) -> list[Envelope]:
        """Drop and return the records whose lifetime is over."""
        gone = [e for e in self.records.values() if e.expires_at <= now]
        for envelope in gone:
            del self.records[envelope.slot]
        return gone

    def revoke(self, revocation: Revocation) -> list[Envelope]:
        """Apply a valid revocation: drop the node's records now and refuse them from now on."""
        problem = revocation.problem(self.trust)
        if problem:
            raise RecordRejected(RejectReason.MALFORMED, problem)
        self.revoked[revocation.node_id] = revocation
        dropped = [e for e in self.records.values() if e.node_id == revocation.node_id]
        for envelope in dropped:
            del self.records[envelope.slot]
        return dropped

    # -- reading ----------------------------------------------------------------------------

    def get(self, node_id: str, kind: Kind) -> Envelope | None:
        return self.records.get((node_id, kind))

    def node_ids(self) -> list[str]:
        return sorted({node_id for node_id, _ in self.records})

    def __iter__(self) -> Iterator[Envelope]:
        return iter(sorted(self.records.values(), key=lambda e: (e.node_id, e.kind.value)))

    def __len__(self) -> int:
        return len(self.records)

    def state(self) -> dict[tuple[str, Kind], bytes]:
        """What the store holds, as comparable bytes; equal states mean equal stores."""
        return {slot: envelope.raw for slot, envelope in self.records.items()}
