"""A held record keeps its bytes, not its parse: the same answers as before, for less memory."""

from __future__ import annotations

import json
import pickle

import pytest

from meshd.codec import decode, node_hostname, signature_valid
from meshd.errors import RecordRejected, RejectReason
from meshd.records import Kind, LinkEntry, LinksBody, parse_body
from tests.corekit import NOW, CommunityKit, NodeKit, links_body, traffic_body


def test_a_held_record_does_not_keep_its_parsed_body(community: CommunityKit) -> None:
    alpha, beta = community.enroll("alpha"), community.enroll("beta")
    store = community.store()
    signed = alpha.sign(links_body(beta.node_id))
    offered = store.offer(signed.raw, NOW)
    held = store.get(alpha.node_id, Kind.LINKS)
    assert held is offered
    first, second = held.body, held.body
    assert first == second == signed.body  # the body that was signed and verified
    assert first is not second  # parsed again each time: the store holds none of them


def test_signature_is_read_from_the_bytes(community: CommunityKit) -> None:
    alpha = community.enroll("alpha")
    signed = alpha.sign(alpha.node_body())
    decoded = decode(signed.raw)
    assert decoded.sig == signed.sig
    assert len(decoded.sig) == 64
    assert signature_valid(decoded)
    assert decoded.order_key() == (signed.seq, signed.sig)


def test_equal_when_the_bytes_are_equal(community: CommunityKit) -> None:
    alpha = community.enroll("alpha")
    signed = alpha.sign(traffic_body(alpha.node_id))
    decoded = decode(bytes(bytearray(signed.raw)))
    assert decoded == signed
    assert hash(decoded) == hash(signed)
    assert decoded != alpha.sign(traffic_body(alpha.node_id))  # next seq
    assert decoded != signed.raw  # an envelope is not its bytes


def test_envelopes_are_immutable(community: CommunityKit) -> None:
    env = community.enroll("alpha").sign(traffic_body("a" * 16))
    with pytest.raises(AttributeError, match="immutable"):
        env.seq = 99  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del env.raw


def test_pickled_envelope_keeps_every_field_and_its_body(community: CommunityKit) -> None:
    """The CLI ships verified envelopes back from worker processes."""
    alpha, beta = community.enroll("alpha"), community.enroll("beta")
    store = community.store()
    env = store.offer(alpha.sign(links_body(beta.node_id)).raw, NOW)
    back = pickle.loads(pickle.dumps(env))
    assert back == env
    assert back.body == env.body
    same = ("kind", "node_id", "community", "seq", "issued_at", "ttl_s", "key", "cert", "sig")
    assert all(getattr(back, name) == getattr(env, name) for name in same)


def test_a_flooded_copy_is_a_duplicate_and_a_tampered_one_is_not(
    community: CommunityKit,
) -> None:
    alpha = community.enroll("alpha")
    store = community.store()
    raw = alpha.sign(traffic_body(alpha.node_id, forwarded=1000)).raw
    store.offer(raw, NOW)
    with pytest.raises(RecordRejected) as copy:
        store.offer(raw, NOW)
    assert copy.value.reason is RejectReason.DUPLICATE
    assert store.triaged[RejectReason.DUPLICATE] == 1
    tampered = raw.replace(b'"forwarded_bytes":1000', b'"forwarded_bytes":9000')
    assert tampered != raw
    with pytest.raises(RecordRejected) as forged:
        store.offer(tampered, NOW)
    assert forged.value.reason is RejectReason.BAD_SIGNATURE
    assert store.get(alpha.node_id, Kind.TRAFFIC).raw == raw  # type: ignore[union-attr]


def test_a_held_body_is_parsed_to_the_same_values_and_types(community: CommunityKit) -> None:
    """The reader's parse skips range checks; it must still give what `from_json` gives."""
    alpha, beta = community.enroll("alpha"), community.enroll("beta")
    entry = LinkEntry(beta.node_id, "mesh0", "wifi", False, 256, None, 2, 1, None, 0, 1)
    store = community.store()
    for body in (LinksBody((entry, entry)), traffic_body(beta.node_id), alpha.node_body()):
        raw = alpha.sign(body).raw
        held = store.offer(raw, NOW)
        held.release_body()
        assert repr(held.body) == repr(parse_body(held.kind, json.loads(raw)["body"]))
        assert held.body == body


def test_node_hostname_read_from_the_bytes_is_the_bodys(community: CommunityKit) -> None:
    hostname = "alpha-1"
    node = community.enroll(hostname)
    store = community.store()
    held = store.offer(node.sign(node.node_body()).raw, NOW)
    assert node_hostname(held) == hostname == held.body.hostname  # type: ignore[union-attr]
    liar = NodeKit("beta", node.key, node.cert)  # alpha's certificate, another hostname
    refused = liar.sign(liar.node_body(), seq=5).raw
    with pytest.raises(RecordRejected, match="hostname differs"):
        store.offer(refused, NOW)
