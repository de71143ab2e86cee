"""Canonical encodings: one byte string per value, so signatures cover meaning, not formatting."""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Generic, TypeVar

from meshd.errors import KeyFormatError, RecordRejected, RejectReason

K = TypeVar("K")
V = TypeVar("V")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the bytes every signature covers."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def load_canonical(data: bytes, max_bytes: int, max_nesting: int, what: str) -> Any:
    """Parse hostile bytes that must be exactly the canonical JSON of a value.

    The one way wire JSON enters the core (records, revocations, certificates), so every path
    has the same caps and refusals: size and nesting before the parser runs (so no
    RecursionError), and then one spelling only. Re-encoding and comparing refuses, in one
    step, duplicate keys, spaces, other escapes or number forms, NaN and Infinity (json.loads
    takes them, canonical_json refuses them), lone surrogates (they have no UTF-8 form), and
    huge numbers (ints past Python's digit limit fail to parse; floats past 1e308 become inf).
    Raises RecordRejected, never anything else.
    """
    if type(data) is not bytes:
        data = bytes(data)  # bytearray or memoryview from a socket
    if len(data) > max_bytes:
        raise RecordRejected(RejectReason.TOO_LARGE, f"{what}: {len(data)} bytes > {max_bytes}")
    depth = max_depth(data)
    if depth > max_nesting:
        raise RecordRejected(
            RejectReason.TOO_LARGE, f"{what}: nesting depth {depth} > {max_nesting}"
        )
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise RecordRejected(RejectReason.MALFORMED, f"{what} is not JSON: {exc}") from None
    try:
        canonical = canonical_json(value)
    except (ValueError, RecursionError) as exc:  # NaN, Infinity, lone surrogates
        raise RecordRejected(
            RejectReason.MALFORMED, f"{what} has no canonical form: {exc}"
        ) from None
    if canonical != data:
        raise RecordRejected(RejectReason.MALFORMED, f"{what} is not in canonical form")
    return value


class BoundedCache(Generic[K, V]):
    """A parse cache with a hard size cap, owned by whoever uses it (never module state).

    When full it starts over: a sender who floods it with distinct keys only costs re-parsing,
    never memory. Keys must be exact (bytes or str), never values that compare equal across
    types (`True == 1 == 1.0`), or a warm cache would answer differently from a cold one.
    """

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int) -> None:
        self._items: dict[K, V] = {}
        self.limit = limit

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


def b64encode(raw: bytes) -> str:
    """URL-safe base64 without padding: compact and safe in MQTT topics and YAML."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_B64_CHARS = re.compile(r"^[A-Za-z0-9_-]*$")


def b64decode(text: str, length: int, what: str) -> bytes:
    """Decode strictly: the text must be the one canonical spelling of exactly `length` bytes.

    Lenient decoders accept several spellings of the same bytes (spare low bits of the last
    character), which would let a changed record still verify.
    """
    if not isinstance(text, str) or not _B64_CHARS.match(text):
        raise KeyFormatError(f"{what} is not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise KeyFormatError(f"{what} is not valid base64: {exc}") from None
    if len(raw) != length:
        raise KeyFormatError(f"{what} must be {length} bytes, got {len(raw)}")
    if b64encode(raw) != text:
        raise KeyFormatError(f"{what} is not in canonical form")
    return raw


def max_depth(data: bytes) -> int:
    """Nesting depth of a JSON text, found without parsing it.

    Escaped backslashes and quotes are removed first, so every remaining quote opens or closes a
    string; then everything but brackets and quotes is dropped (in C), and only the brackets
    outside strings are walked. A hostile text that fools this still meets the parser's own
    recursion limit, which `decode` treats as malformed.
    """
    text = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURAL)
    outside = b"".join(text.split(b'"')[::2])
    depth = deepest = 0
    for char in outside:
        if char in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_OPENERS = frozenset(b"[{")
_NOT_STRUCTURAL = bytes(c for c in range(256) if c not in b'[]{}"')
