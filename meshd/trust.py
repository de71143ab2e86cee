"""Who may speak in a community: admin keys, enrollment certificates, revocations, k-of-n.

An admin signs an enrollment certificate for each node key; a record is accepted only with one.
Changes that affect everybody (the community file, revocations) need `threshold` distinct valid
admin signatures. Duplicate and malformed signatures never count: the bug in Gluon's
CVE-2022-24884 was counting one signature several times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshd import validate as v
from meshd.encoding import b64decode, b64encode, canonical_json
from meshd.errors import KeyFormatError
from meshd.ids import SIGNATURE_BYTES, KeyCache, PublicKey, SigningKey

ENROLLMENT_DOMAIN = b"mutualmesh-enrollment-v1\0"
REVOCATION_DOMAIN = b"mutualmesh-revocation-v1\0"
COMMUNITY_DOMAIN = b"mutualmesh-community-v1\0"
_SIG_FIELDS = frozenset({"admin", "sig"})


@dataclass(frozen=True, slots=True)
class Trust:
    """The anchors every verifier needs, taken from community.yaml."""

    community: str
    admins: frozenset[PublicKey]
    threshold: int = 1


def valid_signers(
    message: bytes, signatures: Iterable[Any], admins: frozenset[PublicKey]
) -> frozenset[PublicKey]:
    """The distinct admins with a valid signature over `message`; anything malformed is skipped."""
    signers: set[PublicKey] = set()
    for entry in signatures:
        if not isinstance(entry, dict) or set(entry) != {"admin", "sig"}:
            continue
        try:
            admin = PublicKey.from_text(entry["admin"])
            sig = b64decode(entry["sig"], SIGNATURE_BYTES, "signature")
        except KeyFormatError:
            continue
        if admin in admins and admin not in signers and admin.verify(message, sig):
            signers.add(admin)
    return frozenset(signers)


def admin_signature(key: SigningKey, message: bytes) -> dict[str, str]:
    return {"admin": key.public.text, "sig": b64encode(key.sign(message))}


@dataclass(frozen=True, slots=True)
class Enrollment:
    """An admin's statement: this key is the node `hostname` of `community` until `expires`."""

    community: str
    hostname: str
    key: PublicKey
    expires: int
    admin: PublicKey
    sig: bytes

    def signed_part(self) -> dict[str, Any]:
        return {
            "v": 1,
            "community": self.community,
            "hostname": self.hostname,
            "key": self.key.text,
            "expires": self.expires,
            "admin": self.admin.text,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.signed_part(), "sig": b64encode(self.sig)}

    @classmethod
    def issue(
        cls, admin: SigningKey, *, community: str, hostname: str, key: PublicKey, expires: int
    ) -> Enrollment:
        unsigned = cls(community, hostname, key, expires, admin.public, b"")
        sig = admin.sign(ENROLLMENT_DOMAIN + canonical_json(unsigned.signed_part()))
        return cls(community, hostname, key, expires, admin.public, sig)

    @classmethod
    def from_json(cls, value: Any, path: str = "cert", keys: KeyCache | None = None) -> Enrollment:
        """Parse and range-check (the signature is checked by `problem`); raises v.Invalid."""
        o = v.obj(
            value, path, frozenset({"v", "community", "hostname", "key", "expires", "admin", "sig"})
        )
        v.integer(o["v"], f"{path}.v", 1, 1)
        try:
            key = PublicKey.from_text(o["key"], f"{path}.key", keys)
            admin = PublicKey.from_text(o["admin"], f"{path}.admin", keys)
            sig = b64decode(o["sig"], SIGNATURE_BYTES, f"{path}.sig")
        except KeyFormatError as exc:
            raise v.Invalid(path, str(exc)) from None
        return cls(
            community=v.string(o["community"], f"{path}.community", max_len=64, min_len=1),
            hostname=v.hostname(o["hostname"], f"{path}.hostname"),
            key=key,
            expires=v.integer(o["expires"], f"{path}.expires"),
            admin=admin,
            sig=sig,
        )

    def problem(self, trust: Trust, now: float) -> str | None:
        """Why this certificate does not enroll its key in `trust`, or None when it does."""
        if self.community != trust.community:
            return f"certificate is for community {self.community!r}"
        if self.admin not in trust.admins:
            return "certificate signed by a key that is not a community admin"
        if now > self.expires:
            return f"certificate expired at {self.expires}"
        if not self.admin.verify(ENROLLMENT_DOMAIN + canonical_json(self.signed_part()), self.sig):
            return "certificate signature is not valid"
        return None


