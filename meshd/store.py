"""The replicated record store: every node holds the newest record of every node and kind.

Merging is a join on a per-slot order (seq, then signature bytes), so it is commutative,
associative and idempotent: nodes that have seen the same records hold the same store, whatever
the order, duplication or replay on the way. `offer` is the only way in from the network and
runs every check before a record touches the store (verify before trust); `offer_revocation` is
the same for revocations. `triage` decides "newer or not" from a header peeked out of the raw
bytes, so the flood's many copies of a record already held cost no decode and no signature check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from meshd.codec import (
    DEFAULT_LIMITS,
    Envelope,
    Header,
    Limits,
    ParseCache,
    decode,
    decode_revocation,
    node_hostname,
    peek_header,
    signature_valid,
)
from meshd.encoding import BoundedCache, b64decode
from meshd.errors import KeyFormatError, RecordRejected, RejectReason
from meshd.ids import SIGNATURE_BYTES
from meshd.records import Kind
from meshd.trust import Enrollment, Revocation, Trust

MAX_FUTURE_S = 300  # clocks on community routers drift; more than this ahead is refused

#: The seq ceiling: a record issued at `t` may carry a seq of at most
#: `(t - SEQ_EPOCH) * SEQ_PER_SECOND`. Without one, whoever holds a node's key can publish seq
#: 2**63-1 and the real node can never be newer again until that record expires (a week).
#: With it, the real node can always overtake: a forged seq is at most the ceiling at the
#: forger's `issued_at`, which is at most MAX_FUTURE_S ahead of the receivers' clocks, so once
#: its own clock passes that point the real node may publish any seq up to the ceiling
#: (`RecordStore.seq_to_overtake` says which). Honest agents never come near it: they count
#: one per record and skip a reserved block (default 10,000) per restart, so reaching the
#: ceiling takes a million records, or a hundred restarts, per second since 2024.
SEQ_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z, before any mutualmesh record
SEQ_PER_SECOND = 1_000_000


def seq_ceiling(issued_at: int) -> int:
    """The highest seq a record issued at `issued_at` may carry (see SEQ_PER_SECOND)."""
    return max(0, issued_at - SEQ_EPOCH) * SEQ_PER_SECOND


@dataclass
class RecordStore:
    trust: Trust
    limits: Limits = DEFAULT_LIMITS
    max_future_s: int = MAX_FUTURE_S
    records: dict[tuple[str, Kind], Envelope] = field(default_factory=dict)
    revoked: dict[str, Revocation] = field(default_factory=dict)
    #: Everything refused from the wire, records and revocations, by reason.
    rejections: Counter[RejectReason] = field(default_factory=Counter)
    #: The part of `rejections` refused from the header alone, before any decode or signature.
    triaged: Counter[RejectReason] = field(default_factory=Counter)
    #: Key and certificate parses, reused across this store's records (exact-bytes keys).
    cache: ParseCache = field(default_factory=ParseCache, repr=False)
    # Certificates whose signature already verified against `trust`: each node's three records
    # share one, so this saves a third of the signature checks. Expiry is checked every time.
    _good_certs: BoundedCache[Enrollment, bool] = field(
        default_factory=lambda: BoundedCache(100_000), repr=False
    )

    # -- the way in -------------------------------------------------------------------------

    def offer(self, data: bytes, now: float) -> Envelope:
        """Decode, check and merge one record from the wire; returns it when it is new.

        Raises RecordRejected (already counted) for anything refused, including a record that is
        not newer than the one held, so the relay knows not to pass it on. The header is
        triaged first, so a flooded copy of a record already held costs no decode and no
        signature check.
        """
        if type(data) is not bytes:
            data = bytes(data)  # bytearray or memoryview from a socket
        try:
            header = peek_header(data)
            early = None if header is None else self.triage(header, now)
            if early is not None and not self._tampered_copy(early, header, data):
                self.triaged[early.reason] += 1
                raise early
            envelope = decode(data, self.limits, self.cache)
            self.check(envelope, now)
            if not self.merge(envelope):
                held = self.records[envelope.slot]
                reason = RejectReason.DUPLICATE if held.raw == envelope.raw else RejectReason.STALE
                raise RecordRejected(reason, f"seq {envelope.seq} <= held {held.seq}")
        except RecordRejected as exc:
            self.rejections[exc.reason] += 1
            raise
        return envelope

    def triage(self, header: Header, now: float) -> RecordRejected | None:
        """Why a record with this header would be refused, from the header alone, or None.

        O(1) and pure (nothing counted, nothing changed). It refuses only what the full check
        would refuse too: another community, a revoked node, a seq above the ceiling, issued
        too far ahead, expired, or not newer than the record held. When it returns None the
        record may still be refused by `offer`. An unknown node cannot be refused here: its
        enrollment travels in its records, so only the full check can tell. The reason may
        differ from the full check's (a forged copy of an old record counts as stale, not as
        a bad signature). DUPLICATE means the same seq and signature as the record held; `offer`
        also compares the bytes, since a tampered copy keeps both.
        """
        if header.community != self.trust.community:
            return RecordRejected(RejectReason.OTHER_COMMUNITY, f"community {header.community!r}")
        if header.node_id in self.revoked:
            return RecordRejected(RejectReason.REVOKED, "node key was revoked by the admins")
        problem = self._time_problem(header.seq, header.issued_at, header.expires_at, now)
        if problem is not None:
            return problem
        held = self.records.get((header.node_id, header.kind))
        if held is None or header.seq > held.seq:
            return None
        if header.seq == held.seq:
            if header.sig == held.sig_text():  # the flood's usual copy: no base64 decode
                return RecordRejected(RejectReason.DUPLICATE, f"seq {header.seq} already held")
            try:
                sig = b64decode(header.sig, SIGNATURE_BYTES, "record.sig")
            except KeyFormatError:
                return None  # let the full decode say what is wrong
            if sig > held.sig:
                return None
            if sig == held.sig:
                return RecordRejected(RejectReason.DUPLICATE, f"seq {header.seq} already held")
        return RecordRejected(RejectReason.STALE, f"seq {header.seq} <= held {held.seq}")

    def _tampered_copy(self, early: RecordRejected, header: Header | None, data: bytes) -> bool:
        """A "duplicate" whose bytes differ from the held record's: someone changed a signed
        record and kept its signature. The full check refuses it as a bad signature, and the
        agent must not take it for a harmless flooded copy (it restores its broker)."""
        if early.reason is not RejectReason.DUPLICATE or header is None:
            return False
        held = self.records.get((header.node_id, header.kind))
        return held is None or held.raw != data

    def _time_problem(
        self, seq: int, issued_at: int, expires_at: int, now: float
    ) -> RecordRejected | None:
        if issued_at > now + self.max_future_s:
            return RecordRejected(RejectReason.FUTURE, f"issued {issued_at - now:.0f} s ahead")
        if expires_at <= now:
            return RecordRejected(RejectReason.EXPIRED, f"expired at {expires_at}")
        if seq > seq_ceiling(issued_at):
            return RecordRejected(
                RejectReason.SEQ_AHEAD,
                f"seq {seq} > {seq_ceiling(issued_at)} allowed at issued_at {issued_at}",
            )
        return None

    def check(self, envelope: Envelope, now: float) -> None:
        """Every check that does not depend on what the store holds; raises RecordRejected."""
        if envelope.community != self.trust.community:
            raise RecordRejected(RejectReason.OTHER_COMMUNITY, f"community {envelope.community!r}")
        if envelope.key.node_id != envelope.node_id:
            raise RecordRejected(
                RejectReason.NODE_ID_MISMATCH, f"key belongs to {envelope.key.node_id}"
            )
        problem = self._time_problem(envelope.seq, envelope.issued_at, envelope.expires_at, now)
        if problem is not None:
            raise problem
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
            problem_text = cert.problem(self.trust, now)
            if problem_text:
                raise RecordRejected(RejectReason.UNENROLLED, problem_text)
            self._good_certs.put(cert, True)
        if envelope.kind is Kind.NODE and node_hostname(envelope) != envelope.cert.hostname:
            raise RecordRejected(RejectReason.UNENROLLED, "hostname differs from the certificate")

    def offer_revocation(self, data: bytes) -> Revocation:
        """Decode, check and apply one revocation from the wire; returns it when it is new.

        Same caps and canonical checks as records. Raises RecordRejected (already counted in
        `rejections`) for anything refused, DUPLICATE for a node already revoked.
        """
        try:
            revocation = decode_revocation(data, self.limits)
            if revocation.node_id in self.revoked:
                raise RecordRejected(RejectReason.DUPLICATE, "node already revoked")
            self.revoke(revocation)
        except RecordRejected as exc:
            self.rejections[exc.reason] += 1
            raise
        return revocation

    def seq_to_overtake(self, node_id: str) -> int:
        """The lowest seq newer than every record held of `node_id` (1 when none is held).

        An agent that sees a record of its own node it did not publish (a stolen key, or its
        state lost) reserves its seq from here to be newest again; the seq ceiling guarantees
        that this is always reachable within MAX_FUTURE_S.
        """
        held = (self.records.get((node_id, kind)) for kind in Kind)
        return max((e.seq for e in held if e is not None), default=0) + 1

    # -- the lattice ------------------------------------------------------------------------

    def merge(self, envelope: Envelope) -> bool:
        """Keep `envelope` if it is newer than its slot's record; True when the store changed."""
        held = self.records.get(envelope.slot)
        # held.order_key() >= envelope.order_key(), reading signatures only on a tie of seq
        if held is not None and (
            held.seq > envelope.seq or (held.seq == envelope.seq and held.sig >= envelope.sig)
        ):
            return False
        envelope.release_body()
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
        if revocation.community != self.trust.community:
            raise RecordRejected(
                RejectReason.OTHER_COMMUNITY, f"revocation for community {revocation.community!r}"
            )
        problem = revocation.problem(self.trust)
        if problem:
            raise RecordRejected(RejectReason.BAD_SIGNATURE, problem)
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
