"""The JSON bodies behind the members' page (`/api/*`), built from the node's verified store.

Written for a member with a phone, not an admin: link quality in words and a colour, what to
try when a link is bad, contribution marks with a legend, audit findings in plain language and
who holds power over the mesh. Pure: a `MeshView` (and what the core computed from it) in,
JSON-ready dicts out; the agent's HTTP edge serves them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshd import advice as rules
from meshd import defaults
from meshd.advice import LOW_SIGNAL_DBM, WEAK_LOSS, Reason
from meshd.audit import AuditResult
from meshd.contrib import Contribution, Figure
from meshd.topology import Direction, Link, LinkState, MeshView, NodeView

# Three words a member can act on, and their colours (the page uses the same).
QUALITY_COLOUR = {"good": "#2e7d32", "lossy": "#f9a825", "weak": "#c62828", "down": "#9e9e9e"}
QUALITY_OF_STATE = {
    LinkState.GOOD: "good",
    LinkState.LOSSY: "lossy",
    LinkState.ASYMMETRIC: "lossy",
    LinkState.FLAPPING: "weak",
    LinkState.ONE_SIDED: "weak",
    LinkState.DOWN: "down",
}
QUALITY_WORDS = {
    "good": "Good: little loss, both ends agree.",
    "lossy": "Lossy: some packets are lost; pages load slower and calls break up.",
    "weak": "Weak: the link drops out or only one end hears the other.",
    "down": "Down: no traffic passes.",
}
WIRED = {"tap": "tunnel", "ethernet": "cable", "veth": "virtual cable"}
WIRED_FIX = {"tap": "the tunnel's own uplink may be congested; "}

# Contribution marks. The contrib engine decides which states exist; unknown ones still show.
MARKS: dict[str, tuple[str, str]] = {
    "verified": ("✔", "the neighbours' own counters back the figure up"),
    "pending": ("…", "not checked yet: the neighbours' records have not arrived"),
    "disputed": ("?", "neighbours disagree with each other about it"),
    "contradicted": ("✘", "the neighbours' counters make the figure impossible"),
    "unchecked": ("–", "no neighbour publishes counters about this node"),
}


def quality(link: Link) -> str:
    """good / lossy / weak / down: the state, made weak by heavy loss or a faint signal."""
    word = QUALITY_OF_STATE[link.state]
    signals = [s for s in (link.ab.signal_dbm, link.ba.signal_dbm) if s is not None]
    if word in ("good", "lossy") and (
        (link.worst_loss or 0.0) >= WEAK_LOSS or (signals and min(signals) <= LOW_SIGNAL_DBM)
    ):
        return "weak"
    return word


def advice(view: MeshView, link: Link) -> list[str]:
    """What to try: the reasons `mutualmesh diagnose` finds for a bad hop, in members' words."""
    hop = rules.Hop(link.a, link.b, link.ab, link.ba, link.state)
    return rules.worded(rules.causes(hop), MEMBER_WORDS, view.name)


def _lossy(c: rules.Cause, _: Callable[[str], str]) -> str:
    worst = f"{c.value:.0%} loss both ways"
    if c.medium == "wifi":
        return (
            f"{worst}: a weak or obstructed radio path. Raise the routers, clear the line of "
            "sight, or add a node between them."
        )
    return (
        f"{worst} on a {WIRED.get(c.medium, 'wired link')}: {WIRED_FIX.get(c.medium, '')}"
        "check the cable, the plugs and the switch port."
    )


