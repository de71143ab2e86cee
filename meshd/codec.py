"""The signed envelope around every record, and its wire codec.

Wire form: canonical JSON of kind, node_id, community, seq, issued_at, ttl_s, key, cert, body, sig.
Besides design.md's fields the envelope carries the signer's public key and its enrollment
certificate, so every record can be verified on its own, in any arrival order: a `traffic` record
that overtakes its node's `node` record is still checkable, and the merge laws stay order-free.

Decoding refuses anything that is not exactly the canonical bytes of a valid envelope, so no
byte of a signed record can change without the record being refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from meshd import validate as v
from meshd.encoding import BoundedCache, b64decode, b64encode, canonical_json, load_canonical
from meshd.errors import KeyFormatError, RecordRejected, RejectReason
from meshd.ids import SIGNATURE_BYTES, KeyCache, PublicKey, SigningKey
from meshd.records import Body, Kind, parse_body, parse_verified_body
from meshd.trust import Enrollment, Revocation

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


class Envelope:
    """A verified or self-signed record: `raw` is the exact bytes that were signed and sent.

    Memory is what a router spends on every node's records, so an envelope keeps the header
    fields and `raw`; the signature is read out of `raw` when asked, and the typed `body`
    (checked by `decode`, and then dropped; a signed one is dropped once a store holds it,
    `release_body`) is parsed again from `raw` on each access (callers that read a
    body often keep the object they got). `raw` passed every check before the store took it
    (canonical, valid body, good signature), so a re-parsed body is the one that was verified.
    Key and certificate objects are shared by a node's records (`ParseCache`). Immutable;
    equal when `raw` is equal, since the bytes determine every field.
    """

    __slots__ = (
        "_body",
        "cert",
        "community",
        "issued_at",
        "key",
        "kind",
        "node_id",
        "raw",
        "seq",
        "ttl_s",
    )
    kind: Kind
    node_id: str
    community: str
    seq: int
    issued_at: int
    ttl_s: int
    key: PublicKey
    cert: Enrollment
    raw: bytes
    _body: Body | None

    def __init__(
        self,
        kind: Kind,
        node_id: str,
        community: str,
        seq: int,
        issued_at: int,
        ttl_s: int,
        key: PublicKey,
        cert: Enrollment,
        body: Body | None,
        raw: bytes,
    ) -> None:
        """`body` None means "parse it from `raw` when asked" (raw must be a valid record)."""
        put = object.__setattr__
        put(self, "kind", kind)
        put(self, "node_id", sys.intern(node_id))  # shared with the store's slot keys
        put(self, "community", sys.intern(community))
        put(self, "seq", seq)
        put(self, "issued_at", issued_at)
        put(self, "ttl_s", ttl_s)
        put(self, "key", key)
        put(self, "cert", cert)
        put(self, "raw", raw)
        put(self, "_body", body)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Envelope is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Envelope is immutable: cannot delete {name!r}")

    @property
    def body(self) -> Body:
        """The typed body: the one held, or parsed again from the verified `raw`."""
        held = self._body
        if held is not None:
            return held
        return parse_verified_body(self.kind, json.loads(self.raw)["body"])

    def release_body(self) -> None:
        """Stop holding the parsed body (the store calls this when it takes the envelope)."""
        object.__setattr__(self, "_body", None)

    @property
    def sig(self) -> bytes:
        """The signature, read from `raw` when asked (it checked out before it was kept)."""
        # decode checked its one canonical spelling already
        return base64.urlsafe_b64decode(self.sig_text() + "==")

    def sig_text(self) -> str:
        """The signature as sent (base64); see `signed_bytes` for why the marker is unique."""
        raw = self.raw
        start = raw.rfind(b',"sig":"') + 8
        return raw[start : raw.index(b'"', start)].decode("ascii")

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return (
            f"Envelope(kind={self.kind.value!r}, node_id={self.node_id!r}, "
            f"community={self.community!r}, seq={self.seq}, issued_at={self.issued_at}, "
            f"ttl_s={self.ttl_s}, {len(self.raw)} bytes)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled without the body (it is parsed from `raw` on the other side if needed)."""
        head = (self.kind, self.node_id, self.community, self.seq, self.issued_at, self.ttl_s)
        return (Envelope, (*head, self.key, self.cert, None, self.raw))


_Head = tuple[Kind, str, str, int, int, int, PublicKey, Enrollment]  # Envelope's leading fields


def _unsigned(head: _Head, body: dict[str, Any]) -> dict[str, Any]:
    kind, node_id, community, seq, issued_at, ttl_s, key, cert = head
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
    head: _Head = (body.kind, key.node_id, cert.community, seq, issued_at, ttl_s, key.public, cert)
    fields = _unsigned(head, body.to_json())
    sig = key.sign(RECORD_DOMAIN + canonical_json(fields))
    raw = canonical_json({**fields, "sig": b64encode(sig)})
    return Envelope(*head, body, raw)


@dataclass(slots=True)
class ParseCache:
    """Parses worth reusing across the records one store sees, owned by that store.

    Keyed by exact text and bytes, so a warm cache answers exactly as a cold one would: a
    certificate spelled `"v":true` is a different key from `"v":1`, and is refused as usual.
    """

    keys: KeyCache = field(default_factory=lambda: BoundedCache(4096))
    certs: BoundedCache[bytes, Enrollment] = field(default_factory=lambda: BoundedCache(4096))


