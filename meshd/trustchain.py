"""Signed versions of the community file: who may change it is decided by the version before.

A community file lists its own admins, so its own signatures cannot authorise a change to that
list: whoever rewrites the list could sign the result alone (the class of bug behind Gluon's
CVE-2022-24884). Every accepted version of community.yaml is therefore recorded in a chain of
statements under `trust/` in the community folder:

    trust/000001.json   version 1 (genesis): signed by `threshold` of its own admins
    trust/000002.json   version 2: signed by `threshold` of version 1's admins
    ...
    trust/pending.json  a proposed next version, collecting signatures (not trusted yet)

A statement names the community, its version number, the fingerprint of the previous statement,
the SHA-256 of the signed bytes of that version's community.yaml, and that version's admin keys
and threshold. It is valid only with `threshold` distinct valid signatures of the *previous*
version's admins, so changing the admin set or lowering k takes k of the admins already trusted.
community.yaml must match the newest statement; an older file whose digest appears earlier in
the chain is reported as a replay. Version numbers only grow.

The genesis fingerprint is the community's identity: `community init` prints it, the admin CLI
pins it (with the newest version it has verified) under ~/.config/mutualmesh/pins/, and every
node bundle carries it in /etc/meshd/trust.json. A verifier holding a pin refuses a chain with
another genesis, a chain that ends before the pinned version (a replayed older version) and a
chain whose pinned version has another fingerprint (a fork).

It lives in the core because routers verify updates with the same code (node_agent.trustpin);
the admin side (provisioning) only writes the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshd import validate as v
from meshd.encoding import canonical_json
from meshd.errors import KeyFormatError
from meshd.ids import PublicKey, SigningKey
from meshd.trust import admin_signature, community_message, valid_signers

VERSION_DOMAIN = b"mutualmesh-community-version-v1\0"
MAX_ADMINS = 64


class ChainError(ValueError):
    """The chain (or a file against it) is not trustworthy; `fix` says what an admin can do."""

    def __init__(self, where: str, what: str, fix: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what
        self.fix = fix


def content_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 of the bytes admins sign for a community file (everything but its signatures)."""
    return hashlib.sha256(community_message(data)).hexdigest()


def _admin_texts(data: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(str(a["key"]) for a in data["admins"]))


@dataclass(frozen=True, slots=True)
class Version:
    """One accepted (or proposed) version of the community file."""

    community: str
    version: int
    previous: str | None
    content: str
    admins: tuple[str, ...]
    threshold: int
    sigs: tuple[Mapping[str, str], ...] = ()

    def signed_part(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "community-version",
            "community": self.community,
            "version": self.version,
            "previous": self.previous,
            "content": self.content,
            "admins": list(self.admins),
            "threshold": self.threshold,
        }

    def message(self) -> bytes:
        return VERSION_DOMAIN + canonical_json(self.signed_part())

    @property
    def fingerprint(self) -> str:
        """Stable while signatures are added: it covers the statement, not who signed it."""
        return "sha256:" + hashlib.sha256(self.message()).hexdigest()

    @property
    def admin_keys(self) -> frozenset[PublicKey]:
        return frozenset(PublicKey.from_text(a) for a in self.admins)

    def signers(self, admins: frozenset[PublicKey]) -> frozenset[PublicKey]:
        return valid_signers(self.message(), self.sigs, admins)

    def signed_by(self, key: SigningKey) -> Version:
        others = tuple(s for s in self.sigs if s.get("admin") != key.public.text)
        return Version(
            self.community,
            self.version,
            self.previous,
            self.content,
            self.admins,
            self.threshold,
            (*others, admin_signature(key, self.message())),
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.signed_part(), "sigs": [dict(s) for s in self.sigs]}

    @classmethod
    def from_json(cls, value: Any, path: str = "version") -> Version:
        o = v.obj(
            value,
            path,
            frozenset(
                {
                    "v",
                    "type",
                    "community",
                    "version",
                    "previous",
                    "content",
                    "admins",
                    "threshold",
                    "sigs",
                }
            ),
        )
        v.integer(o["v"], f"{path}.v", 1, 1)
        v.choice(o["type"], f"{path}.type", ("community-version",))
        admins = tuple(
            v.string(a, f"{path}.admins[{i}]", max_len=64, min_len=1)
            for i, a in enumerate(v.array(o["admins"], f"{path}.admins", MAX_ADMINS))
        )
        if not admins or len(set(admins)) != len(admins) or list(admins) != sorted(admins):
            raise v.Invalid(f"{path}.admins", "must be distinct keys in sorted order, at least one")
        for i, text in enumerate(admins):
            try:
                PublicKey.from_text(text, f"{path}.admins[{i}]")
            except KeyFormatError as exc:
                raise v.Invalid(f"{path}.admins[{i}]", str(exc)) from None
        previous = o["previous"]
        if previous is not None:
            previous = _fingerprint(previous, f"{path}.previous")
        content = v.string(o["content"], f"{path}.content", max_len=64, min_len=64)
        if any(ch not in "0123456789abcdef" for ch in content):
            raise v.Invalid(f"{path}.content", "must be a lowercase hex SHA-256")
        sigs = v.array(o["sigs"], f"{path}.sigs", MAX_ADMINS)
        return cls(
            community=v.string(o["community"], f"{path}.community", max_len=64, min_len=1),
            version=v.integer(o["version"], f"{path}.version", 1),
            previous=previous,
            content=content,
            admins=admins,
            threshold=v.integer(o["threshold"], f"{path}.threshold", 1, len(admins)),
            sigs=tuple(s for s in sigs if isinstance(s, dict)),
        )


