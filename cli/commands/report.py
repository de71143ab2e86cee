"""`mutualmesh report`: one self-contained HTML file for a community meeting.

The map, the contribution table with its marks, contribution over time from the archive, the
cost share, the audit's findings and who holds power, in pictures first. Nothing is fetched
when the file is opened: the members' page's CSS and JS are inlined and the data embedded,
the charts are drawn here as SVG.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from cli.analysis.pipeline import contributions_for, run_audit
from cli.errors import UserError
from cli.output import human_bytes
from cli.read.archive import Snapshot
from cli.read.options import Mesh, MeshArgs, cost_share_option, mesh_options, open_mesh
from meshd.contrib import Contribution, cost_share
from meshd.records import TrafficBody
from meshd.topology import MeshView
from node_agent import webapi
from node_agent.site import static_file

PALETTE = ("#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f", "#5d4037", "#ad1457")
MAX_SNAPSHOTS = 200  # evenly thinned beyond this: a year of hourly snapshots stays readable
MAX_SERIES = 8

Series = list[tuple[float, int]]


def _relayed(t: TrafficBody) -> int:
    return t.forwarded_bytes + t.gateway_bytes


def history_series(
    samples: Sequence[tuple[float, dict[str, TrafficBody]]],
) -> dict[str, Series]:
    """node -> [(time, bytes relayed for others since the first sample)]. A counter that went
    down (a reset) restarts from its new value instead of making the line fall."""
    out: dict[str, Series] = {}
    last: dict[str, tuple[str, int, int]] = {}  # node -> (boot_id/since, value, running total)
    for at, traffic in sorted(samples, key=lambda s: s[0]):
        for node, body in traffic.items():
            value = _relayed(body)
            epoch = f"{body.since}"
            prev = last.get(node)
            if prev is None:
                total = 0
            elif prev[0] != epoch or value < prev[1]:
                total = prev[2] + value
            else:
                total = prev[2] + value - prev[1]
            last[node] = (epoch, value, total)
            out.setdefault(node, []).append((at, total))
    return out


def _thin(snaps: list[Snapshot], limit: int = MAX_SNAPSHOTS) -> list[Snapshot]:
    if len(snaps) <= limit:
        return snaps
    step = (len(snaps) - 1) / (limit - 1)
    return [snaps[round(i * step)] for i in range(limit)]


def archive_samples(mesh: Mesh) -> list[tuple[float, dict[str, TrafficBody]]]:
    """Traffic of every earlier snapshot in the run's archive (this run's own is added apart)."""
    arch = mesh.archive
    if arch is None:
        return []
    own = mesh.snapshot.id if mesh.snapshot is not None else None
    snaps = [
        s for s in arch.snapshots(mesh.community.name) if s.taken_at <= mesh.now and s.id != own
    ]
    return [(s.taken_at, arch.traffic(s, mesh.community.trust)) for s in _thin(snaps)]


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%d %b %H:%M")


def history_svg(series: dict[str, Series], names: dict[str, str]) -> str:
    """A line per node (the biggest contributors), time across, bytes relayed up."""
    lines = sorted(series.items(), key=lambda kv: (-kv[1][-1][1], names.get(kv[0], kv[0])))
    lines = [kv for kv in lines if len(kv[1]) >= 2 and kv[1][-1][1] > 0][:MAX_SERIES]
    if not lines:
        return (
            '<p class="muted">No history yet: run reading commands with <code>--archive DIR'
            "</code> over time (each run adds a snapshot), then make the report again.</p>"
        )
    w, h, left, bottom = 760, 320, 70, 40
    t0 = min(p[0] for _, s in lines for p in s)
    t1 = max(p[0] for _, s in lines for p in s)
    top = max(p[1] for _, s in lines for p in s) or 1
    span = (t1 - t0) or 1

    def xy(t: float, v: int) -> str:
        x = left + (t - t0) / span * (w - left - 10)
        y = h - bottom - v / top * (h - bottom - 10)
        return f"{x:.1f},{y:.1f}"

    parts = [
        f'<svg viewBox="0 0 {w} {h + 24 * ((len(lines) + 3) // 4)}" class="chart" role="img"'
        ' aria-label="contribution over time">'
    ]
    for i in range(5):
        v = top * i / 4
        y = h - bottom - v / top * (h - bottom - 10)
        parts.append(
            f'<line x1="{left}" x2="{w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e0e0e0"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{human_bytes(v)}</text>'
        )
    for i in range(4):
        t = t0 + span * i / 3
        x = left + (t - t0) / span * (w - left - 10)
        anchor = "start" if i == 0 else ("end" if i == 3 else "middle")
        parts.append(
            f'<text x="{x:.1f}" y="{h - bottom + 18}" text-anchor="{anchor}">{_when(t)}</text>'
        )
    for i, (node, points) in enumerate(lines):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(xy(t, v) for t, v in points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{path}"/>'
        )
        lx, ly = 10 + (i % 4) * 185, h + 14 + 24 * (i // 4)
        label = html.escape(names.get(node, node))
        parts.append(
            f'<rect x="{lx}" y="{ly - 10}" width="14" height="10" fill="{colour}"/>'
            f'<text x="{lx + 20}" y="{ly}">{label} ({human_bytes(points[-1][1])})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def cost_svg(items: list[Contribution], mesh: Mesh, amount: float | None) -> str:
    """Stacked bars: the equal base part and the part by consumption, per member."""
    policy = mesh.community.contribution
    shares = cost_share(items, amount if amount is not None else 100.0, policy)
    if not shares:
        return '<p class="muted">No members yet.</p>'
    unit = "" if amount is not None else "%"
    shares.sort(key=lambda s: (-s.total, s.hostname))
    top = max(s.total for s in shares) or 1
    w, row, left = 760, 26, 150
    parts = [
        f'<svg viewBox="0 0 {w} {row * len(shares) + 40}" class="chart" role="img"'
        ' aria-label="cost share">'
    ]
    for i, s in enumerate(shares):
        y = 10 + i * row
        bw = (w - left - 90) * s.base / top
        cw = (w - left - 90) * s.consumption / top
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{html.escape(s.hostname)}</text>'
            f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="18" fill="#90caf9"/>'
            f'<rect x="{left + bw:.1f}" y="{y}" width="{cw:.1f}" height="18" fill="#1565c0"/>'
            f'<text x="{left + bw + cw + 6:.1f}" y="{y + 15}">{s.total:.2f}{unit}</text>'
        )
    ly = 10 + len(shares) * row + 12
    parts.append(
        f'<rect x="{left}" y="{ly - 10}" width="14" height="10" fill="#90caf9"/>'
        f'<text x="{left + 20}" y="{ly}">equal base ({policy.base_share:.0%})</text>'
        f'<rect x="{left + 200}" y="{ly - 10}" width="14" height="10" fill="#1565c0"/>'
        f'<text x="{left + 220}" y="{ly}">by use ({policy.consumption_share:.0%})</text></svg>'
    )
    return "".join(parts)


def mesh_links(view: MeshView) -> list[dict[str, Any]]:
    """The worst links of the whole mesh, shaped like the page's 'my links' cards."""
    bad = sorted(view.links.values(), key=lambda lk: -lk.badness())
    out = []
    for lk in bad:
        row = webapi.link_json(view, lk)
        if row["quality"] == "good":
            continue
        row["to"] = f"{row['from']} – {row['to']}"
        out.append(row)
    return out[:12]


