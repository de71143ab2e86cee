"""From a verified `Mesh` to contributions and audit findings, using the archive for history."""

from __future__ import annotations

from dataclasses import dataclass

from cli.read.options import Mesh
from cli.read.verify import paused_gc
from meshd.audit import AuditInput, AuditPolicy, AuditResult, audit
from meshd.contrib import Contribution, contributions, regressions
from meshd.records import Kind, TrafficBody
from meshd.topology import MeshView


@dataclass
class Window:
    """The interval contribution figures cover; `baseline_at` None means since counting began."""

    since_s: int | None
    baseline_at: float | None
    note: str


def history(
    mesh: Mesh, since_s: int | None
) -> tuple[dict[str, TrafficBody], Window, dict[tuple[str, str], int]]:
    """Baseline counters and link flaps from the archive the run opened (if any)."""
    arch, current = mesh.archive, mesh.snapshot
    if arch is None or current is None:
        note = "cumulative since each node began counting (no --archive for a window)"
        return {}, Window(since_s, None, note), {}
    flaps = arch.link_flaps(mesh.community.name, mesh.community.trust)
    if since_s is None:
        return {}, Window(None, None, "cumulative since each node began counting"), flaps
    base = arch.baseline(mesh.community.name, before=current, at_or_before=mesh.now - since_s)
    if base is None:
        note = "no earlier snapshot in the archive: cumulative figures shown"
        return {}, Window(since_s, None, note), flaps
    traffic = arch.traffic(base, mesh.community.trust)
    span = mesh.now - base.taken_at
    note = f"over the last {span:.0f} s (archived snapshot)"
    if span + 1 < since_s:
        note += f"; the archive goes back only {span:.0f} s of the {since_s} s asked"
    return traffic, Window(since_s, base.taken_at, note), flaps


def contributions_for(
    mesh: Mesh, since_s: int | None
) -> tuple[list[Contribution], Window, MeshView]:
    with paused_gc():
        before, window, flaps = history(mesh, since_s)
        view = mesh.view(flaps)
        span = None if window.baseline_at is None else mesh.now - window.baseline_at
        items = contributions(view, before, window_s=span, policy=mesh.community.contribution)
        return items, window, view


def run_audit(mesh: Mesh, policy: AuditPolicy | None = None) -> AuditResult:
    with paused_gc():
        return _run_audit(mesh, policy)


def _run_audit(mesh: Mesh, policy: AuditPolicy | None) -> AuditResult:
    previous: dict[str, TrafficBody] = {}
    previous_adjacency: dict[str, dict[str, int]] = {}
    flaps: dict[tuple[str, str], int] = {}
    arch, current = mesh.archive, mesh.snapshot
    if arch is not None and current is not None:
        flaps = arch.link_flaps(mesh.community.name, mesh.community.trust)
        base = arch.baseline(mesh.community.name, before=current, at_or_before=mesh.now)
        if base is not None:
            old_store = arch.load(base, mesh.community.trust)
            previous = {
                e.node_id: b
                for e in old_store
                if e.kind is Kind.TRAFFIC and isinstance(b := e.body, TrafficBody)
            }
            previous_adjacency = MeshView.build(old_store, base.taken_at).adjacency
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