#: Each reason of `meshd.advice` in a member's words (`mutualmesh diagnose` has its own).
MEMBER_WORDS: rules.Words = {
    Reason.ONE_WAY_LOSS: lambda c, name: (
        f"Loss only one way ({c.value:.0%} from {name(c.worse)} to {name(c.better)}): "
        f"interference near {name(c.better)}, or unequal transmit power. Try another channel "
        f"or move {name(c.better)}'s router."
    ),
    Reason.LOSS_BOTH_WAYS: _lossy,
    Reason.LOW_SIGNAL: lambda c, name: (
        f"Low signal at {name(c.worse)} ({c.value:g} dBm): check the antennas, the "
        "distance and walls or trees in between."
    ),
    Reason.CONGESTED: lambda c, _: (
        f"Slow ({c.value:.0f} ms) with little loss: the link is congested; try later."
    ),
    Reason.FLAPPING: lambda c, _: (
        "The link keeps going up and down: check the power supply and the cables."
    ),
    Reason.ONE_SIDED: lambda c, _: (
        "Only one end reports the link: a firewall, or a radio heard one way only."
    ),
    Reason.TUNNEL: None,  # members need no MTU talk; the loss or delay wording covers it
    Reason.DOWN: lambda c, _: "No traffic passes: is the other router switched on?",
}


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def node_state(view: MeshView, nv: NodeView) -> str:
    if nv.status == "offline":
        return "offline"
    if view.now - nv.last_seen > defaults.STALE_AFTER_S:
        return "offline"
    if not view.neighbours(nv.node_id) and len(view.nodes) > 1:
        return "isolated"
    return "online"


def _direction(d: Direction) -> dict[str, Any]:
    return {
        "loss": _r(d.loss),
        "etx": _r(d.etx),
        "rtt_ms": _r(d.rtt_ms),
        "signal_dbm": d.signal_dbm,
        "cost": d.cost,
    }


def link_json(view: MeshView, link: Link, me: str | None = None) -> dict[str, Any]:
    """One link; with `me`, seen from this node (`out` is what we send, `back` what we get)."""
    a, b = link.a, link.b
    out_d, back_d = link.ab, link.ba
    if me is not None and me == b:
        a, b, out_d, back_d = b, a, link.ba, link.ab
    word = quality(link)
    entry = out_d.entry or back_d.entry
    return {
        "from": view.name(a),
        "to": view.name(b),
        "to_id": b,
        "medium": entry.medium if entry else "other",
        "iface": out_d.entry.iface if out_d.entry else None,
        "quality": word,
        "colour": QUALITY_COLOUR[word],
        "words": QUALITY_WORDS[word],
        "state": link.state.value,
        "reason": link.reason,
        "cost": link.cost,
        "out": _direction(out_d),
        "back": _direction(back_d),
        "try": advice(view, link) if word != "good" else [],
    }


def node_api(view: MeshView, me: str, community: str = "") -> dict[str, Any]:
    """`/api/node`: this router and its links, worst first."""
    nv = view.nodes.get(me)
    links = [lk for lk in view.links.values() if me in (lk.a, lk.b)]
    links.sort(key=lambda lk: (-lk.badness(), view.name(lk.b if lk.a == me else lk.a)))
    traffic = nv.counters if nv else None
    return {
        "node_id": me,
        "hostname": view.name(me),
        "community": community,
        "time": int(view.now),
        "uptime_s": traffic.uptime_s if traffic else None,
        "gateway": bool(nv and nv.is_gateway),
        "links": [link_json(view, lk, me) for lk in links],
        "legend": QUALITY_WORDS,
        "colours": QUALITY_COLOUR,
    }


