"""Graph maths the audit needs, over an adjacency (node -> {neighbour: cost}, undirected).

Pure Python on purpose: every node holds the whole picture, so a router may one day run the same
audit, and routers cannot carry networkx (tens of MB resident) or rustworkx wheels. All algorithms
here are linear (components, articulation points, bridges) or bounded by sampling (betweenness),
which keeps a 10,000-node audit within seconds on one core.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

Adjacency = Mapping[str, Mapping[str, int]]


def components(adj: Adjacency) -> list[list[str]]:
    """Connected components, largest first (ties by smallest member)."""
    seen: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(adj):
        if start in seen:
            continue
        seen.add(start)
        stack, comp = [start], []
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in adj[x]:
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        out.append(sorted(comp))
    out.sort(key=lambda c: (-len(c), c[0]))
    return out


@dataclass(frozen=True, slots=True)
class CutPoints:
    """Single points of failure: how many nodes each one would cut off (the smaller side)."""

    points: dict[str, int]  # articulation point -> nodes separated from the larger part
    bridges: dict[tuple[str, str], int]  # link a < b -> nodes on its smaller side


def cut_points(adj: Adjacency) -> CutPoints:
    """Articulation points and bridges in one iterative Tarjan pass, O(V + E)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    size: dict[str, int] = {}
    cut_off: dict[str, list[int]] = {}
    bridge_sides: dict[tuple[str, str], int] = {}
    points: dict[str, int] = {}
    counter = 0
    for root in sorted(adj):
        if root in index:
            continue
        comp_bridges: dict[tuple[str, str], int] = {}
        cut_off = {}
        index[root] = low[root] = counter
        counter += 1
        comp_start = counter - 1
        root_children: list[int] = []
        stack: list[tuple[str, str | None, Iterator[str]]] = [(root, None, iter(adj[root]))]
        size[root] = 1
        while stack:
            node, parent, it = stack[-1]
            advanced = False
            for nxt in it:
                if nxt == parent:
                    continue
                if nxt in index:
                    if index[nxt] < low[node]:
                        low[node] = index[nxt]
                    continue
                index[nxt] = low[nxt] = counter
                counter += 1
                size[nxt] = 1
                stack.append((nxt, node, iter(adj[nxt])))
                advanced = True
                break
            if advanced:
                continue
            stack.pop()
            if parent is None:
                continue
            size[parent] += size[node]
            if low[node] < low[parent]:
                low[parent] = low[node]
            if low[node] > index[parent]:
                key = (parent, node) if parent < node else (node, parent)
                comp_bridges[key] = size[node]
            if parent == root:
                root_children.append(size[node])
            elif low[node] >= index[parent]:
                cut_off.setdefault(parent, []).append(size[node])
        total = counter - comp_start
        for bridge, side in comp_bridges.items():
            bridge_sides[bridge] = min(side, total - side)
        for node, parts in cut_off.items():
            rest = total - 1 - sum(parts)
            points[node] = sum(sorted([*parts, rest])[:-1])
        if len(root_children) > 1:
            points[root] = sum(sorted(root_children)[:-1])
    return CutPoints(points, bridge_sides)


def dijkstra(adj: Adjacency, source: str) -> tuple[dict[str, int], dict[str, str]]:
    """Least-cost distances and one predecessor per node (ties broken by node id)."""
    dist = {source: 0}
    pred: dict[str, str] = {}
    heap = [(0, source)]
    done: set[str] = set()
    while heap:
        d, x = heapq.heappop(heap)
        if x in done:
            continue
        done.add(x)
        for y, w in adj[x].items():
            nd = d + w
            old = dist.get(y)
            if old is None or nd < old or (nd == old and x < pred.get(y, x)):
                dist[y] = nd
                pred[y] = x
                heapq.heappush(heap, (nd, y))
    return dist, pred


def shortest_path(adj: Adjacency, a: str, b: str) -> list[str] | None:
    """The least-cost path a .. b as babel would pick it from these costs, or None."""
    if a not in adj or b not in adj:
        return None
    _, pred = dijkstra(adj, a)
    if a != b and b not in pred:
        return None
    path = [b]
    while path[-1] != a:
        path.append(pred[path[-1]])
    return path[::-1]