def page_data(mesh: Mesh, view: MeshView, items: list[Contribution], note: str, audit: Any) -> Any:
    nodes = webapi.nodes_api(view)
    return {
        "node": {
            "node_id": "",
            "hostname": "Community report",
            "community": mesh.community.name,
            "time": int(view.now),
            "uptime_s": None,
            "gateway": False,
            "links": mesh_links(view),
        },
        "nodes": nodes,
        "contrib": webapi.contrib_api(items, note),
        "map": webapi.map_api(view),
        "audit": webapi.audit_api(view, audit, items),
    }


def _script(text: str) -> str:
    return text.replace("</", "<\\/")


def render(data: Any, extra_sections: str) -> str:
    """The members' page with its CSS, JS and data inlined, plus the report's own sections."""
    page = static_file("index.html").decode()
    css = static_file("style.css").decode()
    js = static_file("app.js").decode()
    page = page.replace('<link rel="stylesheet" href="style.css">', f"<style>{css}</style>")
    payload = _script(json.dumps(data, separators=(",", ":")))
    page = page.replace(
        '<script src="app.js"></script>',
        f"<script>window.MM_DATA = {payload};</script><script>{_script(js)}</script>",
    )
    page = page.replace("<h2>This router's links</h2>", "<h2>Links that need attention</h2>")
    page = page.replace(
        '<a href="#audit">Health</a>',
        '<a href="#audit">Health</a><a href="#history">Over time</a><a href="#cost">Cost share</a>',
    )
    page = page.replace("</main>", extra_sections + "</main>")
    return page.replace(
        "Served by this router from its own verified records. No internet needed.",
        "Made by <code>mutualmesh report</code> from the community's verified records. "
        "This file needs nothing else to open.",
    )


@click.command()
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    required=True,
    help="The HTML file to write.",
)
@cost_share_option("Split AMOUNT of costs (default: show percentages).")
@mesh_options
def report(output: str, amount: float | None, **kw: Any) -> None:
    """Write one self-contained HTML report for a community meeting: map, contribution table
    and contribution over time (from --archive), cost share, audit findings and who holds
    power. Opens offline in any browser."""
    args = MeshArgs(**kw)
    if args.as_json:
        raise UserError(
            "report writes HTML", fix="drop --json (use `contrib --json`, `audit --json`)"
        )
    target = Path(output)
    if target.parent and not target.parent.is_dir():
        raise UserError(f"no such folder: {target.parent}", where=output, fix="create it first")
    mesh = open_mesh(args)
    items, window, view = contributions_for(mesh, None)
    result = run_audit(mesh)
    samples = archive_samples(mesh)
    samples.append((mesh.now, mesh.traffic()))
    names = {nid: nv.hostname for nid, nv in view.nodes.items()}
    sections = (
        '<section id="history"><h2>Contribution over time</h2>'
        '<p class="muted">Bytes each router carried for others (relayed and to the internet), '
        "as its signed counters report them; the table above says which are verified.</p>"
        f"{history_svg(history_series(samples), names)}</section>"
        '<section id="cost"><h2>Cost share</h2><p class="muted">An equal part for everyone and '
        "a part by how much each member used (Guifi.net's rule).</p>"
        f"{cost_svg(items, mesh, amount)}</section>"
    )
    text = render(page_data(mesh, view, items, window.note, result), sections)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror}", where=output) from None
    click.echo(
        f"wrote report ({len(view.nodes)} nodes, {len(samples)} samples) to {output}", err=True
    )
