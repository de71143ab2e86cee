"""docs/protocol.md's test vectors against the code: the page and meshd/ must never disagree."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from meshd.codec import RECORD_DOMAIN, decode, signature_valid, signed_bytes
from meshd.encoding import b64encode, canonical_json
from meshd.ids import SigningKey, node_id_from_public_key
from meshd.store import RecordStore
from meshd.trust import ENROLLMENT_DOMAIN, Enrollment, Trust

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- vectors:begin -->\s*```json\n(.*?)```\s*<!-- vectors:end -->", text, re.S
    )
    assert found, "docs/protocol.md lost its vectors block"
    value: dict[str, Any] = json.loads(found.group(1))
    return value


def test_seed_to_key_and_node_id(vectors: dict[str, Any]) -> None:
    for who in ("admin", "node"):
        key = SigningKey(bytes.fromhex(vectors[f"{who}_seed_hex"]))
        assert key.public.text == vectors[f"{who}_public_key"]
        want = vectors["node_id" if who == "node" else "admin_node_id"]
        assert key.node_id == want
        assert node_id_from_public_key(key.public.raw) == want


def test_certificate_signed_bytes_and_signature(vectors: dict[str, Any]) -> None:
    admin = SigningKey(bytes.fromhex(vectors["admin_seed_hex"]))
    node = SigningKey(bytes.fromhex(vectors["node_seed_hex"]))
    cert = Enrollment.issue(
        admin, community="riverside", hostname="n1", key=node.public, expires=1_900_000_000
    )
    message = ENROLLMENT_DOMAIN + canonical_json(cert.signed_part())
    assert message == vectors["cert_signed"].encode("utf-8")
    assert b64encode(cert.sig) == vectors["cert_sig"]


def test_record_bytes_signed_part_and_signature(vectors: dict[str, Any]) -> None:
    raw = vectors["record"].encode("utf-8")
    env = decode(raw)
    assert b64encode(env.sig) == vectors["record_sig"]
    assert signature_valid(env)
    without_sig = raw.replace(f',"sig":"{vectors["record_sig"]}"'.encode(), b"")
    assert signed_bytes(env) == without_sig
    node = SigningKey(bytes.fromhex(vectors["node_seed_hex"]))
    assert b64encode(node.sign(RECORD_DOMAIN + without_sig)) == vectors["record_sig"]
    admin = SigningKey(bytes.fromhex(vectors["admin_seed_hex"]))
    store = RecordStore(Trust("riverside", frozenset({admin.public})))
    assert store.offer(raw, 1_800_000_010).seq == 7
    assert [env.node_id, env.kind.value, env.seq] == vectors["record_header"]


def test_a_changed_byte_is_refused(vectors: dict[str, Any]) -> None:
    raw = vectors["record"].encode("utf-8").replace(b'"seq":7', b'"seq":8')
    assert not signature_valid(decode(raw))


def test_canonical_json(vectors: dict[str, Any]) -> None:
    assert canonical_json(vectors["canonical_input"]) == vectors["canonical_output"].encode()
