"""Table tests of the sans-IO relay core: one message in, actions out, no broker."""

from __future__ import annotations

import json

import pytest

from meshd.records import Kind
from meshd.topics import record_topic, revocation_topic, status_topic
from meshd.trust import Revocation
from node_agent.relay_core import (
    LOCAL,
    Drop,
    NeighbourGone,
    NeighbourVerified,
    Publish,
    RelayCore,
    Revoked,
    Source,
    Stored,
)
from tests.corekit import NOW, CommunityKit, NodeKit

KIT = CommunityKit()
A = KIT.enroll("a")  # the node the core runs on
B = KIT.enroll("b")  # a neighbour
C = KIT.enroll("c")  # a node further away
FROM_B = Source("fe80::b%mesh0", B.node_id, B.key.public.fingerprint)


def core(**kw: float) -> RelayCore:
    return RelayCore(KIT.store(), A.node_id, **kw)  # type: ignore[arg-type]


def topic(node: NodeKit, kind: Kind = Kind.NODE) -> str:
    return record_topic(KIT.name, node.node_id, kind)


def kinds(actions: list[object]) -> list[str]:
    return [type(a).__name__ for a in actions]


def drops(actions: list[object]) -> list[str]:
    return [a.reason for a in actions if isinstance(a, Drop)]


def test_a_new_record_is_stored_and_published_on_our_broker():
    c = core()
    env = C.sign(C.node_body(), seq=5)
    out = c.on_message(FROM_B, topic(C), env.raw, NOW)
    assert kinds(out) == ["Stored", "Publish"]
    assert out[1] == Publish(topic(C), env.raw, True)
    assert c.store.get(C.node_id, Kind.NODE) == env
    assert c.counters["relayed"] == 1


@pytest.mark.parametrize(
    ("second_seq", "expected", "reason"),
    [(6, ["Stored", "Publish"], None), (4, ["Drop"], "stale"), (5, [], None)],
    ids=["newer", "older", "equal"],
)
def test_seq_order_decides(second_seq: int, expected: list[str], reason: str | None):
    c = core()
    first = C.sign(C.node_body(), seq=5)
    c.on_message(FROM_B, topic(C), first.raw, NOW)
    second = first if second_seq == 5 else C.sign(C.node_body(), seq=second_seq)
    out = c.on_message(FROM_B, topic(C), second.raw, NOW)
    assert kinds(out) == expected
    assert drops(out) == ([reason] if reason else [])
    held = c.store.get(C.node_id, Kind.NODE)
    assert held is not None
    assert held.seq == max(5, second_seq)


def test_a_valid_record_on_the_wrong_topic_from_our_broker_is_moved_where_it_belongs():
    c = core()
    env = C.sign(C.node_body(), seq=1)
    wrong = topic(B)
    out = c.on_message(LOCAL, wrong, env.raw, NOW)
    assert Publish(wrong, b"") in out  # nothing of B's held: the wrong topic is cleared
    assert Publish(topic(C), env.raw) in out
    assert c.counters["local_restored"] == 1


def test_garbage_on_our_broker_is_replaced_by_the_record_held():
    c = core()
    good = C.sign(C.node_body(), seq=3)
    c.on_message(FROM_B, topic(C), good.raw, NOW)
    out = c.on_message(LOCAL, topic(C), b'{"not": "a record"}', NOW)
    assert drops(out) == ["malformed"]
    assert Publish(topic(C), good.raw) in out


@pytest.mark.parametrize(
    ("topic_text", "reason"),
    [
        ("mesh/v1/elsewhere/aaaaaaaaaaaaaaaa/node", "other_community_topic"),
        ("something/else", "foreign_topic"),
        ("mesh/v1/riverside/not-an-id/node", "foreign_topic"),
    ],
)
def test_foreign_topics_are_counted_and_dropped(topic_text: str, reason: str):
    c = core()
    out = c.on_message(FROM_B, topic_text, C.sign(C.node_body()).raw, NOW)
    assert drops(out) == [reason]
    assert c.by_source[FROM_B.link][reason] == 1


def test_a_record_of_another_community_is_refused():
    other = CommunityKit(name="elsewhere").enroll("x")
    c = core()
    env = other.sign(other.node_body())
    out = c.on_message(FROM_B, record_topic(KIT.name, other.node_id, Kind.NODE), env.raw, NOW)
    assert drops(out) == ["other_community"]
    assert len(c.store) == 0


