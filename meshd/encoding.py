"""Canonical encodings: one byte string per value, so signatures cover meaning, not formatting."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from meshd.errors import KeyFormatError


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the bytes every signature covers."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


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