def nodes_api(view: MeshView) -> dict[str, Any]:
    """`/api/nodes`: every node of the community with its state."""
    rows: list[dict[str, Any]] = []
    for nv in sorted(view.nodes.values(), key=lambda n: n.hostname):
        info = nv.info
        rows.append(
            {
                "id": nv.node_id,
                "name": nv.hostname,
                "state": node_state(view, nv),
                "gateway": nv.is_gateway,
                "model": info.model if info else None,
                "software": info.software if info else None,
                "neighbours": len(view.neighbours(nv.node_id)),
                "age_s": max(0, round(view.now - nv.last_seen)) if nv.last_seen else None,
                "uptime_s": nv.counters.uptime_s if nv.counters else None,
            }
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {"time": int(view.now), "nodes": rows, "counts": counts}


def _figure(fig: Figure) -> dict[str, Any]:
    check = str(getattr(fig.check, "value", fig.check))
    mark = MARKS.get(check, ("·", check))[0]
    return {"value": fig.value, "check": check, "mark": mark, "evidence": fig.evidence}


def contrib_api(items: Sequence[Contribution], window_note: str = "") -> dict[str, Any]:
    """`/api/contrib`: the contribution table, each figure with its mark, and the legend of
    exactly the marks that appear (plus any state the contrib engine adds that we don't know)."""
    rows = []
    seen: set[str] = set()
    for c in sorted(items, key=lambda c: (-c.score, c.hostname)):
        figs = {
            "relayed_bytes": _figure(c.relayed),
            "gateway_bytes": _figure(c.gateway),
            "consumed_bytes": _figure(c.consumed),
            "uptime_s": _figure(c.uptime_s),
        }
        seen |= {f["check"] for f in figs.values()}
        rows.append(
            {
                "id": c.node_id,
                "name": c.hostname,
                **figs,
                "score": round(c.score, 4),
                "share": {k: round(v, 4) for k, v in c.share.items()},
                "verified": c.verified,
            }
        )
    legend = [
        {"check": s, "mark": MARKS.get(s, ("·", s))[0], "means": MARKS.get(s, ("", s))[1]}
        for s in [*MARKS, *sorted(seen - set(MARKS))]
        if s in seen
    ]
    return {"rows": rows, "legend": legend, "window": window_note}


def map_api(view: MeshView) -> dict[str, Any]:
    """`/api/map`: geographic when any node opted in to a location, else the page lays the
    graph out itself (force layout); gateways and weak links flagged."""
    nodes = []
    for nv in sorted(view.nodes.values(), key=lambda n: n.node_id):
        info = nv.info
        row: dict[str, Any] = {
            "id": nv.node_id,
            "name": nv.hostname,
            "state": node_state(view, nv),
            "gateway": nv.is_gateway,
        }
        if info is not None and info.location is not None:
            row["lat"], row["lon"] = info.location.lat, info.location.lon
        nodes.append(row)
    links = []
    for lk in sorted(view.links.values(), key=lambda x: (x.a, x.b)):
        word = quality(lk)
        entry = lk.ab.entry or lk.ba.entry
        links.append(
            {
                "a": lk.a,
                "b": lk.b,
                "quality": word,
                "colour": QUALITY_COLOUR[word],
                "medium": entry.medium if entry else "other",
                "loss": _r(lk.worst_loss),
            }
        )
    geo = any("lat" in n for n in nodes)
    return {"layout": "geo" if geo else "force", "nodes": nodes, "links": links}


def power_api(view: MeshView, result: AuditResult, items: Sequence[Contribution]) -> dict[str, Any]:
    """Who carries the paths, who holds the uplinks, who relays: the concentration of power."""
    share = result.betweenness.share
    paths = sorted(((s, n) for n, s in share.items() if s > 0), reverse=True)[:5]
    capacity = {
        n: nv.info.gateway_kbit for n, nv in view.nodes.items() if nv.info and nv.info.gateway_kbit
    }
    total = sum(capacity.values())
    uplinks = sorted(capacity.items(), key=lambda kv: (-kv[1], view.name(kv[0])))
    relayers = sorted(items, key=lambda c: -c.relayed.value)[:5]
    return {
        "paths": [
            {"name": view.name(n), "share": round(s, 4), "exact": result.betweenness.exact}
            for s, n in paths
        ],
        "uplinks": [
            {"name": view.name(n), "kbit": k, "share": round(k / total, 4)} for n, k in uplinks
        ],
        "relayers": [
            {"name": c.hostname, "share": round(c.share.get("relayed", 0.0), 4)}
            for c in relayers
            if c.relayed.value > 0
        ],
        "relay_gini": result.stats.get("relay_gini"),
    }


def audit_api(view: MeshView, result: AuditResult, items: Sequence[Contribution]) -> dict[str, Any]:
    """`/api/audit`: findings in plain language, most serious first, and the power picture."""
    return {
        "findings": [
            {
                "severity": f.severity.value,
                "subject": f.subject,
                "summary": f.summary,
                "why": f.explanation,
                "fix": f.fix,
            }
            for f in result.findings
        ],
        "parts": len(result.components),
        "power": power_api(view, result, items),
    }


def index(routes: Mapping[str, str]) -> dict[str, Any]:
    """`/api/`: what there is, so a curious member can find the raw data."""
    return {"endpoints": dict(routes), "version": defaults.VERSION}
