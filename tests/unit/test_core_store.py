"""Every way the store refuses a record, each checked against its counter."""

from __future__ import annotations

import json

import pytest

from meshd.codec import RECORD_DOMAIN
from meshd.encoding import b64encode, canonical_json
from meshd.errors import RecordRejected, RejectReason
from meshd.ids import SigningKey
from meshd.records import Kind
from meshd.store import RecordStore
from meshd.trust import Revocation
from tests.corekit import NOW, CommunityKit, NodeKit, links_body


def resign(fields: dict[str, object], key: SigningKey) -> bytes:
    """Re-sign an edited record with a real key, so only the edited property is wrong."""
    unsigned = {k: v for k, v in fields.items() if k != "sig"}
    sig = key.sign(RECORD_DOMAIN + canonical_json(unsigned))
    return canonical_json({**unsigned, "sig": b64encode(sig)})


def refused(store: RecordStore, data: bytes, reason: RejectReason, now: float = NOW) -> None:
    before = store.rejections[reason]
    with pytest.raises(RecordRejected) as info:
        store.offer(data, now)
    assert info.value.reason is reason, info.value
    assert store.rejections[reason] == before + 1


def test_valid_record_is_stored(community: CommunityKit, alpha: NodeKit) -> None:
    store = community.store()
    env = store.offer(alpha.sign(alpha.node_body()).raw, NOW)
    assert store.get(alpha.node_id, Kind.NODE) == env
    assert sum(store.rejections.values()) == 0


def test_bad_signature(community: CommunityKit, alpha: NodeKit) -> None:
    fields = json.loads(alpha.sign(alpha.node_body()).raw)
    fields["seq"] = 999  # still canonical, no longer what was signed
    refused(community.store(), canonical_json(fields), RejectReason.BAD_SIGNATURE)


def test_node_id_not_matching_key(community: CommunityKit, alpha: NodeKit) -> None:
    other = community.enroll("beta")
    fields = json.loads(alpha.sign(alpha.node_body()).raw)
    fields["node_id"] = other.node_id  # claim another node's id, validly signed with our key
    refused(community.store(), resign(fields, alpha.key), RejectReason.NODE_ID_MISMATCH)


def test_stale_and_duplicate(community: CommunityKit, alpha: NodeKit) -> None:
    store = community.store()
    old = alpha.sign(alpha.node_body(), seq=1)
    new = alpha.sign(alpha.node_body(), seq=2)
    store.offer(new.raw, NOW)
    refused(store, old.raw, RejectReason.STALE)
    refused(store, new.raw, RejectReason.DUPLICATE)
    assert store.get(alpha.node_id, Kind.NODE) == new


def test_issued_in_the_future(community: CommunityKit, alpha: NodeKit) -> None:
    env = alpha.sign(alpha.node_body(), issued_at=NOW + 3600)
    refused(community.store(), env.raw, RejectReason.FUTURE)


def test_expired(community: CommunityKit, alpha: NodeKit) -> None:
    env = alpha.sign(alpha.node_body(), issued_at=NOW - 1000, ttl_s=600)
    refused(community.store(), env.raw, RejectReason.EXPIRED)


def test_too_large_and_too_deep(community: CommunityKit) -> None:
    store = community.store()
    refused(store, b'{"kind":"node","pad":"' + b"x" * 20_000 + b'"}', RejectReason.TOO_LARGE)
    refused(store, b"[" * 50 + b"]" * 50, RejectReason.TOO_LARGE)
    assert store.rejections[RejectReason.TOO_LARGE] == 2


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"kind":"node"}', b'{ "kind": "node" }', b"\xff\xfe"],
)
def test_malformed(community: CommunityKit, data: bytes) -> None:
    refused(community.store(), data, RejectReason.MALFORMED)


def test_malformed_body_field(community: CommunityKit, alpha: NodeKit) -> None:
    fields = json.loads(alpha.sign(alpha.node_body()).raw)
    fields["body"]["hostname"] = "Not A Hostname!"
    refused(community.store(), resign(fields, alpha.key), RejectReason.MALFORMED)


