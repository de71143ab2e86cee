"""Mutations for bench/fuzz.py: byte-level edits and structure-aware edits of a JSON tree.

Each byte mutator takes (rng, data, seeds) and returns new bytes; MUTATORS and WEIGHTS are the
table `generate` draws from, so a new kind of damage is one function and one weight.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from typing import Any

from meshd.encoding import canonical_json

INTERESTING_BYTES = b'"\\[]{},:0-.eE \x00\x7f\x80\xc0\xed\xff'
NUMBERS = (
    b"0", b"-0", b"-1", b"1.0", b"0.1", b"1e2", b"1E2", b"1e999", b"-1e999", b"NaN",
    b"Infinity", b"-Infinity", b"true", b"false", b"null", b"9" * 30, b"9" * 5000,
    b"9223372036854775807", b"9223372036854775808", b"18446744073709551616", b"01",
)  # fmt: skip
ESCAPES = (b"\\ud800", b"\\udfff", b"\\ud800\\udc00", b"\\u0000", b"\\\\", b'\\"', b"\\u00e9")
INTERESTING_VALUES: tuple[Any, ...] = (
    0, -1, 1, 2**63 - 1, 2**63, 2**64, 10**30, 1.5, -0.0, 1e308, float("nan"), float("inf"),
    True, False, None, "", "x" * 300, "\ud800", "\u0000", "é", "a" * 17, "A" * 43, [], {},
    [[[[[[[[1]]]]]]]], {"a": {"b": {"c": {"d": {}}}}}, "10.0.0.256", "mesh0/1",
)  # fmt: skip
_NUMBER = re.compile(rb"-?[0-9]+(\.[0-9]+)?")
_PAIR = re.compile(rb'"[a-z_]+":("[^"\\]*"|-?[0-9]+|true|false|null)')


def _span(rng: random.Random, data: bytes) -> tuple[int, int]:
    a = rng.randrange(len(data) + 1)
    return a, min(len(data), a + rng.choice((1, 2, 8, 64, 512)))


def m_flip(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    if not data:
        return data
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


def m_byte(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + bytes([rng.choice(INTERESTING_BYTES)]) + data[i + 1 :]


def m_delete(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    a, b = _span(rng, data)
    return data[:a] + data[b:]


def m_duplicate(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    a, b = _span(rng, data)
    return data[:b] + data[a:b] + data[b:]


def m_truncate(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def m_splice(rng: random.Random, data: bytes, seeds: Sequence[bytes]) -> bytes:
    other = rng.choice(seeds)
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def m_nesting(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    """Deep nesting where a value may start, at a random byte, or as the whole input."""
    depth = rng.choice((7, 50, 1000, 5000))
    opener = rng.choice((b"[", b"{", b'{"a":', b'["'))
    nest = opener * depth + (b"]" if opener == b"[" else b"") * rng.choice((0, depth))
    roll = rng.random()
    if roll < 0.25:
        return nest
    values = [m.end() for m in re.finditer(rb'":', data)]
    i = rng.choice(values) if values and roll < 0.75 else rng.randrange(len(data) + 1)
    return data[:i] + nest + data[i:]


def m_escape(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    quotes = [m.end() for m in re.finditer(rb'":"', data)] or [rng.randrange(len(data) + 1)]
    i = rng.choice(quotes)
    return data[:i] + rng.choice(ESCAPES) + data[i:]


def m_number(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    found = list(_NUMBER.finditer(data))
    if not found:
        return data + rng.choice(NUMBERS)
    m = rng.choice(found)
    return data[: m.start()] + rng.choice(NUMBERS) + data[m.end() :]


def m_duplicate_key(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    found = list(_PAIR.finditer(data))
    if not found:
        return data
    m = rng.choice(found)
    return data[: m.end()] + b"," + m[0] + data[m.end() :]


def m_space(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice((b" ", b"\n", b"\t", b"\r\n")) + data[i:]


def m_random(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    return rng.randbytes(rng.randrange(64))


def m_oversize(rng: random.Random, data: bytes, _: Sequence[bytes]) -> bytes:
    return data + b" " * (16 * 1024 + 1 - len(data))


MUTATORS = (
    m_flip, m_byte, m_delete, m_duplicate, m_truncate, m_splice, m_nesting, m_escape, m_number,
    m_duplicate_key, m_space, m_random, m_oversize,
)  # fmt: skip
WEIGHTS = (8, 6, 4, 3, 3, 3, 2, 3, 5, 2, 1, 1, 1)


def mutate_tree(rng: random.Random, tree: Any) -> Any:
    """Replace, drop or add one value somewhere in a parsed JSON tree (in place)."""
    parent: Any = None
    key: Any = None
    node = tree
    while isinstance(node, (dict, list)) and node and (parent is None or rng.random() < 0.7):
        parent = node
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        node = node[key]
    if parent is None:
        return rng.choice(INTERESTING_VALUES)
    roll = rng.random()
    if isinstance(parent, dict) and roll < 0.15:
        del parent[key]
    elif isinstance(parent, dict) and roll < 0.25:
        parent[rng.choice(("zz", "v", "extra", key + "_"))] = rng.choice(INTERESTING_VALUES)
    else:
        parent[key] = rng.choice(INTERESTING_VALUES)
    return tree


def dump(tree: Any) -> bytes:
    try:
        return canonical_json(tree)
    except ValueError:  # NaN or a lone surrogate: spell it the way a hostile sender would
        return json.dumps(tree, sort_keys=True, separators=(",", ":")).encode()