def decode(
    data: bytes, limits: Limits = DEFAULT_LIMITS, cache: ParseCache | None = None
) -> Envelope:
    """Parse and structurally check a record. Signatures are checked by `verify`, not here.

    Raises RecordRejected and nothing else, whatever the bytes.
    """
    value = load_canonical(data, limits.max_bytes, limits.max_depth, "record")
    if not isinstance(value, dict):
        raise RecordRejected(RejectReason.MALFORMED, "a record must be a JSON object")
    keys = cache.keys if cache is not None else None
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
        key = PublicKey.from_text(o["key"], "record.key", keys)
        b64decode(o["sig"], SIGNATURE_BYTES, "record.sig")  # refuse it now, read it later
        cert = _parse_cert(o["cert"], cache)
        parse_body(kind, o["body"])
    except v.Invalid as exc:
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None
    except KeyFormatError as exc:
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None
    # the body was checked; a reader parses it again from `raw`, so no envelope holds a parse
    return Envelope(kind, node_id, community, seq, issued_at, ttl_s, key, cert, None, bytes(data))


def _parse_cert(value: Any, cache: ParseCache | None) -> Enrollment:
    """A node's three records carry the same certificate: parse it once per store.

    The key is the certificate's canonical bytes (the record was canonical, so they re-encode
    exactly) or their digest, never the parsed value, whose `==` would let `true`, `1` and
    `1.0` meet.
    """
    if cache is None or not isinstance(value, dict):
        return Enrollment.from_json(value, "record.cert")
    # SHA-256 of the exact bytes is as exact a key as the bytes, and a fifth of their size
    exact = hashlib.sha256(canonical_json(value)).digest()
    hit = cache.certs.get(exact)
    if hit is None:
        hit = Enrollment.from_json(value, "record.cert", cache.keys)
        cache.certs.put(exact, hit)
    return hit


def decode_revocation(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Revocation:
    """Parse a revocation from the wire with the record's caps and canonical checks.

    Signatures are checked when it is applied (`RecordStore.offer_revocation`). Raises
    RecordRejected and nothing else.
    """
    value = load_canonical(data, limits.max_bytes, limits.max_depth, "revocation")
    try:
        return Revocation.from_json(value)
    except (v.Invalid, KeyFormatError) as exc:
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None


def decode_certificate(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Enrollment:
    """Parse an enrollment certificate on its own (as in a bundle or a certificate file)."""
    value = load_canonical(data, limits.max_bytes, limits.max_depth, "certificate")
    try:
        return Enrollment.from_json(value)
    except (v.Invalid, KeyFormatError) as exc:
        raise RecordRejected(RejectReason.MALFORMED, str(exc)) from None


@dataclass(frozen=True, slots=True)
class Header:
    """The envelope fields needed to decide "newer or not", read without parsing the record."""

    kind: Kind
    node_id: str
    community: str
    seq: int
    issued_at: int
    ttl_s: int
    sig: str  # base64 text: decoded only to break a tie of equal seq

    @property
    def expires_at(self) -> int:
        return self.issued_at + self.ttl_s


# Keys are sorted, so a canonical record ends with these scalar fields after `body` and
# `cert`. The pattern holds no backslash and no bracket, and every quote in it follows a
# character that cannot end an escape, so when it matches at the very end of bytes that are a
# valid record, these are the top-level fields themselves: a record that decodes has exactly
# the header peeked from it. Bytes that do not match give None (decode them to learn why).
_TAIL = re.compile(
    rb',"community":"([^"\\\x00-\x1f]{1,256})","issued_at":(0|[1-9][0-9]{0,18}),'
    rb'"key":"[A-Za-z0-9_-]{43}","kind":"([a-z]{1,16})","node_id":"([a-z2-7]{16})",'
    rb'"seq":(0|[1-9][0-9]{0,18}),"sig":"([A-Za-z0-9_-]{86})","ttl_s":([1-9][0-9]{0,18})\}\Z'
)
_TAIL_MAX = 700  # longest tail the pattern can match, so peeking costs the same at any size
_KINDS = {k.value: k for k in Kind}


def peek_header(data: bytes) -> Header | None:
    """The header of a record in O(1) on any bytes, or None when it cannot be read cheaply.

    Pure and safe on hostile input: it never raises and never looks at more than the last
    few hundred bytes. Nothing here is verified: use it only to refuse early what a full
    check would refuse anyway (see `RecordStore.triage`), never to accept.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) > DEFAULT_LIMITS.max_bytes:
        return None
    m = _TAIL.search(data, max(0, len(data) - _TAIL_MAX))
    if m is None:
        return None
    kind = _KINDS.get(m[3].decode("ascii"))
    try:
        community = m[1].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if kind is None:
        return None
    return Header(
        kind,
        m[4].decode("ascii"),
        community,
        int(m[5]),
        int(m[2]),
        int(m[7]),
        m[6].decode("ascii"),
    )


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


_HOSTNAME = b'"hostname":"'


def node_hostname(envelope: Envelope) -> str:
    """The body's hostname of a decoded node record, read out of `raw` without parsing it.

    Canonical keys are sorted, so the body (first key) comes before the certificate's own
    hostname; inside the body only `contact` precedes it, and a quote in a string is always
    escaped, so the marker cannot start there; nested objects (config, location) have fixed
    keys. A checked hostname holds no quote, backslash or control character: no escapes.
    """
    raw = envelope.raw
    start = raw.index(_HOSTNAME) + len(_HOSTNAME)
    return raw[start : raw.index(b'"', start)].decode("utf-8")