def test_our_own_record_echoed_back_is_a_quiet_duplicate():
    c = core()
    mine = A.sign(A.node_body(), seq=9)
    assert kinds(c.own(mine)) == ["Stored", "Publish"]
    assert c.on_message(FROM_B, topic(A), mine.raw, NOW) == []


def test_oversize_is_dropped_before_decoding():
    c = core()
    big = b"{" + b" " * (c.store.limits.max_bytes + 1)
    out = c.on_message(FROM_B, topic(C), big, NOW)
    assert drops(out) == ["too_large"]


def test_rate_limit_is_per_source_link_not_per_claimed_id():
    c = core(rate=1.0, burst=3.0)
    env = C.sign(C.node_body(), seq=1)
    sources = [Source("10.0.0.9%mesh0", f"{i:c}" * 16) for i in range(ord("a"), ord("a") + 5)]
    results = [drops(c.on_message(s, topic(C), env.raw, NOW)) for s in sources]
    assert results.count(["rate_limited"]) == 2  # 5 claimed ids, one address: one bucket
    assert drops(c.on_message(FROM_B, topic(C), env.raw, NOW)) == []  # another link: its own


def test_malformed_records_never_raise():
    c = core()
    for payload in [b"[" * 5000, b"\xff\xfe", b'{"v":1}', b"null", b'"\\ud800"']:
        out = c.on_message(FROM_B, topic(C), payload, NOW)
        assert len(drops(out)) == 1, payload[:20]
    assert c.counters["internal_error"] == 0


def test_a_neighbour_is_believed_only_with_its_own_verified_record_over_its_link():
    c = core()
    relayed = C.sign(C.node_body(), seq=1)
    assert not [
        a
        for a in c.on_message(FROM_B, topic(C), relayed.raw, NOW)
        if isinstance(a, NeighbourVerified)
    ]
    own = B.sign(B.node_body(), seq=1)
    out = c.on_message(FROM_B, topic(B), own.raw, NOW)
    assert NeighbourVerified(FROM_B.link, B.node_id) in out
    again = c.on_message(FROM_B, topic(B), own.raw, NOW)  # the duplicate: nothing new
    assert again == []
    liar = Source("fe80::6%mesh0", B.node_id, "0" * 16)  # B's id, someone else's fingerprint
    assert drops(c.on_message(liar, topic(B), own.raw, NOW)) == ["fingerprint_mismatch"]


def test_offline_status_counts_only_from_the_verified_neighbour_itself():
    c = core()
    offline = status_topic(KIT.name, B.node_id)
    assert c.on_message(FROM_B, offline, b"offline", NOW) == []  # not verified yet
    c.on_message(FROM_B, topic(B), B.sign(B.node_body(), seq=1).raw, NOW)
    assert c.on_message(FROM_B, offline, b"offline", NOW) == [NeighbourGone(FROM_B.link, B.node_id)]
    other = Source("fe80::c%mesh0", C.node_id)
    assert c.on_message(other, offline, b"offline", NOW) == []  # C cannot say B is gone


def revocation_bytes(reason: str = "stolen", admins: int = 1) -> bytes:
    rev = Revocation.issue(
        KIT.admins[:admins], community=KIT.name, key=C.key.public, issued_at=NOW, reason=reason
    )
    return rev.encode()


def test_a_valid_revocation_clears_the_node_and_is_passed_on():
    c = core()
    c.on_message(FROM_B, topic(C), C.sign(C.node_body(), seq=1).raw, NOW)
    data = revocation_bytes()
    out = c.on_message(FROM_B, revocation_topic(KIT.name, C.node_id), data, NOW)
    assert isinstance(out[0], Revoked)
    assert Publish(revocation_topic(KIT.name, C.node_id), data) in out
    assert Publish(topic(C), b"") in out
    assert c.store.get(C.node_id, Kind.NODE) is None
    later = C.sign(C.node_body(), seq=2)
    assert drops(c.on_message(FROM_B, topic(C), later.raw, NOW)) == ["revoked"]
    assert c.on_message(FROM_B, revocation_topic(KIT.name, C.node_id), data, NOW) == []


