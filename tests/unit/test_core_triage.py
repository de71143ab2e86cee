"""The header peek and triage: "newer or not" decided before any decode or signature check."""

from __future__ import annotations

import json

import pytest

import meshd.store
from meshd.codec import Header, decode, peek_header
from meshd.encoding import canonical_json
from meshd.errors import RecordRejected, RejectReason
from meshd.records import Kind
from meshd.trust import Revocation
from tests.corekit import NOW, CommunityKit, NodeKit, links_body, traffic_body


def test_peek_reads_the_envelope_fields_of_every_kind(alpha: NodeKit) -> None:
    for body in (alpha.node_body(), links_body(alpha.node_id), traffic_body(alpha.node_id)):
        env = alpha.sign(body, issued_at=NOW - 7, ttl_s=900)
        header = peek_header(env.raw)
        assert header == Header(
            env.kind,
            env.node_id,
            env.community,
            env.seq,
            env.issued_at,
            env.ttl_s,
            json.loads(env.raw)["sig"],
        )


def test_peek_gives_up_on_anything_else(alpha: NodeKit) -> None:
    raw = alpha.sign(alpha.node_body()).raw
    fields = json.loads(raw)
    weather = canonical_json({**fields, "kind": "weather"})
    spaced = raw.replace(b'"seq":', b'"seq": ')
    for data in (b"", raw[:-1], raw + b" ", b"[" * 5000, weather, spaced, raw + b"x" * 20_000):
        assert peek_header(data) is None
    assert peek_header(bytearray(raw)) == peek_header(raw)


def test_flooded_copies_cost_no_decode(
    community: CommunityKit, alpha: NodeKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = community.store()
    new = alpha.sign(alpha.node_body(), seq=2)
    old = alpha.sign(alpha.node_body(), seq=1)
    store.offer(new.raw, NOW)
    decodes = []
    monkeypatch.setattr(meshd.store, "decode", lambda *a: decodes.append(a) or decode(*a))
    for data, reason in ((new.raw, RejectReason.DUPLICATE), (old.raw, RejectReason.STALE)):
        with pytest.raises(RecordRejected) as info:
            store.offer(data, NOW)
        assert info.value.reason is reason
        assert store.rejections[reason] == store.triaged[reason] == 1
    assert decodes == []
    newer = alpha.sign(alpha.node_body(), seq=3)
    assert store.offer(newer.raw, NOW) == newer
    assert len(decodes) == 1


def test_a_tampered_copy_of_the_held_record_is_a_bad_signature_not_a_duplicate(
    community: CommunityKit, alpha: NodeKit
) -> None:
    store = community.store()
    held = alpha.sign(alpha.node_body(), seq=4)
    store.offer(held.raw, NOW)
    tampered = held.raw.replace(b'"model":"test-model"', b'"model":"test-modex"')
    assert tampered != held.raw
    assert peek_header(tampered) == peek_header(held.raw)  # same seq, same signature
    with pytest.raises(RecordRejected) as info:
        store.offer(tampered, NOW)
    assert info.value.reason is RejectReason.BAD_SIGNATURE
    assert store.triaged == {}


def test_triage_is_pure_and_names_each_early_reason(
    community: CommunityKit, alpha: NodeKit
) -> None:
    store = community.store()
    held = alpha.sign(links_body(alpha.node_id), seq=10)
    store.offer(held.raw, NOW)
    h = peek_header(held.raw)
    assert h is not None

    def why(**change: object) -> RejectReason | None:
        fields = {
            "kind": h.kind,
            "node_id": h.node_id,
            "community": h.community,
            "seq": h.seq,
            "issued_at": h.issued_at,
            "ttl_s": h.ttl_s,
            "sig": h.sig,
        }
        fields.update(change)
        found = store.triage(Header(**fields), NOW)  # type: ignore[arg-type]
        return None if found is None else found.reason

    before = (dict(store.rejections), store.state())
    assert why() is RejectReason.DUPLICATE
    assert why(seq=9) is RejectReason.STALE
    assert why(seq=11) is None
    assert why(kind=Kind.TRAFFIC, seq=1) is None  # nothing held in that slot
    assert why(community="hilltop") is RejectReason.OTHER_COMMUNITY
    assert why(issued_at=NOW + 3600, seq=11) is RejectReason.FUTURE
    assert why(issued_at=NOW - 3600, seq=11) is RejectReason.EXPIRED
    assert why(seq=2**63 - 1) is RejectReason.SEQ_AHEAD
    assert why(seq=10, sig="A" * 86) is RejectReason.STALE  # lower tie-break
    assert why(seq=10, sig="_" * 85 + "w") is None  # higher tie-break: decode and check it
    assert (dict(store.rejections), store.state()) == before
    store.revoke(
        Revocation.issue(
            community.admins, community=community.name, key=alpha.key.public, issued_at=NOW,
            reason="stolen",
        )
    )  # fmt: skip
    assert why(seq=11) is RejectReason.REVOKED
