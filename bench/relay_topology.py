"""Topologies for the relay simulation: random geometric graphs, chains, grids.

A random geometric graph is how a neighbourhood mesh looks: routers link to those within
radio range. Used by `bench/relay_sim.py`, `bench/relay_scale.py` and the simulation test.
"""

from __future__ import annotations

import math
import random

Graph = dict[int, set[int]]


def geometric(n: int, degree: float, rng: random.Random) -> tuple[Graph, list[tuple[float, float]]]:
    """Random geometric graph in the unit square with the given mean degree, made connected by
    joining each stray component to its nearest node (as a community would add a link)."""
    pos = [(rng.random(), rng.random()) for _ in range(n)]
    radius = math.sqrt(degree / (math.pi * n))
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(pos):
        cells.setdefault((int(x / radius), int(y / radius)), []).append(i)
    g: Graph = {i: set() for i in range(n)}
    for i, (x, y) in enumerate(pos):
        cx, cy = int(x / radius), int(y / radius)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for j in cells.get((cx + dx, cy + dy), ()):
                    if j > i and (pos[j][0] - x) ** 2 + (pos[j][1] - y) ** 2 <= radius**2:
                        g[i].add(j)
                        g[j].add(i)
    comps = components(g)
    main = max(comps, key=len)
    for comp in comps:
        if comp is main:
            continue
        a, b = min(
            ((a, b) for a in comp for b in main),
            key=lambda p: (pos[p[0]][0] - pos[p[1]][0]) ** 2 + (pos[p[0]][1] - pos[p[1]][1]) ** 2,
        )
        g[a].add(b)
        g[b].add(a)
        main |= comp
    return g, pos


def chain(n: int) -> Graph:
    return {i: {j for j in (i - 1, i + 1) if 0 <= j < n} for i in range(n)}


def grid(w: int, h: int) -> Graph:
    g: Graph = {}
    for y in range(h):
        for x in range(w):
            i = y * w + x
            g[i] = {y * w + x + d for d in (-1, 1) if 0 <= x + d < w} | {
                (y + d) * w + x for d in (-1, 1) if 0 <= y + d < h
            }
    return g


def components(g: Graph) -> list[set[int]]:
    seen: set[int] = set()
    out = []
    for start in g:
        if start in seen:
            continue
        comp, todo = {start}, [start]
        while todo:
            for j in g[todo.pop()]:
                if j not in comp:
                    comp.add(j)
                    todo.append(j)
        seen |= comp
        out.append(comp)
    return out