def _fingerprint(value: Any, path: str) -> str:
    text = v.string(value, path, max_len=71, min_len=71)
    if not text.startswith("sha256:") or any(ch not in "0123456789abcdef" for ch in text[7:]):
        raise v.Invalid(path, "must be sha256:<64 lowercase hex digits>")
    return text


def propose(data: Mapping[str, Any], previous: Version | None) -> Version:
    """The unsigned statement that would make `data` the next version after `previous`."""
    return Version(
        community=str(data["name"]),
        version=1 if previous is None else previous.version + 1,
        previous=None if previous is None else previous.fingerprint,
        content=content_digest(data),
        admins=_admin_texts(data),
        threshold=int(data["threshold"]),
    )


def authorising(chain: Sequence[Version], proposed: Version) -> Version:
    """The version whose admins must sign `proposed`: the one before it, or itself for genesis."""
    return chain[proposed.version - 2] if proposed.version > 1 else proposed


def verify_chain(chain: Sequence[Version], *, where: str = "trust/") -> Version:
    """Check every link; returns the newest trusted version."""
    if not chain:
        raise ChainError(
            where,
            "no trusted versions",
            "a community folder starts its chain with `mutualmesh community init`",
        )
    for i, item in enumerate(chain):
        at = f"{where}{item.version:06d}.json"
        if item.version != i + 1:
            raise ChainError(at, f"is version {item.version}, expected {i + 1}", "restore trust/")
        if item.community != chain[0].community:
            raise ChainError(at, f"is for community {item.community!r}", "restore trust/")
        if i == 0:
            if item.previous is not None:
                raise ChainError(at, "version 1 must not name a previous version", "restore it")
            anchor = item
        else:
            anchor = chain[i - 1]
            if item.previous != anchor.fingerprint:
                raise ChainError(
                    at, "does not follow the version before it (previous differs)", "restore it"
                )
        signers = item.signers(anchor.admin_keys)
        if len(signers) < anchor.threshold:
            whose = "its own" if i == 0 else f"version {anchor.version}'s"
            raise ChainError(
                at,
                f"{len(signers)} valid signature(s) of {whose} admins, {anchor.threshold} needed",
                "a change must be signed by the admins trusted before it; restore trust/ "
                "from a copy you trust",
            )
    return chain[-1]


def match_content(chain: Sequence[Version], data: Mapping[str, Any], *, where: str) -> Version:
    """The version `data` is; raises when it is older than the newest one or not in the chain."""
    head = chain[-1]
    digest = content_digest(data)
    if digest == head.content:
        if _admin_texts(data) != head.admins or data["threshold"] != head.threshold:
            raise ChainError(
                where, "admins or threshold differ from the trusted version", "restore it"
            )
        return head
    for item in chain[:-1]:
        if item.content == digest:
            raise ChainError(
                where,
                f"is version {item.version}, older than the trusted version {head.version} "
                "(an old file replayed?)",
                "restore the current community.yaml (git history), or have the admins sign "
                "a new version",
            )
    raise ChainError(
        where,
        f"differs from trusted version {head.version}: the change is not accepted yet",
        f"{head.threshold} admin(s) of version {head.version} must run `mutualmesh community sign`",
    )


@dataclass(frozen=True, slots=True)
class Pin:
    """What a verifier remembers: the community's genesis and the newest version it accepted."""

    community: str
    genesis: str
    version: int
    fingerprint: str
    admins: tuple[str, ...] = ()
    threshold: int = 1

    @classmethod
    def of(cls, chain: Sequence[Version]) -> Pin:
        head = chain[-1]
        return cls(
            head.community,
            chain[0].fingerprint,
            head.version,
            head.fingerprint,
            head.admins,
            head.threshold,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "community": self.community,
            "genesis": self.genesis,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "admins": list(self.admins),
            "threshold": self.threshold,
        }

    @classmethod
    def from_json(cls, value: Any, path: str = "pin") -> Pin:
        o = v.obj(
            value,
            path,
            frozenset({"v", "community", "genesis", "version", "fingerprint"}),
            frozenset({"admins", "threshold"}),
        )
        v.integer(o["v"], f"{path}.v", 1, 1)
        admins = tuple(
            v.string(a, f"{path}.admins[{i}]", max_len=64)
            for i, a in enumerate(v.array(o.get("admins", []), f"{path}.admins", MAX_ADMINS))
        )
        return cls(
            v.string(o["community"], f"{path}.community", max_len=64, min_len=1),
            _fingerprint(o["genesis"], f"{path}.genesis"),
            v.integer(o["version"], f"{path}.version", 1),
            _fingerprint(o["fingerprint"], f"{path}.fingerprint"),
            admins,
            v.integer(o.get("threshold", 1), f"{path}.threshold", 1),
        )


def check_pin(chain: Sequence[Version], pin: Pin, *, where: str = "trust/") -> None:
    """Refuse another genesis, a chain older than the pin, and a fork at the pinned version."""
    fix = "get the community folder from an admin you trust (git history keeps every version)"
    if chain[0].fingerprint != pin.genesis:
        raise ChainError(
            where,
            f"genesis {chain[0].fingerprint[:23]}… is not the pinned {pin.genesis[:23]}… "
            "(another community, or a rewritten chain)",
            fix,
        )
    if len(chain) < pin.version:
        raise ChainError(
            where,
            f"ends at version {len(chain)}, but version {pin.version} was already trusted "
            "(an older version replayed?)",
            fix,
        )
    if chain[pin.version - 1].fingerprint != pin.fingerprint:
        raise ChainError(
            where, f"version {pin.version} differs from the one trusted before (a fork)", fix
        )
