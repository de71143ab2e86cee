"""What the members' page costs a router: time per endpoint and the memory of the first view.

Baseline, measured in the same run: `MeshView.build` over the same store (what any reader of
the records pays anyway). Prints each endpoint's time as a ratio of it, for a community of
`--nodes` routers, and the RSS the page adds: at import (the agent's start) and after the first
view of every endpoint.

    .venv/bin/python bench/members_api.py [--nodes 300]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def best_of(fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=300)
    n = ap.parse_args().nodes
    from devkit.meshgen import SyntheticMesh
    from meshd.community import parse_community

    mesh = SyntheticMesh.random(n, int(n * 1.6))
    store = mesh.store()
    records = list(store)
    community = parse_community(mesh.community_data())
    import asyncio  # noqa: F401  (the agent has these loaded before it wires the page)

    from node_agent import build, system  # noqa: F401

    before = rss_kb()
    from node_agent import members  # what the agent imports at start

    at_import = rss_kb() - before
    from meshd.topology import MeshView

    base = best_of(lambda: MeshView.build(records, mesh.now))
    me = next(iter(mesh.nodes.values())).node_id
    site = members.Site(lambda: records, me, community, status=dict, metrics=str, cache_s=0)
    paths = ["/api/node", "/api/nodes", "/api/contrib", "/api/map", "/api/audit",
             "/meshviewer.json", "/netjson"]  # fmt: skip
    pre = rss_kb()
    for p in paths:
        site.respond("GET", p, mesh.now)
    first_view = rss_kb() - pre
    print(f"{n} nodes, {len(records)} records; baseline MeshView.build {base * 1000:.1f} ms")
    for p in paths:
        t = best_of(lambda p=p: site.respond("GET", p, mesh.now))  # type: ignore[misc]
        size = len(site.respond("GET", p, mesh.now).body)
        print(f"  {p:18} {t * 1000:8.1f} ms  {t / base:6.2f}x baseline  {size / 1024:7.1f} KiB")
    print(f"RSS added: {at_import} kB at import, {first_view} kB by the first view of all")


if __name__ == "__main__":
    main()
