"""From a verified `Mesh` to contributions and audit findings, using the archive for history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cli.mesh import Archive, Mesh, paused_gc
from meshd import defaults
from meshd.audit import AuditInput, AuditPolicy, AuditResult, audit
from meshd.contrib import Contribution, Figure, contributions, regressions
from meshd.records import TrafficBody
from meshd.topology import Link, MeshView, NodeView


@dataclass
class Window:
    """The interval contribution figures cover; `baseline_at` None means since counting began."""

    since_s: int | None
    baseline_at: float | None
    note: str


def history(
    mesh: Mesh, archive_dir: str | None, since_s: int | None
) -> tuple[dict[str, TrafficBody], Window, dict[tuple[str, str], int]]:
    if archive_dir is None:
        note = "cumulative since each node began counting (no --archive for a window)"
        return {}, Window(since_s, None, note), {}
    arch = Archive(archive_dir)
    flaps = arch.link_flaps(mesh.community.name)
    if since_s is None:
        return {}, Window(None, None, "cumulative since each node began counting"), flaps
    target = mesh.now - since_s
    older = [s for s in arch.snapshots(mesh.community.name) if s[1] < mesh.now]
    base = None
    for snap in older:
        if snap[1] <= target:
            base = snap
    if base is None and older:
        base = older[0]
    if base is None:
        note = "no earlier snapshot in the archive: cumulative figures shown"
        return {}, Window(since_s, None, note), flaps
    traffic = arch.traffic(base[0], mesh.community.trust, base[1])
    span = mesh.now - base[1]
    note = f"over the last {span:.0f} s (archived snapshot)"
    if span + 1 < since_s:
        note += f"; the archive goes back only {span:.0f} s of the {since_s} s asked"
    return traffic, Window(since_s, base[1], note), flaps


def contributions_for(
    mesh: Mesh, archive_dir: str | None, since_s: int | None
) -> tuple[list[Contribution], Window, MeshView]:
    with paused_gc():
        return _contributions_for(mesh, archive_dir, since_s)


def _contributions_for(
    mesh: Mesh, archive_dir: str | None, since_s: int | None
) -> tuple[list[Contribution], Window, MeshView]:
    before, window, flaps = history(mesh, archive_dir, since_s)
    view = mesh.view(flaps)
    span = None if window.baseline_at is None else mesh.now - window.baseline_at
    items = contributions(view, before, window_s=span, policy=mesh.community.contribution)
    return items, window, view


def run_audit(
    mesh: Mesh, archive_dir: str | None, policy: AuditPolicy | None = None
) -> AuditResult:
    with paused_gc():
        return _run_audit(mesh, archive_dir, policy)


def _run_audit(mesh: Mesh, archive_dir: str | None, policy: AuditPolicy | None) -> AuditResult:
    previous: dict[str, TrafficBody] = {}
    previous_adjacency: dict[str, dict[str, int]] = {}
    flaps: dict[tuple[str, str], int] = {}
    if archive_dir is not None:
        arch = Archive(archive_dir)
        flaps = arch.link_flaps(mesh.community.name)
        older = [s for s in arch.snapshots(mesh.community.name) if s[1] < mesh.now]
        if older:
            snap, taken_at = older[-1]
            old_store = arch.load(snap, mesh.community.trust, taken_at)
            previous = {e.node_id: e.body for e in old_store if isinstance(e.body, TrafficBody)}
            previous_adjacency = MeshView.build(old_store, taken_at).adjacency
    view = mesh.view(flaps)
    items = contributions(view, None, policy=mesh.community.contribution)
    data = AuditInput(
        view,
        items,
        mesh.community,
        dict(mesh.rejections),
        sorted(mesh.store.revoked),
        regressions(mesh.traffic(), previous) if previous else [],
        previous_adjacency,
    )
    return audit(data, policy or AuditPolicy())


# -- JSON shapes ------------------------------------------------------------------------------


def node_json(view: MeshView, nv: NodeView) -> dict[str, Any]:
    info = nv.info
    traffic = nv.counters
    age = None if not nv.last_seen else max(0.0, view.now - nv.last_seen)
    return {
        "name": nv.hostname,
        "id": nv.node_id,
        "age_s": None if age is None else round(age),
        "software": info.software if info else None,
        "model": info.model if info else None,
        "gateway_kbit": info.gateway_kbit if info else None,
        "neighbours": [view.name(n) for n in view.neighbours(nv.node_id)],
        "uptime_s": traffic.uptime_s if traffic else None,
        "state": node_state(view, nv),
        "addresses": list(info.addresses) if info else [],
        "location": info.location.to_json() if info and info.location else None,
        "contact": info.contact if info else None,
        "config": info.config.to_json() if info and info.config else None,
        "records": {
            kind: {"seq": env.seq, "issued_at": env.issued_at, "expires_at": env.expires_at}
            for kind, env in (("node", nv.node), ("links", nv.links), ("traffic", nv.traffic))
            if env is not None
        },
    }


def node_state(view: MeshView, nv: NodeView, stale_after_s: int = defaults.STALE_AFTER_S) -> str:
    if nv.status == "offline":
        return "offline"
    if view.now - nv.last_seen > stale_after_s:
        return "stale"
    if not view.neighbours(nv.node_id) and len(view.nodes) > 1:
        return "isolated"
    return "online"


def direction_json(view: MeshView, d: Any) -> dict[str, Any]:
    return {
        "from": view.name(d.src),
        "to": view.name(d.dst),
        "reported": d.reported,
        "etx": d.etx,
        "loss": None if d.loss is None else round(d.loss, 4),
        "rtt_ms": d.rtt_ms,
        "cost": d.cost,
        "signal_dbm": d.signal_dbm,
        "bitrate_mbit": d.bitrate_mbit,
    }


def link_json(view: MeshView, link: Link) -> dict[str, Any]:
    return {
        "a": view.name(link.a),
        "b": view.name(link.b),
        "a_id": link.a,
        "b_id": link.b,
        "state": link.state.value,
        "reason": link.reason,
        "in_graph": link.in_graph,
        "cost": link.cost,
        "directions": [direction_json(view, link.ab), direction_json(view, link.ba)],
    }


def figure_json(fig: Figure) -> dict[str, Any]:
    return fig.to_json()


def contribution_json(c: Contribution) -> dict[str, Any]:
    return {
        "name": c.hostname,
        "id": c.node_id,
        "relayed_bytes": figure_json(c.relayed),
        "gateway_bytes": figure_json(c.gateway),
        "consumed_bytes": figure_json(c.consumed),
        "uptime_s": figure_json(c.uptime_s),
        "share": {k: round(v, 4) for k, v in c.share.items()},
        "score": round(c.score, 4),
        "verified": c.verified,
    }
