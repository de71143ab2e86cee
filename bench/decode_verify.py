"""Decode + verify cost per record: this tree's meshd against a baseline git ref, same run.

The records (300 nodes x node/links/traffic, signed by this tree's core; the wire format is the
same in both) are written once; then a child process per core version, each importing only its
own `meshd`, offers them to `RecordStore.offer`:

- new: every record once into an empty store (full decode, certificate and signature check;
  the baseline's caches were process-wide, so its certificate parses stay warm across stores);
- newer: every record once into a store holding each node's previous records (the steady
  state of a node: caches warm, every record new);
- flood x5: the same, each record five times, as a node with five neighbours receives it (the
  first copy is new, the others are duplicates: what the header triage saves);
- held: every record once more into a store that already holds them all (nothing new).

Prints CPU microseconds per offered message for both and the ratio baseline/this (above 1 = faster
now). Best of --repeats passes in each of --rounds children per version, run alternately.

Run: .venv/bin/python bench/decode_verify.py [--baseline REF] [--nodes 300] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchkit import best_of_both  # noqa: E402

NOW = 1_800_000_000
BEFORE_TRIAGE = "ff91be7"  # the core before the header triage and store-owned caches (issue 9)

CHILD = r"""
import json, sys, time
from meshd.ids import PublicKey
from meshd.store import RecordStore
from meshd.trust import Trust

spec = json.load(open(sys.argv[1]))
older = [r.encode() for r in spec["older"]]
records = [r.encode() for r in spec["records"]]
trust = Trust(spec["community"], frozenset({PublicKey.from_text(spec["admin"])}), 1)
now, repeats = spec["now"], spec["repeats"]


def offer_all(store, items):
    for data in items:
        try:
            store.offer(data, now)
        except Exception:
            pass


def timed(setup, items):
    best = float("inf")
    for _ in range(repeats):
        store = setup()
        start = time.process_time()  # CPU time: other work on the machine counts less
        offer_all(store, items)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def holding(items):
    def setup():
        store = RecordStore(trust)
        offer_all(store, items)
        return store
    return setup


flood = [r for r in records for _ in range(5)]
print(json.dumps({
    "new": timed(lambda: RecordStore(trust), records),
    "newer": timed(holding(older), records),
    "flood x5": timed(holding(older), flood),
    "held": timed(holding(records), records),
}))
"""


def build_records(nodes: int) -> dict[str, object]:
    sys.path.insert(0, str(ROOT))
    from meshd.codec import sign_record
    from meshd.ids import SigningKey
    from meshd.records import (
        Body,
        LinkEntry,
        LinksBody,
        NeighbourCounters,
        NodeBody,
        TrafficBody,
    )
    from meshd.trust import Enrollment

    admin = SigningKey(bytes(32))
    keys = [SigningKey(i.to_bytes(32, "big")) for i in range(1, nodes + 1)]
    older: list[str] = []
    records: list[str] = []
    for i, key in enumerate(keys):
        cert = Enrollment.issue(
            admin, community="bench", hostname=f"n{i}", key=key.public, expires=NOW + 86400
        )
        peers = [keys[(i + d) % nodes].node_id for d in (1, 2, 3, 4)]
        links = tuple(LinkEntry(p, "mesh0", "wifi", True, 256, 256, 1.5, 0.99) for p in peers)
        counters = tuple(NeighbourCounters(p, "mesh0", 1, 2, 3, 4) for p in peers)
        bodies: tuple[Body, ...] = (
            NodeBody(f"n{i}", "model", "mutualmesh", ("10.42.0.1",)),
            LinksBody(links),
            TrafficBody("b", 1, NOW, counters),
        )
        for seq, body in enumerate(bodies, 1):
            for generation, kept in ((0, older), (3, records)):
                env = sign_record(key, cert, body, seq=seq + generation, issued_at=NOW, ttl_s=600)
                kept.append(env.raw.decode())
    return {
        "community": "bench",
        "admin": admin.public.text,
        "now": NOW,
        "older": older,
        "records": records,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--baseline",
        default=BEFORE_TRIAGE,
        help="git ref of the baseline core (default: %(default)s)",
    )
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per child")
    parser.add_argument("--rounds", type=int, default=3, help="children per version, alternating")
    args = parser.parse_args()
    spec = {**build_records(args.nodes), "repeats": args.repeats}
    before, after = best_of_both(CHILD, ROOT, args.baseline, spec, args.rounds)
    n = len(spec["records"])
    runs = args.repeats * args.rounds
    print(f"{n} records; microseconds per offered message (best of {runs})")
    print(f"{'scenario':<10}{args.baseline:>12}{'this tree':>12}{'ratio':>8}")
    for name in before:
        print(
            f"{name:<10}{before[name]:>12.1f}{after[name]:>12.1f}{before[name] / after[name]:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
