"""Relay traffic per node at community scale, today's protocol against docs/protocol.md §8.

Both protocols run in the same process on the same random geometric graph (mean degree 5),
keys and record bodies, over an in-memory bus in simulated time (`bench/relay_sim.py`), with
the store and relay code of the agent. Per size it prints, per node (mean / p95): messages/s and
kbit/s in and out, decode and signature checks/s and the CPU they cost (per-call cost measured
in this run), records held and their memory, the time for a new record to reach every node, and
the time for every node to hold every newest record after a partition is healed.

    .venv/bin/python bench/relay_scale.py                      # N = 100, 300, 1000
    .venv/bin/python bench/relay_scale.py --sizes 100 --topology chain

Targets at N = 1000 (issue 12): <= 20 msgs/s, <= 64 kbit/s, reach <= 10 s, decode+verify
<= 2 % of a core, records <= 6 MB, heal <= 5 s.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.relay_counting import Costs, calibrate, counting
from bench.relay_sim import Sim
from bench.relay_topology import Graph, chain, geometric, grid


def p95(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def topology(kind: str, n: int, seed: int) -> tuple[Graph, list[tuple[int, int]]]:
    """The graph and the links to cut to split it in two halves."""
    if kind == "chain":
        g = chain(n)
        return g, [(n // 2 - 1, n // 2)]
    if kind == "grid":
        w = max(2, round(math.sqrt(n)))
        g = grid(w, max(1, n // w))
        return g, [(i, j) for i in g for j in g[i] if i % w == w // 2 - 1 and j == i + 1]
    g, pos = geometric(n, 5.0, random.Random(seed))
    return g, [(i, j) for i in g for j in g[i] if i < j and (pos[i][0] < 0.5) != (pos[j][0] < 0.5)]


def scenario(
    graph: Graph,
    cut: list[tuple[int, int]],
    protocol: str,
    *,
    window: float,
    warmup: float,
    partition: float,
    loss: float,
    seed: int,
    heal_limit: float,
) -> tuple[Sim, dict[str, float]]:
    sim = Sim(graph, protocol, seed=seed, loss=loss)
    sim.start()
    sim.run(warmup)
    sim.reset_stats()
    sim.tracker.measuring = True
    sim.run(warmup + window)
    sim.tracker.measuring = False
    n = len(sim.nodes)
    stats = [node.stats for node in sim.nodes]
    out: dict[str, float] = {}
    for name, values in (
        ("msgs_in", [s.msgs_in / window for s in stats]),
        ("msgs_out", [s.msgs_out / window for s in stats]),
        ("kbit_in", [s.bytes_in * 8 / 1000 / window for s in stats]),
        ("kbit_out", [s.bytes_out * 8 / 1000 / window for s in stats]),
        ("decodes", [s.decodes / window for s in stats]),
        ("verifies", [s.verifies / window for s in stats]),
        ("held", [float(len(node.relay.store)) for node in sim.nodes]),
    ):
        out[name] = statistics.fmean(values)
        out[name + "_p95"] = p95(values)
    reach = sim.tracker.reach_times
    out["reach"] = statistics.fmean(reach) if reach else math.nan
    out["reach_p95"] = p95(reach)
    out["reach_max"] = max(reach) if reach else math.nan
    out["unreached"] = float(len(sim.tracker.spread))
    start = sim.now
    sim.cut(cut)
    sim.run(start + partition)
    restored = sim.now
    sim.restore(cut)
    sim.expect_heal()
    deadline = restored + heal_limit
    while sim.tracker.healed_at is None and sim.now < deadline:
        sim.run(sim.now + 0.1)
    healed = sim.tracker.healed_at
    out["heal"] = math.nan if healed is None else healed - restored
    out["regressions"] = float(sim.tracker.regressions)
    drops = [sum(getattr(node.relay, "drops", {}).values()) for node in sim.nodes]
    out["drops"] = statistics.fmean(drops)
    out["triaged"] = statistics.fmean(sum(node.relay.store.triaged.values()) for node in sim.nodes)
    out["n"] = float(n)
    return sim, out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--topology", choices=("geometric", "chain", "grid"), default="geometric")
    ap.add_argument("--window", type=float, default=300.0, help="measured seconds, new protocol")
    ap.add_argument(
        "--old-window", type=float, default=0.0, help="measured seconds, old (default: by size)"
    )
    ap.add_argument(
        "--partition", type=float, default=0.0, help="seconds cut in two (default: by size)"
    )
    ap.add_argument("--heal-limit", type=float, default=20.0, help="give up healing after (s)")
    ap.add_argument("--protocols", nargs="+", choices=("old", "new"), default=["old", "new"])
    ap.add_argument("--loss", type=float, default=0.0, help="message loss probability")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if any(n < 4 for n in args.sizes) or args.window <= 0 or not 0 <= args.loss < 1:
        ap.error("sizes must be >= 4, --window > 0 and 0 <= --loss < 1")
    rows = []
    costs: Costs | None = None
    with counting():
        for n in args.sizes:
            graph, cut = topology(args.topology, n, args.seed)
            degree = sum(len(v) for v in graph.values()) / len(graph)
            for protocol in args.protocols:
                old_window = args.old_window or (60.0 if n <= 300 else 5.0)
                t0 = time.perf_counter()
                sim, row = scenario(
                    graph,
                    cut,
                    protocol,
                    window=args.window if protocol == "new" else old_window,
                    warmup=30.0 if protocol == "new" else 2.0,
                    partition=args.partition or (30.0 if n <= 300 else 5.0),
                    loss=args.loss,
                    seed=args.seed,
                    heal_limit=args.heal_limit,
                )
                if costs is None:
                    costs = calibrate(e.raw for e in sim.nodes[0].relay.store.records.values())
                    print_head(costs, args)
                row["wall"] = time.perf_counter() - t0
                row["degree"] = degree
                row["cut"] = float(len(cut))
                rows.append((protocol, row))
                print_row(protocol, row, costs)
    assert costs is not None
    print_ratios(rows, args)
    return 0


HEAD = (
    "N     proto  deg  msg/s in  out   kbit/s in   out     dec/s  ver/s  cpu%      "
    "held  MB    reach s mean/p95/max  heal s  drops  wall s"
)


def print_head(costs: Costs, args: argparse.Namespace) -> None:
    print(
        f"topology {args.topology}, loss {args.loss:.0%}; one decode {costs.decode_s * 1e6:.0f} us,"
        f" one verify {costs.verify_s * 1e6:.0f} us, {costs.bytes_per_record / 1000:.1f} kB per"
        " held record (all measured in this run); per node: mean/p95"
    )
    print(HEAD)
    print("-" * len(HEAD), flush=True)


def print_row(protocol: str, r: dict[str, float], costs: Costs) -> None:
    cpu = r["decodes"] * costs.decode_s + r["verifies"] * costs.verify_s
    cpu95 = r["decodes_p95"] * costs.decode_s + r["verifies_p95"] * costs.verify_s
    mb = r["held"] * costs.bytes_per_record / 1e6
    print(
        f"{r['n']:<5.0f} {protocol:<5} {r['degree']:4.1f} "
        f"{r['msgs_in']:6.1f}/{r['msgs_in_p95']:<5.0f} {r['msgs_out']:5.1f} "
        f"{r['kbit_in']:7.1f}/{r['kbit_in_p95']:<6.0f} {r['kbit_out']:6.1f} "
        f"{r['decodes']:7.1f} {r['verifies']:6.1f} {100 * cpu:5.2f}/{100 * cpu95:<5.2f} "
        f"{r['held']:5.0f} {mb:4.1f}  "
        f"{r['reach']:6.2f}/{r['reach_p95']:5.2f}/{r['reach_max']:5.2f} "
        f"{r['heal']:7.2f} {r['drops']:6.0f} {r['wall']:6.0f}",
        flush=True,
    )


def print_ratios(rows: list[tuple[str, dict[str, float]]], args: argparse.Namespace) -> None:
    old = f"{args.old_window:.0f} s" if args.old_window else "60 s (N <= 300) or 5 s"
    print(
        f"measured: new {args.window:.0f} s after 30 s warm-up, old {old} (its rates are steady"
        f" from the start); heal: s after links return (nan: not within {args.heal_limit:.0f} s);"
        " drops: refused per node for other reasons than duplicate/stale (rate limit, ...)"
    )
    by_n: dict[float, dict[str, dict[str, float]]] = {}
    for protocol, r in rows:
        by_n.setdefault(r["n"], {})[protocol] = r
    for n, pair in by_n.items():
        if "old" in pair and "new" in pair:
            o, w = pair["old"], pair["new"]
            print(
                f"N={n:.0f}: new/old messages in {w['msgs_in'] / o['msgs_in']:.3f}, "
                f"kbit in {w['kbit_in'] / o['kbit_in']:.3f}, "
                f"decodes {w['decodes'] / max(o['decodes'], 1e-9):.3f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
