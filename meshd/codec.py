"""The signed envelope around every record, and its wire codec.

Wire form: canonical JSON of kind, node_id, community, seq, issued_at, ttl_s, key, cert, body, sig.
Besides design.md's fields the envelope carries the signer's public key and its enrollment
certificate, so every record can be verified on its own, in any arrival order: a `traffic` record
that overtakes its node's `node` record is still checkable, and the merge laws stay order-free.

Decoding refuses anything that is not exactly the canonical bytes of a valid envelope, so no
byte of a signed record can change without the record being refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from meshd import validate as v
from meshd.encoding import b64decode, b64encode, canonical_json, max_depth
from meshd.errors import KeyFormatError, RecordRejected, RejectReason
from meshd.ids import SIGNATURE_BYTES, PublicKey, SigningKey
from meshd.records import Body, Kind, parse_body
from meshd.trust import Enrollment

RECORD_DOMAIN = b"mutualmesh-record-v1\0"
_ENVELOPE_FIELDS = frozenset(
    {"kind", "node_id", "community", "seq", "issued_at", "ttl_s", "key", "cert", "body", "sig"}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard caps checked before anything is parsed; they bound a hostile sender's cost."""

    max_bytes: int = 16 * 1024
    max_depth: int = 6
    max_ttl_s: int = 7 * 24 * 3600


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded record. `body` is typed; `raw` is the exact bytes that were signed and sent."""

    kind: Kind
    node_id: str
    community: str
    seq: int
    issued_at: int
    ttl_s: int
    key: PublicKey
    cert: Enrollment
    body: Body
    sig: bytes
    raw: bytes

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.ttl_s

    @property
    def slot(self) -> tuple[str, Kind]:
        """The store keeps one record per slot."""
        return (self.node_id, self.kind)

    def order_key(self) -> tuple[int, bytes]:
        """Newest wins; equal seq breaks ties by signature bytes so every node picks the same."""
        return (self.seq, self.sig)


def _unsigned(
    kind: Kind,
    node_id: str,
    community: str,
    seq: int,
    issued_at: int,
    ttl_s: int,
    key: PublicKey,
    cert: Enrollment,
    body: dict[str, Any],
) -> dict[str, Any]:
    return {
        "kind": kind.value,
        "node_id": node_id,
        "community": community,
        "seq": seq,
        "issued_at": issued_at,
        "ttl_s": ttl_s,
        "key": key.text,
        "cert": cert.to_json(),
        "body": body,
    }


def sign_record(
    key: SigningKey, cert: Enrollment, body: Body, *, seq: int, issued_at: int, ttl_s: int
) -> Envelope:
    """Build and sign a record of this node; the caller supplies seq and time (no clock here)."""
    fields = _unsigned(
        body.kind,
        key.node_id,
        cert.community,
        seq,
        issued_at,
        ttl_s,
        key.public,
        cert,
        body.to_json(),
    )
    sig = key.sign(RECORD_DOMAIN + canonical_json(fields))
    raw = canonical_json({**fields, "sig": b64encode(sig)})
    return Envelope(
        body.kind,
        key.node_id,
        cert.community,
        seq,
        issued_at,
        ttl_s,
        key.public,
        cert,
        body,
        sig,
        raw,
    )


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Parse and structurally check a record. Signatures are checked by `verify`, not here."""
    if len(data) > limits.max_bytes:
        raise RecordRejected(RejectReason.TOO_LARGE, f"{len(data)} bytes > {limits.max_bytes}")
    depth = max_depth(data)
    if depth > limits.max_depth:
        raise RecordRejected(RejectReason.TOO_LARGE, f"nesting depth {depth} > {limits.max_depth}")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RecordRejected(RejectReason.MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordRejected(RejectReason.MALFORMED, "a record must be a JSON object")
    try:
        if canonical_json(value) != data:
            raise RecordRejected(RejectReason.MALFORMED, "not in canonical form")
    except ValueError as exc:  # NaN or Infinity sneaked in
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None
    try:
        o = v.obj(value, "record", _ENVELOPE_FIELDS)
        try:
            kind = Kind(o["kind"])
        except ValueError:
            raise RecordRejected(RejectReason.UNKNOWN_KIND, f"kind {o['kind']!r}") from None
        node_id = v.node_id(o["node_id"], "record.node_id")
        community = v.string(o["community"], "record.community", max_len=64, min_len=1)
        seq = v.integer(o["seq"], "record.seq")
        issued_at = v.integer(o["issued_at"], "record.issued_at")
        ttl_s = v.integer(o["ttl_s"], "record.ttl_s", 1, limits.max_ttl_s)
        key = PublicKey.from_text(o["key"], "record.key")
        sig = b64decode(o["sig"], SIGNATURE_BYTES, "record.sig")
        cert = _parse_cert(o["cert"])
        body = parse_body(kind, o["body"])
    except v.Invalid as exc:
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None
    except KeyFormatError as exc:
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None
    return Envelope(kind, node_id, community, seq, issued_at, ttl_s, key, cert, body, sig, data)


_CERTS: dict[str, tuple[Any, Enrollment]] = {}


def _parse_cert(value: Any) -> Enrollment:
    """Parse an enrollment certificate, reusing the parse when the identical one was seen.

    A node's three records carry the same certificate; the cache is keyed by its signature and
    a hit still compares every field, so a changed certificate is always parsed afresh.
    """
    sig = value.get("sig") if isinstance(value, dict) else None
    if isinstance(sig, str):
        hit = _CERTS.get(sig)
        if hit is not None and hit[0] == value:
            return hit[1]
    cert = Enrollment.from_json(value, "record.cert")
    if len(_CERTS) >= 4096:
        _CERTS.clear()
    _CERTS[cert.to_json()["sig"]] = (value, cert)
    return cert


def signed_bytes(envelope: Envelope) -> bytes:
    """The canonical bytes without the top-level signature, cut out of `raw` without re-parsing.

    Keys are sorted, so the top-level `"sig"` is the last one; a quote inside a string is always
    escaped, so the marker cannot occur inside a value.
    """
    raw = envelope.raw
    start = raw.rfind(b',"sig":"')
    end = raw.index(b'"', start + 8)
    return raw[:start] + raw[end + 1 :]


def signature_valid(envelope: Envelope) -> bool:
    return envelope.key.verify(RECORD_DOMAIN + signed_bytes(envelope), envelope.sig)
