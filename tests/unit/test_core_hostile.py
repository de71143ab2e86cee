"""Hostile bytes on every decode path of the core: refused with a typed, counted reason, never
another exception (issue 9: one revocation used to kill meshd)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshd import validate as v
from meshd.codec import (
    RECORD_DOMAIN,
    decode,
    decode_certificate,
    decode_revocation,
)
from meshd.encoding import b64encode, canonical_json
from meshd.errors import RecordRejected, RejectReason
from meshd.ids import SigningKey
from meshd.store import RecordStore
from meshd.trust import Revocation, community_message
from tests.corekit import NOW, CommunityKit, NodeKit


def revocation_fields(community: CommunityKit, node: NodeKit, reason: str) -> dict[str, Any]:
    good = Revocation.issue(
        community.admins, community=community.name, key=node.key.public, issued_at=NOW, reason="x"
    )
    fields = good.to_json()
    fields["reason"] = reason
    return fields


def resign(fields: dict[str, Any], key: SigningKey) -> bytes:
    unsigned = {k: x for k, x in fields.items() if k != "sig"}
    sig = key.sign(RECORD_DOMAIN + canonical_json(unsigned))
    return canonical_json({**unsigned, "sig": b64encode(sig)})


def test_lone_surrogate_in_a_revocation_reason_is_a_counted_rejection(
    community: CommunityKit, alpha: NodeKit
) -> None:
    # what issue 9 sent: json.dumps escapes the surrogate, so the bytes are plain ASCII
    payload = json.dumps(revocation_fields(community, alpha, "\ud800")).encode()
    with pytest.raises(v.Invalid, match="surrogate"):
        Revocation.from_json(json.loads(payload))  # it used to pass, then revoke() raised
    store = community.store()
    with pytest.raises(RecordRejected) as info:
        store.offer_revocation(payload)
    assert info.value.reason is RejectReason.MALFORMED
    assert store.rejections[RejectReason.MALFORMED] == 1
    assert store.revoked == {}


@pytest.mark.parametrize("payload", [b"[" * 2000, b"{" * 2000, b'{"a":' * 2000])
def test_deep_nesting_is_refused_before_the_parser_recurses(
    community: CommunityKit, payload: bytes
) -> None:
    store = community.store()
    with pytest.raises(RecordRejected) as info:
        store.offer_revocation(payload)
    assert info.value.reason is RejectReason.TOO_LARGE
    assert store.rejections[RejectReason.TOO_LARGE] == 1


def test_a_valid_revocation_from_the_wire_applies_once(
    community: CommunityKit, alpha: NodeKit
) -> None:
    store = community.store()
    store.offer(alpha.sign(alpha.node_body()).raw, NOW)
    wire = Revocation.issue(
        community.admins, community=community.name, key=alpha.key.public, issued_at=NOW, reason="r"
    ).encode()
    assert store.offer_revocation(wire).node_id == alpha.node_id
    assert len(store) == 0
    with pytest.raises(RecordRejected) as info:
        store.offer_revocation(wire)
    assert info.value.reason is RejectReason.DUPLICATE


@pytest.mark.parametrize(
    "junk",
    [{"admin": "\ud800", "sig": "x"}, {"admin": 1, "sig": "x"}, {"admin": "a"}, "sig", None],
)
def test_revocation_signature_entries_must_be_admin_and_sig_strings(
    community: CommunityKit, alpha: NodeKit, junk: object
) -> None:
    """A valid revocation plus one junk entry: refused, since passing it on re-encodes it."""
    fields = revocation_fields(community, alpha, "x")
    fields["sigs"].append(junk)
    with pytest.raises(v.Invalid, match=r"sigs\[1\]"):
        Revocation.from_json(fields)


def test_revocation_with_too_few_signatures_is_a_bad_signature(
    community: CommunityKit, alpha: NodeKit
) -> None:
    fields = revocation_fields(community, alpha, "x")
    fields["sigs"] = []
    store = community.store()
    with pytest.raises(RecordRejected) as info:
        store.offer_revocation(canonical_json(fields))
    assert info.value.reason is RejectReason.BAD_SIGNATURE


# Hostile spellings of otherwise plausible JSON; each decoder must refuse every one with a
# typed reason. `{}` is where a value goes.
SPELLINGS = [
    b"",
    b"\xff\xfe\x00",
    b"null",
    b"[]",
    b'"\\ud800"',
    b'{"a":"\\udfff"}',
    b'{"a":"\xed\xa0\x80"}',  # a surrogate spelled in (invalid) UTF-8
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":1e999}',
    b'{"a":' + b"9" * 5000 + b"}",
    b'{"a":1,"a":1}',
    b'{"a": 1}',
    b'{"a":"\\u0041"}',
    b'{"a":1.0}',
    b'{"a":-0}',
    b'{"a":01}',
    b'{"a":' * 100 + b"1" + b"}" * 100,
    b'["\\\\"' + b"[" * 3000 + b"]",
    b'"' + b"[" * 3000,
]


@pytest.mark.parametrize("data", SPELLINGS)
@pytest.mark.parametrize("decoder", [decode, decode_revocation, decode_certificate])
def test_every_decoder_refuses_hostile_spellings_with_a_reason(decoder: Any, data: bytes) -> None:
    with pytest.raises(RecordRejected) as info:
        decoder(data)
    assert info.value.reason in (RejectReason.MALFORMED, RejectReason.TOO_LARGE)


def test_decoders_take_bytearray_and_memoryview(alpha: NodeKit) -> None:
    raw = alpha.sign(alpha.node_body()).raw
    assert decode(bytearray(raw)).raw == raw
    assert decode(memoryview(raw)).raw == raw


@pytest.mark.parametrize(
    "value", [{"name": "\ud800"}, {"name": float("nan")}, {1: "x", "a": "y"}, {"d": object()}]
)
def test_community_message_raises_only_value_error(value: dict[Any, Any]) -> None:
    with pytest.raises(ValueError, match=r"canonical|surrogate|NaN|Out of range"):
        community_message(value)


# -- the caches belong to the store, keyed by exact bytes ------------------------------------


@pytest.mark.parametrize(
    ("field", "spelling"), [("v", True), ("v", 1.0), ("expires", "float"), ("expires", True)]
)
def test_warm_and_cold_verifiers_agree_on_equal_but_different_json(
    community: CommunityKit, alpha: NodeKit, field: str, spelling: object
) -> None:
    good = alpha.sign(alpha.node_body(), seq=1)
    fields = json.loads(good.raw)
    fields["seq"] = 2
    cert = fields["cert"]
    cert[field] = float(cert[field]) if spelling == "float" else spelling
    crafted = resign(fields, alpha.key)  # the certificate's own signature still verifies

    def outcome(store: RecordStore) -> str:
        try:
            return store.offer(crafted, NOW).raw.decode()
        except RecordRejected as exc:
            return exc.reason.value

    cold = community.store()
    warm = community.store()
    warm.offer(good.raw, NOW)
    assert outcome(cold) == outcome(warm) == RejectReason.MALFORMED.value


def test_stores_share_no_parse_state(community: CommunityKit, alpha: NodeKit) -> None:
    first, second = community.store(), community.store()
    first.offer(alpha.sign(alpha.node_body()).raw, NOW)
    assert (len(first.cache.certs), len(first.cache.keys)) == (1, 2)  # node and admin key
    assert (len(second.cache.certs), len(second.cache.keys)) == (0, 0)
