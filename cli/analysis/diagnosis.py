"""Explain a path: per-hop metrics, the weakest hop, likely causes in plain words, next steps."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from meshd import advice
from meshd.advice import Reason
from meshd.graph import shortest_path
from meshd.topology import LinkState, MeshView

#: Each reason of `meshd.advice` in an admin's words (the members' page has its own).
ADMIN_WORDS: advice.Words = {
    Reason.ONE_WAY_LOSS: lambda c, name: (
        f"loss only one way ({c.value:.0%} from {name(c.worse)} to {name(c.better)}, "
        f"{c.other:.0%} back): interference near the receiver, or unequal transmit power"
    ),
    Reason.LOSS_BOTH_WAYS: lambda c, _: (
        f"{c.value:.0%} loss both ways: weak or obstructed radio path"
    ),
    Reason.LOW_SIGNAL: lambda c, name: (
        f"low signal at {name(c.worse)} ({c.value:g} dBm): antennas, distance or obstacles"
    ),
    Reason.CONGESTED: lambda c, _: (
        f"high RTT ({c.value:.0f} ms) with little loss: congestion or bufferbloat"
    ),
    Reason.FLAPPING: lambda c, _: "the link flaps, so the route changes: check power and cabling",
    Reason.ONE_SIDED: lambda c, _: (
        "only one end reports the link: a firewall or a one-way radio path"
    ),
    Reason.TUNNEL: lambda c, _: "a tunnel hop (tap): its MTU is smaller; probe with --mtu",
    Reason.DOWN: None,  # a path never crosses a link that is down
}


@dataclass(frozen=True)
class Hop(advice.Hop):
    """A hop of the path with babel's cost and its causes in an admin's words."""

    cost: int = 0
    causes: list[str] = field(default_factory=list)

    def badness(self) -> float:
        return (
            self.worst_loss * 10 + self.cost / 256 + (5 if self.state is not LinkState.GOOD else 0)
        )


@dataclass
class Diagnosis:
    a: str
    b: str
    path: list[str] | None
    hops: list[Hop]
    weakest: Hop | None
    causes: list[str]
    next_steps: list[str]


def diagnose(view: MeshView, a: str, b: str) -> Diagnosis:
    name = view.name
    path = shortest_path(view.adjacency, a, b)
    if path is None:
        return Diagnosis(
            a,
            b,
            None,
            [],
            None,
            [f"there is no path between {name(a)} and {name(b)}: the mesh is split"],
            ["run `mutualmesh audit` to see the partition and where it was attached"],
        )
    hops = []
    for x, y in itertools.pairwise(path):
        link = view.link(x, y)
        assert link is not None
        out, back = (link.ab, link.ba) if link.a == x else (link.ba, link.ab)
        hop = Hop(x, y, out, back, link.state, link.cost)
        hop.causes.extend(advice.worded(advice.causes(hop), ADMIN_WORDS, view.name))
        hops.append(hop)
    weakest = max(hops, key=lambda h: h.badness()) if hops else None
    causes = [c for h in hops for c in h.causes]
    steps = []
    if weakest is not None and weakest.causes:
        steps.append(
            f"start with the hop {name(weakest.src)} → {name(weakest.dst)}: "
            + "; ".join(weakest.causes)
        )
        steps.append(
            f"run `mutualmesh links --node {name(weakest.src)}` to compare its other links"
        )
        steps.append(
            f"probe the path MTU and route: `mutualmesh diagnose {name(a)} {name(b)} --mtu --trace`"
        )
    elif hops:
        steps.append(
            "the path looks healthy from the records; if users still complain, probe "
            "it live with --mtu and --trace"
        )
    return Diagnosis(a, b, path, hops, weakest, causes, steps)


def diagnosis_json(view: MeshView, d: Diagnosis) -> dict[str, Any]:
    name = view.name
    return {
        "from": name(d.a),
        "to": name(d.b),
        "path": None if d.path is None else [name(n) for n in d.path],
        "hops": [
            {
                "from": name(h.src),
                "to": name(h.dst),
                "state": h.state.value,
                "cost": h.cost,
                "loss_out": h.out.loss,
                "loss_back": h.back.loss,
                "rtt_ms": h.out.rtt_ms,
                "etx": h.out.etx,
                "signal_dbm": h.out.signal_dbm,
                "causes": h.causes,
            }
            for h in d.hops
        ],
        "weakest": None if d.weakest is None else [name(d.weakest.src), name(d.weakest.dst)],
        "causes": d.causes,
        "next_steps": d.next_steps,
    }