@dataclass(frozen=True, slots=True)
class Betweenness:
    """Share of shortest paths through each node; `sources` < nodes means it was sampled."""

    share: dict[str, float]
    sources: int
    nodes: int

    @property
    def exact(self) -> bool:
        return self.sources >= self.nodes

    def top(self) -> tuple[str, float] | None:
        if not self.share:
            return None
        node = max(self.share, key=lambda n: (self.share[n], n))
        return node, self.share[node]


BETWEENNESS_BUDGET = 600_000  # edge relaxations: about half a second of pure Python
MIN_SOURCES = 16


def source_count(nodes: int, edges: int, budget: int = BETWEENNESS_BUDGET) -> int:
    """How many Brandes sources fit the budget: all of them on small meshes (exact), at least
    MIN_SOURCES on large ones (sampled)."""
    return min(nodes, max(MIN_SOURCES, budget // max(1, nodes + 2 * edges)))


def betweenness(adj: Adjacency, *, max_sources: int | None = None, seed: int = 0) -> Betweenness:
    """Brandes' weighted betweenness, exact up to `max_sources` nodes, else sampled sources.

    Without `max_sources` the number of sources follows `source_count`.

    The share of a node is the fraction of shortest paths between *other* pairs of the same
    component that pass through it (1.0 = every path). Sampling picks sources spread evenly over
    the node-id order (deterministic, so two runs agree); the estimate is unbiased.
    """
    nodes = sorted(adj)
    n = len(nodes)
    if max_sources is None:
        max_sources = source_count(n, sum(len(x) for x in adj.values()) // 2)
    if n < 3:
        return Betweenness(dict.fromkeys(nodes, 0.0), n, n)
    if n <= max_sources:
        sources = nodes
    else:
        step = n / max_sources
        offset = seed % max(1, int(step))
        sources = [nodes[min(n - 1, int(i * step) + offset)] for i in range(max_sources)]
    comp_size: dict[str, int] = {}
    for comp in components(adj):
        for x in comp:
            comp_size[x] = len(comp)
    # Integer ids and flat lists: the inner loops below run a few hundred thousand times, and
    # list indexing is several times cheaper than hashing node-id strings.
    index = {x: i for i, x in enumerate(nodes)}
    nbrs = [[(index[y], max(1, c)) for y, c in adj[x].items()] for x in nodes]
    score = [0.0] * n
    no_preds: list[int] = []
    unreached = sum(c for x in nbrs for _, c in x) + 1  # longer than any path
    for s in (index[x] for x in sources):
        order: list[int] = []
        preds: list[list[int]] = [no_preds] * n  # replaced, never appended to, before use
        sigma = [0] * n
        sigma[s] = 1
        final = [False] * n
        seen = [unreached] * n  # tentative distances
        seen[s] = 0
        heap: list[tuple[int, int, int]] = [(0, s, s)]
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            d, v, via = pop(heap)
            if final[v]:
                continue
            if v != s:
                sigma[v] += sigma[via]
            order.append(v)
            final[v] = True
            sv = sigma[v]
            for w, cost in nbrs[v]:
                if final[w]:
                    continue
                nd = d + cost
                old = seen[w]
                if nd < old:
                    seen[w] = nd
                    push(heap, (nd, w, v))
                    sigma[w] = 0
                    preds[w] = [v]
                elif nd == old:
                    sigma[w] += sv
                    preds[w].append(v)
        delta = [0.0] * n
        for w in reversed(order):
            coeff = (1.0 + delta[w]) / sigma[w]
            for v in preds[w]:
                delta[v] += sigma[v] * coeff
            if w != s:
                score[w] += delta[w]
    scale = n / len(sources)
    share: dict[str, float] = {}
    for x in nodes:
        k = comp_size[x]
        pairs = (k - 1) * (k - 2)  # ordered pairs of other nodes in the component
        share[x] = min(1.0, score[index[x]] * scale / pairs) if pairs > 0 else 0.0
    return Betweenness(share, len(sources), n)


def gini(values: Iterable[float]) -> float:
    """Gini coefficient: 0 = everybody carries the same, 1 = one node carries everything."""
    xs = sorted(max(0.0, float(v)) for v in values)
    n = len(xs)
    total = sum(xs)
    if n < 2 or total <= 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * weighted) / (n * total) - (n + 1) / n