def test_an_unsigned_revocation_is_refused():
    c = core()
    data = revocation_bytes(admins=0)
    out = c.on_message(FROM_B, revocation_topic(KIT.name, C.node_id), data, NOW)
    assert drops(out) == ["revocation_refused"]


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 2048,  # RecursionError in json.loads
        json.dumps(json.loads(revocation_bytes())).replace("stolen", "\\ud800").encode(),
        b"\xff" * 10,
        b"{}",
    ],
    ids=["deep", "lone-surrogate", "not-utf8", "empty-object"],
)
def test_hostile_revocations_are_counted_never_raised(payload: bytes):
    c = core()
    out = c.on_message(FROM_B, revocation_topic(KIT.name, C.node_id), payload, NOW)
    assert drops(out) in (["revocation_malformed"], ["revocation_refused"])
    assert c.counters["internal_error"] == 0


def test_anything_the_core_raises_becomes_a_counted_drop():
    c = core()

    def broken(data: bytes, now: float) -> None:
        raise RuntimeError("a bug in the store")

    c.store.offer = broken  # type: ignore[method-assign]
    out = c.on_message(FROM_B, topic(C), C.sign(C.node_body()).raw, NOW)
    assert drops(out) == ["internal_error"]
    drop = out[0]
    assert isinstance(drop, Drop)
    assert isinstance(drop.error, RuntimeError)


def test_per_source_state_is_capped():
    c = core()
    env = C.sign(C.node_body(), seq=1)
    for i in range(3000):
        c.on_message(Source(f"10.9.{i // 250}.{i % 250}%mesh0", f"{i:016d}"), "x", env.raw, NOW)
    assert len(c.buckets) <= c.max_sources
    assert len(c.by_source) <= c.max_sources
    assert c.counters["foreign_topic"] == 3000


def test_expire_and_held():
    c = core()
    env = C.sign(C.node_body(), seq=1, ttl_s=60)
    c.on_message(FROM_B, topic(C), env.raw, NOW)
    assert c.held() == [Publish(topic(C), env.raw)]
    assert c.expire(NOW + 61) == [Publish(topic(C), b"")]
    assert c.held() == []
    assert isinstance(c.own(A.sign(A.node_body()))[0], Stored)


def test_a_publish_decided_before_a_newer_record_arrived_is_outdated_when_sent():
    """The shell awaits between actions (the refill after a reconnect lists everything held,
    then publishes it one QoS 1 round trip at a time): a record replaced meanwhile must not go
    out after its successor (the boot-storm rewind of a loaded CI run)."""
    c = core()
    old, new = C.sign(C.node_body(), seq=21, ttl_s=60), C.sign(C.node_body(), seq=10001)
    c.on_message(FROM_B, topic(C), old.raw, NOW)
    refill = c.held()
    assert [c.outdated(p) for p in refill] == [False]
    c.on_message(FROM_B, topic(C), new.raw, NOW)
    assert [c.outdated(p) for p in refill] == [True]
    assert not c.outdated(Publish(topic(C), new.raw))
    # a clear decided when the record expired is outdated once the slot holds a record again
    later = NOW + 10**6
    clear = c.expire(later)
    assert [c.outdated(p) for p in clear] == [False]
    c.on_message(FROM_B, topic(C), C.sign(C.node_body(), seq=10002, issued_at=later).raw, later)
    assert [c.outdated(p) for p in clear] == [True]
    # not records: statuses, revocations and push traffic are sent as decided
    assert not c.outdated(Publish(status_topic(KIT.name, C.node_id), b""))
    assert not c.outdated(Publish(topic(C), old.raw, retain=False))


def tampered(raw: bytes) -> bytes:
    """The same seq and signature, one byte of the signed content changed."""
    at = raw.index(b'"model":"test-model"') + 9
    return raw[:at] + b"X" + raw[at + 1 :]


def test_a_tampered_copy_of_a_held_record_on_our_broker_is_replaced_by_the_good_one():
    c = core()
    good = B.sign(B.node_body(), seq=4)
    c.on_message(FROM_B, topic(B), good.raw, NOW)
    out = c.on_message(LOCAL, topic(B), tampered(good.raw), NOW)
    assert Publish(topic(B), good.raw) in out  # healed, whatever reason the store gave
    assert c.store.get(B.node_id, Kind.NODE) == good


def test_a_tampered_copy_from_a_neighbour_proves_nothing():
    c = core()
    good = B.sign(B.node_body(), seq=4)
    c.on_message(Source("fe80::9%mesh0", C.node_id), topic(B), good.raw, NOW)  # via C
    out = c.on_message(FROM_B, topic(B), tampered(good.raw), NOW)
    assert not [a for a in out if isinstance(a, NeighbourVerified)]
    assert not [a for a in out if isinstance(a, Publish)]
