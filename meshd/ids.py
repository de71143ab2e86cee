"""Node identities: an Ed25519 key pair per node, and a node id nobody can claim without the key."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from meshd.encoding import BoundedCache, b64decode, b64encode
from meshd.errors import KeyFormatError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NODE_ID_CHARS = 16
_NODE_ID = re.compile(rf"^[a-z2-7]{{{NODE_ID_CHARS}}}$")


def node_id_from_public_key(public_key: bytes) -> str:
    """16 lowercase base32 chars (80 bits) of SHA-256 over the key: short, stable, printable."""
    digest = hashlib.sha256(b"mutualmesh-node-id\0" + public_key).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def is_node_id(text: object) -> bool:
    """True for a well-formed node id (not necessarily one that exists)."""
    return isinstance(text, str) and _NODE_ID.match(text) is not None


def fingerprint(public_key: bytes) -> str:
    """A 16-hex-digit key fingerprint, short enough for mDNS TXT and for people to compare."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verifying key, kept as raw bytes; cheap to hash and compare."""

    raw: bytes

    @classmethod
    def from_text(
        cls, text: str, what: str = "public key", cache: KeyCache | None = None
    ) -> PublicKey:
        """Parse a key; `cache` (the caller's, keyed by the exact text) skips repeated work."""
        if cache is not None and type(text) is str:
            cached = cache.get(text)
            if cached is not None:
                return cached
        key = cls(b64decode(text, PUBLIC_KEY_BYTES, what))
        if cache is not None:
            cache.put(text, key)
        return key

    @property
    def text(self) -> str:
        return b64encode(self.raw)

    @property
    def node_id(self) -> str:
        return node_id_from_public_key(self.raw)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's signature over `message`."""
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            return False
        return True


#: The admin and neighbour keys recur in every record; a store keeps one of these for them.
KeyCache = BoundedCache[str, PublicKey]


class SigningKey:
    """A node's or admin's private key. Generation takes entropy from the caller's side (PyNaCl)."""

    __slots__ = ("_key", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise KeyFormatError(f"a private key seed is 32 bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        self.public = PublicKey(bytes(self._key.verify_key))

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @classmethod
    def from_text(cls, text: str) -> SigningKey:
        return cls(b64decode(text.strip(), 32, "private key"))

    @property
    def seed_text(self) -> str:
        """The 32-byte seed as text; this is the secret that key files hold."""
        return b64encode(bytes(self._key))

    @property
    def node_id(self) -> str:
        return self.public.node_id

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return f"SigningKey(node_id={self.node_id!r})"
