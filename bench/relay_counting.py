"""Per-node counts of decode and signature checks in the relay simulation, and their cost.

Decoding and verifying the same bytes on 1,000 nodes would take hours, so `counting()`
memoises `decode` and `signature_valid` across nodes (patched into the store, the agent's own
path) and counts every call per node as if it ran; `calibrate()` measures what one call
really costs, in the same run.
"""

from __future__ import annotations

import contextlib
import functools
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import meshd.ids as ids_mod
import meshd.store as store_mod
from meshd.codec import DEFAULT_LIMITS, Envelope, Limits, ParseCache, decode, signature_valid


@dataclass
class Stats:
    msgs_in: int = 0
    msgs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    decodes: int = 0
    verifies: int = 0


class _Counter:
    current: Stats = Stats()
    triage: bool = True


COUNTER = _Counter()


@contextlib.contextmanager
def counting() -> Iterator[None]:
    """Count decode and signature checks per node; run each distinct one only once.

    With `COUNTER.triage` off, the store's header peek finds nothing, as on today's main,
    where every copy was decoded and verified before the store knew it was not new.
    """
    decoded: dict[bytes, Envelope] = {}
    verified: dict[bytes, bool] = {}
    names = vars(store_mod)  # the store's own references to the codec, patched in place
    real_decode, real_valid, real_peek = (
        names["decode"],
        names["signature_valid"],
        names["peek_header"],
    )

    def counted_decode(data: bytes, limits: Limits = DEFAULT_LIMITS, *rest: Any) -> Envelope:
        COUNTER.current.decodes += 1
        env = decoded.get(data)
        if env is None:
            if len(decoded) > 50_000:
                decoded.clear()
            env = decoded[data] = real_decode(data, limits, *rest)
        return env

    def counted_valid(env: Envelope) -> bool:
        COUNTER.current.verifies += 1
        ok = verified.get(env.raw)
        if ok is None:
            if len(verified) > 50_000:
                verified.clear()
            ok = verified[env.raw] = real_valid(env)
        return ok

    def switched_peek(data: bytes) -> Any:
        return real_peek(data) if COUNTER.triage else None

    names["decode"], names["signature_valid"] = counted_decode, counted_valid
    names["peek_header"] = switched_peek
    COUNTER.triage = True  # until a simulation of the old protocol runs
    # a pure hash the store recomputes per record; memoised only to make the run shorter
    id_names = vars(ids_mod)
    real_node_id = id_names["node_id_from_public_key"]
    id_names["node_id_from_public_key"] = functools.lru_cache(maxsize=8192)(real_node_id)
    try:
        yield
    finally:
        names["decode"], names["signature_valid"] = real_decode, real_valid
        names["peek_header"] = real_peek
        COUNTER.triage = True
        id_names["node_id_from_public_key"] = real_node_id


@dataclass(frozen=True)
class Costs:
    decode_s: float
    verify_s: float
    bytes_per_record: float


def calibrate(held_raws: Iterable[bytes], samples: int = 300) -> Costs:
    """Real per-call cost of decode and signature check, and memory per held record."""
    raws = list(dict.fromkeys(held_raws))[:samples]
    # CPU time of this process, so other load on the machine does not inflate the cost; each
    # phase is repeated to get above the clock's resolution
    rounds = 5
    t0 = time.process_time()
    cache = ParseCache()  # as a store has: each node's certificate is parsed once
    for _ in range(rounds):
        envs = [decode(r, DEFAULT_LIMITS, cache) for r in raws]
    t1 = time.process_time()
    for _ in range(rounds):
        for env in envs:
            signature_valid(env)
    t2 = time.process_time()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    own = ParseCache()  # a store's own copies and parse cache, as each node has
    held = [decode(bytes(bytearray(r)), DEFAULT_LIMITS, own) for r in raws]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held, own
    n = max(1, len(raws)) * rounds
    return Costs((t1 - t0) / n, (t2 - t1) / n, (after - before) * rounds / n)
