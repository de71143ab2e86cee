"""Memory per record held by a RecordStore: this tree's meshd against a baseline git ref, same run.

Issue 12's target is "records held <= 6 MB per node" at 1,000 nodes (3,000 records). The records
(--nodes x node/links/traffic, five neighbours per node with every link measurement filled in,
as `bench/relay_sim.py` signs them) are signed once by this tree's core (the wire format is the
same in both); then a child process per core version, each importing only its own `meshd`,
offers them to `RecordStore.offer` under tracemalloc and reports, per record:

- raw: the bytes alone in a dict (the floor: what any store must keep to relay them);
- store: a RecordStore holding all of them (envelopes, parse caches, slot table);
- read: the same store after every body was read once (`Envelope.body`), as a members page
  or an audit does: what the store keeps afterwards;

and the CPU microseconds per record of offering them (full decode and checks), and of reading
every body once. Prints both versions side by side with the ratio baseline/this (above 1 =
smaller or faster now), and the megabytes held at 1,000 nodes.

Run: .venv/bin/python bench/store_memory.py [--baseline REF] [--nodes 1000]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchkit import best_of_both, measured_link  # noqa: E402

NOW = 1_800_000_000

CHILD = r"""
import gc, json, sys, time, tracemalloc
from meshd.ids import PublicKey
from meshd.store import RecordStore
from meshd.trust import Trust

spec = json.load(open(sys.argv[1]))
trust = Trust(spec["community"], frozenset({PublicKey.from_text(spec["admin"])}), 1)
now = spec["now"]
texts = spec["records"]
n = len(texts)


def traced(build):
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, (after - before) / n


def raw_dict():
    return {i: t.encode() for i, t in enumerate(texts)}


def store():
    s = RecordStore(trust)
    for t in texts:
        s.offer(t.encode(), now)
    return s


_, raw = traced(raw_dict)
held, in_store = traced(store)
assert len(held) == n, f"store holds {len(held)} of {n}"
start = time.process_time()
for env in held.records.values():
    env.body
read_us = (time.process_time() - start) / n * 1e6
del held
held, _ = traced(store)
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for env in held.records.values():
    env.body
gc.collect()
read = in_store + (tracemalloc.get_traced_memory()[0] - before) / n
tracemalloc.stop()
datas = [t.encode() for t in texts]
best = float("inf")
for _ in range(3):
    s = RecordStore(trust)
    start = time.process_time()
    for d in datas:
        s.offer(d, now)
    best = min(best, time.process_time() - start)
print(json.dumps({
    "raw B": raw, "store B": in_store, "read B": read,
    "offer us": best / n * 1e6, "read us": read_us,
}))
"""


def build_records(nodes: int) -> dict[str, object]:
    """Records as `bench/relay_sim.py` signs them: five neighbours, every measurement set."""
    sys.path.insert(0, str(ROOT))
    from meshd.codec import sign_record
    from meshd.ids import SigningKey
    from meshd.records import (
        Body,
        LinksBody,
        MeshConfig,
        NeighbourCounters,
        NodeBody,
        TrafficBody,
    )
    from meshd.trust import Enrollment

    rng = random.Random(1)
    admin = SigningKey(bytes(32))
    keys = [SigningKey(i.to_bytes(32, "big")) for i in range(1, nodes + 1)]
    records: list[str] = []
    for i, key in enumerate(keys):
        cert = Enrollment.issue(
            admin, community="bench", hostname=f"n{i}", key=key.public, expires=NOW + 86400
        )
        peers = sorted(keys[(i + d) % nodes].node_id for d in (-2, -1, 1, 2, 3))
        links = tuple(measured_link(p, rng) for p in peers)
        up = 10**6 + i
        counters = tuple(
            NeighbourCounters(p, "mesh0", up * 9_000, up * 7_000, up * 9, up * 7) for p in peers
        )
        bodies: tuple[Body, ...] = (
            NodeBody(
                f"n{i}",
                "TP-Link Archer C7 v5",
                "mutualmesh 0.1.0",
                (f"10.42.{i // 256}.{i % 256}", "fd42::1"),
                config=MeshConfig("bench-mesh", "babel", {"2g": 1, "5g": 36}),
            ),
            LinksBody(links),
            TrafficBody(
                f"boot-{i:08x}", up, NOW - 86400, counters, up * 31_000, up * 29, up * 5_000
            ),
        )
        for seq, body in enumerate(bodies, 1):
            env = sign_record(key, cert, body, seq=seq, issued_at=NOW, ttl_s=3600)
            records.append(env.raw.decode())
    return {"community": "bench", "admin": admin.public.text, "now": NOW, "records": records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="main", help="git ref of the baseline core")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="children per version, alternating")
    args = parser.parse_args()
    spec = build_records(args.nodes)
    before, after = best_of_both(CHILD, ROOT, args.baseline, spec, args.rounds)
    n = len(spec["records"])  # type: ignore[arg-type]
    print(f"{n} records of {args.nodes} nodes; per record (best of {args.rounds} children each)")
    print(f"{'':<10}{args.baseline:>12}{'this tree':>12}{'ratio':>8}")
    for name in before:
        print(
            f"{name:<10}{before[name]:>12.0f}{after[name]:>12.0f}{before[name] / after[name]:>8.2f}"
        )
    for name in ("store B", "read B"):
        print(
            f"{name[:-2]} at 1,000 nodes (3,000 records): {before[name] * 3000 / 1e6:.1f} MB"
            f" -> {after[name] * 3000 / 1e6:.1f} MB (target <= 6 MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
