"""Small field checkers shared by record bodies and certificates.

Each raises `Invalid` with a dotted path, so a refusal says exactly which field was wrong.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshd.ids import is_node_id

MAX_INT = 2**63 - 1
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Control characters, and lone surrogates: JSON can spell them (`"\ud800"`), UTF-8 cannot, so
# a string holding one has no canonical bytes and could never be signed or re-encoded.
_CONTROL = re.compile(r"[\x00-\x1f\ud800-\udfff]")
_IFACE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


class Invalid(ValueError):
    """A field failed its check."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def obj(
    value: Any, path: str, required: frozenset[str], optional: frozenset[str] = frozenset()
) -> Mapping[str, Any]:
    """A JSON object with exactly the allowed keys."""
    if not isinstance(value, dict):
        raise Invalid(path, "must be an object")
    missing = required - value.keys()
    if missing:
        raise Invalid(path, f"missing field(s) {', '.join(sorted(missing))}")
    extra = value.keys() - required - optional
    if extra:
        raise Invalid(path, f"unknown field(s) {', '.join(sorted(extra))}")
    return value


def string(value: Any, path: str, *, max_len: int = 256, min_len: int = 0) -> str:
    if not isinstance(value, str):
        raise Invalid(path, "must be a string")
    if not min_len <= len(value) <= max_len:
        raise Invalid(path, f"length must be {min_len}..{max_len}, got {len(value)}")
    if _CONTROL.search(value):
        raise Invalid(path, "must not contain control characters or lone surrogates")
    return value


def opt_string(value: Any, path: str, *, max_len: int = 256) -> str | None:
    return None if value is None else string(value, path, max_len=max_len)


def integer(value: Any, path: str, lo: int = 0, hi: int = MAX_INT) -> int:
    if type(value) is not int:  # bool is a subclass of int and must not pass
        raise Invalid(path, "must be an integer")
    if not lo <= value <= hi:
        raise Invalid(path, f"must be in {lo}..{hi}, got {value}")
    return value


def opt_integer(value: Any, path: str, lo: int = 0, hi: int = MAX_INT) -> int | None:
    return None if value is None else integer(value, path, lo, hi)


def number(value: Any, path: str, lo: float, hi: float) -> float:
    kind = type(value)
    if kind is not float and kind is not int:  # bool is a subclass of int and must not pass
        raise Invalid(path, "must be a number")
    if not lo <= value <= hi:  # also false for NaN; infinities fall outside any finite range
        raise Invalid(path, f"must be in {lo}..{hi}, got {value}")
    return float(value)


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(path, "must be true or false")
    return value


def array(value: Any, path: str, max_len: int) -> Sequence[Any]:
    if not isinstance(value, list):
        raise Invalid(path, "must be a list")
    if len(value) > max_len:
        raise Invalid(path, f"at most {max_len} entries, got {len(value)}")
    return value


def hostname(value: Any, path: str) -> str:
    text = string(value, path, max_len=63, min_len=1)
    if not _HOSTNAME.match(text):
        raise Invalid(path, "must be lowercase letters, digits and inner hyphens (RFC 1123)")
    return text


def iface(value: Any, path: str) -> str:
    text = string(value, path, max_len=15, min_len=1)
    if not _IFACE.match(text):
        raise Invalid(path, "must be an interface name of at most 15 characters")
    return text


def node_id(value: Any, path: str) -> str:
    if not is_node_id(value):
        raise Invalid(path, "must be a node id (16 base32 characters)")
    return str(value)


def ip_address(value: Any, path: str) -> str:
    text = string(value, path, max_len=64)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Invalid(path, f"not an IP address: {text!r}") from None


def choice(value: Any, path: str, options: Sequence[str]) -> str:
    if value not in options:
        raise Invalid(path, f"must be one of {', '.join(options)}")
    return str(value)