def test_non_canonical_spelling_of_a_valid_record(community: CommunityKit, alpha: NodeKit) -> None:
    raw = alpha.sign(alpha.node_body()).raw
    pretty = json.dumps(json.loads(raw), sort_keys=True, indent=1).encode()
    refused(community.store(), pretty, RejectReason.MALFORMED)


def test_unknown_kind(community: CommunityKit, alpha: NodeKit) -> None:
    fields = json.loads(alpha.sign(alpha.node_body()).raw)
    fields["kind"] = "weather"
    refused(community.store(), resign(fields, alpha.key), RejectReason.UNKNOWN_KIND)


def test_other_community(community: CommunityKit) -> None:
    elsewhere = CommunityKit(name="hilltop", admins=community.admins)
    stranger = elsewhere.enroll("gamma")
    refused(
        community.store(), stranger.sign(stranger.node_body()).raw, RejectReason.OTHER_COMMUNITY
    )


def test_unenrolled_keys(community: CommunityKit) -> None:
    store = community.store()
    rogue_admin = SigningKey.generate()
    rogue = community.enroll("rogue", admin=rogue_admin)
    refused(store, rogue.sign(rogue.node_body()).raw, RejectReason.UNENROLLED)
    lapsed = community.enroll("lapsed", expires=NOW - 1)
    refused(store, lapsed.sign(lapsed.node_body()).raw, RejectReason.UNENROLLED)
    # a real certificate, presented by a different key
    thief_key = SigningKey.generate()
    victim = community.enroll("victim")
    thief = NodeKit("victim", thief_key, victim.cert)
    refused(store, thief.sign(thief.node_body()).raw, RejectReason.UNENROLLED)
    # a node record whose hostname is not the one the admin enrolled
    alpha = community.enroll("alpha")
    body = alpha.node_body()
    renamed = NodeKit("mallory", alpha.key, alpha.cert)
    refused(store, renamed.sign(type(body)("mallory", "m", "s", ())).raw, RejectReason.UNENROLLED)
    assert store.rejections[RejectReason.UNENROLLED] == 4


def test_revoked_key_is_dropped_and_refused(community: CommunityKit, alpha: NodeKit) -> None:
    store = community.store()
    store.offer(alpha.sign(alpha.node_body()).raw, NOW)
    store.offer(alpha.sign(links_body(community.enroll("beta").node_id)).raw, NOW)
    revocation = Revocation.issue(
        community.admins,
        community="riverside",
        key=alpha.key.public,
        issued_at=NOW,
        reason="stolen router",
    )
    dropped = store.revoke(Revocation.from_json(json.loads(revocation.encode())))
    assert {e.kind for e in dropped} == {Kind.NODE, Kind.LINKS}
    assert store.node_ids() == []
    refused(store, alpha.sign(alpha.node_body()).raw, RejectReason.REVOKED)


def test_revocation_needs_threshold_of_distinct_admins() -> None:
    community = CommunityKit(admins=[SigningKey.generate(), SigningKey.generate()], threshold=2)
    alpha = community.enroll("alpha")
    one = Revocation.issue(
        community.admins[:1], community="riverside", key=alpha.key.public, issued_at=NOW, reason="x"
    )
    twice = one.add_signature(community.admins[0])
    both = one.add_signature(community.admins[1])
    store = community.store()
    for weak in (one, twice):
        with pytest.raises(RecordRejected):
            store.revoke(weak)
    assert store.revoked == {}
    store.revoke(both)
    assert alpha.node_id in store.revoked


def test_expire_drops_only_records_past_their_ttl(community: CommunityKit, alpha: NodeKit) -> None:
    store = community.store()
    short = alpha.sign(alpha.node_body(), ttl_s=60)
    long = alpha.sign(links_body(alpha.node_id), ttl_s=600)
    store.offer(short.raw, NOW)
    store.offer(long.raw, NOW)
    assert store.expire(NOW + 59) == []
    assert store.expire(NOW + 60) == [short]
    assert list(store) == [long]