@dataclass(frozen=True, slots=True)
class Revocation:
    """Admins' statement that a node key must no longer be trusted, anywhere."""

    community: str
    node_id: str
    key: PublicKey
    issued_at: int
    reason: str
    sigs: tuple[Mapping[str, str], ...]

    def signed_part(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "revocation",
            "community": self.community,
            "node_id": self.node_id,
            "key": self.key.text,
            "issued_at": self.issued_at,
            "reason": self.reason,
        }

    def message(self) -> bytes:
        return REVOCATION_DOMAIN + canonical_json(self.signed_part())

    def to_json(self) -> dict[str, Any]:
        return {**self.signed_part(), "sigs": [dict(s) for s in self.sigs]}

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def issue(
        cls,
        admins: Iterable[SigningKey],
        *,
        community: str,
        key: PublicKey,
        issued_at: int,
        reason: str,
    ) -> Revocation:
        unsigned = cls(community, key.node_id, key, issued_at, reason, ())
        message = unsigned.message()
        return cls(
            community,
            key.node_id,
            key,
            issued_at,
            reason,
            tuple(admin_signature(a, message) for a in admins),
        )

    def add_signature(self, admin: SigningKey) -> Revocation:
        sigs = (*self.sigs, admin_signature(admin, self.message()))
        return Revocation(self.community, self.node_id, self.key, self.issued_at, self.reason, sigs)

    @classmethod
    def from_json(cls, value: Any, path: str = "revocation") -> Revocation:
        o = v.obj(
            value,
            path,
            frozenset({"v", "type", "community", "node_id", "key", "issued_at", "reason", "sigs"}),
        )
        v.integer(o["v"], f"{path}.v", 1, 1)
        v.choice(o["type"], f"{path}.type", ("revocation",))
        try:
            key = PublicKey.from_text(o["key"], f"{path}.key")
        except KeyFormatError as exc:
            raise v.Invalid(f"{path}.key", str(exc)) from None
        node_id = v.node_id(o["node_id"], f"{path}.node_id")
        if key.node_id != node_id:
            raise v.Invalid(f"{path}.node_id", "does not match the key")
        sigs = v.array(o["sigs"], f"{path}.sigs", 32)
        for i, entry in enumerate(sigs):  # kept as given and re-encoded when passed on
            e = v.obj(entry, f"{path}.sigs[{i}]", _SIG_FIELDS)
            v.string(e["admin"], f"{path}.sigs[{i}].admin", max_len=64)
            v.string(e["sig"], f"{path}.sigs[{i}].sig", max_len=128)
        return cls(
            community=v.string(o["community"], f"{path}.community", max_len=64, min_len=1),
            node_id=node_id,
            key=key,
            issued_at=v.integer(o["issued_at"], f"{path}.issued_at"),
            reason=v.string(o["reason"], f"{path}.reason", max_len=256),
            sigs=tuple(sigs),
        )

    def problem(self, trust: Trust) -> str | None:
        """Why this revocation must be ignored, or None when it is valid."""
        if self.community != trust.community:
            return f"revocation is for community {self.community!r}"
        signers = valid_signers(self.message(), self.sigs, trust.admins)
        if len(signers) < trust.threshold:
            return f"{len(signers)} valid admin signature(s), {trust.threshold} needed"
        return None


def community_message(data: Mapping[str, Any]) -> bytes:
    """The bytes admins sign for a community file: everything except the signatures themselves.

    Raises ValueError (only) when the file holds something with no canonical JSON form: a lone
    surrogate or NaN from YAML escapes, a non-string key, a date; such a file has no valid
    signature, and callers treat it as unsigned.
    """
    try:
        return COMMUNITY_DOMAIN + canonical_json(
            {k: data[k] for k in sorted(data) if k != "signatures"}
        )
    except (TypeError, RecursionError) as exc:
        raise ValueError(f"no canonical form: {exc}") from None
