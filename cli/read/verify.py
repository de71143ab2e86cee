"""The one verification loop of the read side, run serially or over forked workers.

Every record is checked by the core's `RecordStore` against the community's admin keys, exactly
as a node does. Large meshes are verified on all cores: each worker runs the same loop over a
share of the nodes and the parent merges the results; merging is a lattice join, so the split
cannot change the outcome.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from meshd.codec import Envelope
from meshd.errors import RecordRejected, RejectReason
from meshd.store import RecordStore
from meshd.trust import Revocation, Trust

PARALLEL_MIN_RECORDS = 3000  # below this, forking costs more than it saves
PARENT_WEIGHT = 1.17


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while large acyclic structures are built.

    Verifying 30,000 records allocates about a million objects, none in a cycle; every full
    collection would walk all of them again (a tenth of the audit's time at 10,000 nodes).
    Reference counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _signer(data: bytes) -> bytes:
    """The envelope's node id, found without parsing: keys are sorted, so the top-level
    `node_id` follows `body` and `cert` and is the last one in the text. Only used to split the
    work; a record that lies here is still fully checked, just by another worker."""
    at = data.rfind(b'"node_id":"')
    return data[at : at + 28] if at >= 0 else b""


def _revoke(store: RecordStore, revocations: Sequence[bytes]) -> None:
    for data in revocations:
        try:
            store.revoke(Revocation.from_json(json.loads(data)))
        except (ValueError, RecursionError, RecordRejected):
            store.rejections[RejectReason.MALFORMED] += 1


def _verify_into(
    store: RecordStore, records: Sequence[bytes], revocations: Sequence[bytes], now: float
) -> RecordStore:
    """The loop itself: revocations first, then every record through `offer`."""
    _revoke(store, revocations)
    with paused_gc():
        for data in records:
            with contextlib.suppress(RecordRejected):
                store.offer(data, now)
    return store


def _verify_share(
    trust: Trust, records: Sequence[bytes], revocations: Sequence[bytes], now: float
) -> tuple[list[Envelope], Counter[RejectReason]]:
    """A worker's share; refused revocations are the parent's to count, once."""
    store = RecordStore(trust)
    _revoke(store, revocations)
    store.rejections.clear()
    _verify_into(store, records, (), now)
    return list(store.records.values()), store.rejections


def _shares(records: Sequence[bytes], workers: int) -> list[list[bytes]]:
    """Split by signer. A child's records also cost pickling there and unpickling here, so the
    parent keeps a larger share: with two processes about 54 % (measured: 1 record verified
    ~ 200 us, shipped back ~ 35 us to pickle + 35 us to unpickle)."""
    weights = [PARENT_WEIGHT] + [1.0] * (workers - 1)
    bounds = list(itertools.accumulate(w / sum(weights) * 1000 for w in weights))
    shares: list[list[bytes]] = [[] for _ in range(workers)]
    for data in records:
        slot = bisect.bisect_right(bounds, hash(_signer(data)) % 1000)
        shares[min(slot, workers - 1)].append(data)
    return shares


def verify(
    trust: Trust,
    records: Sequence[bytes],
    now: float,
    *,
    revocations: Sequence[bytes] = (),
    workers: int | None = None,
    min_parallel: int = PARALLEL_MIN_RECORDS,
) -> RecordStore:
    """A RecordStore holding exactly the records that pass every check of the core.

    Large inputs are split by node over forked workers (so each node's certificate is checked
    once, in one place); the parent verifies one share itself and joins the stores. Decoding is
    pure Python and holds the GIL, so threads do not help here (measured: two threads cost more
    than they save); processes do, once the garbage collector is kept from walking the million
    objects that shipping the envelopes back creates.
    """
    workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers <= 1 or len(records) < min_parallel or sys.platform == "win32":
        return _verify_into(RecordStore(trust), records, revocations, now)
    shares = _shares(records, workers)
    with paused_gc(), ProcessPoolExecutor(workers - 1, mp_context=get_context("fork")) as pool:
        futures = [
            pool.submit(_verify_share, trust, share, revocations, now) for share in shares[1:]
        ]
        store = _verify_into(RecordStore(trust), shares[0], revocations, now)
        for future in futures:
            envelopes, rejections = future.result()
            store.merge_all(envelopes)
            store.rejections.update(rejections)
    return store
