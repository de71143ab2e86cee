"""Topology exports other tools read: NetJSON NetworkGraph (OpenWISP, netdiff), Graphviz DOT,
PNG via Graphviz, Freifunk's meshviewer.json and Prometheus file_sd targets. Locations only for
nodes that opted in. The JSON builders live in `node_agent.exports` (every router serves them);
the picture is made here."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import subprocess
from collections.abc import Mapping

from meshd.topology import Link, LinkState, MeshView
from node_agent.exports import is_online, link_medium, meshviewer, netjson, prometheus_sd

__all__ = ["LINK_COLOUR", "dot", "meshviewer", "netjson", "png", "prometheus_sd"]

LINK_COLOUR = {
    LinkState.GOOD: "#2e7d32",
    LinkState.LOSSY: "#f9a825",
    LinkState.ASYMMETRIC: "#6a1b9a",  # purple: amber-orange was hard to tell from lossy
    LinkState.FLAPPING: "#c62828",
    LinkState.ONE_SIDED: "#c62828",
    LinkState.DOWN: "#9e9e9e",
}
STATE_WORDS = {
    LinkState.GOOD: "good",
    LinkState.LOSSY: "lossy",
    LinkState.ASYMMETRIC: "one way worse",
    LinkState.FLAPPING: "flapping",
    LinkState.ONE_SIDED: "one end only",
    LinkState.DOWN: "down",
}
# medium -> (style, penwidth): a radio link is a plain line, a cable a thick one, a tunnel dotted
MEDIUM_STYLE = {"wifi": ("solid", 2.0), "tap": ("dotted", 2.0)}
WIRED_STYLE = ("solid", 4.0)
NODE_FILL = "#bbdefb"
GATEWAY_FILL = "#fff176"
OFFLINE_FILL = "#e0e0e0"
MIN_SIZE, MAX_SIZE = 0.25, 1.0  # inches: the circle's size is the contribution, nothing else


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _positions(view: MeshView, span_in: float = 7.0) -> dict[str, tuple[float, float]]:
    """Inches from opted-in locations (equirectangular; fine at a neighbourhood's scale)."""
    spots = {
        nv.node_id: (nv.info.location.lat, nv.info.location.lon)
        for nv in view.nodes.values()
        if nv.info is not None and nv.info.location is not None
    }
    if len(spots) < 2:
        return {}
    lat0 = sum(p[0] for p in spots.values()) / len(spots)
    k = math.cos(math.radians(lat0))
    xs = {n: lon * k for n, (_, lon) in spots.items()}
    ys = {n: lat for n, (lat, _) in spots.items()}
    width = max(max(xs.values()) - min(xs.values()), max(ys.values()) - min(ys.values())) or 1.0
    scale = span_in / width
    x0, y0 = min(xs.values()), min(ys.values())
    return {n: ((xs[n] - x0) * scale, (ys[n] - y0) * scale) for n in spots}


def _edge_label(link: Link) -> str:
    loss = link.worst_loss
    return f"{loss:.0%} loss" if loss is not None and loss >= 0.01 else ""


def _legend(title: str) -> str:
    swatch = "".join(
        f'<td><font color="{LINK_COLOUR[s]}">━━</font> {STATE_WORDS[s]}</td>'
        for s in (LinkState.GOOD, LinkState.LOSSY, LinkState.ASYMMETRIC, LinkState.ONE_SIDED)
    )
    return (
        '<<table border="0" cellspacing="4">'
        f'<tr><td colspan="4"><font point-size="16"><b>{_html(title)}</b></font></td></tr>'
        f"<tr>{swatch}</tr>"
        "<tr><td>── radio</td><td>━━ cable (thick)</td><td>┈┈ tunnel (dotted)</td>"
        "<td>- - not routed (dashed)</td></tr>"
        f'<tr><td bgcolor="{GATEWAY_FILL}">gateway</td><td bgcolor="{NODE_FILL}">node</td>'
        f'<td bgcolor="{OFFLINE_FILL}">offline</td><td>bigger circle = contributes more</td></tr>'
        "</table>>"
    )


def dot(view: MeshView, scores: Mapping[str, float] | None = None, *, label: str = "") -> str:
    """Graphviz source a member can read: fixed-size circles sized by contribution (names
    beside them, so a long name does not grow the circle), links coloured by state with loss
    written on them, offline nodes grey, radio/cable/tunnel drawn differently, and a title with
    the time and a legend. Opted-in locations pin their nodes (neato honours `pos=...!`)."""
    scores = scores or {}
    top = max(scores.values(), default=0.0) or 1.0
    when = dt.datetime.fromtimestamp(view.now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"{label or 'mesh'} · {when}"
    lines = [
        f"graph {_dot_id(label or 'mesh')} {{",
        "  graph [overlap=false, splines=true, outputorder=edgesfirst, forcelabels=true,"
        f' labelloc=t, fontname="Helvetica", pad=0.3, label={_legend(title)}];',
        '  node [shape=circle, style=filled, fixedsize=true, label="", fontname="Helvetica",'
        " fontsize=11];",
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    pos = _positions(view)
    for nv in sorted(view.nodes.values(), key=lambda n: n.hostname):
        size = MIN_SIZE + (MAX_SIZE - MIN_SIZE) * (scores.get(nv.node_id, 0.0) / top)
        online = is_online(view, nv)
        fill = GATEWAY_FILL if nv.is_gateway else NODE_FILL
        extra = ""
        if not online:
            fill, extra = OFFLINE_FILL, ', color="#9e9e9e", fontcolor="#757575"'
        if nv.node_id in pos:
            x, y = pos[nv.node_id]
            extra += f', pos="{x:.2f},{y:.2f}!"'
        state = "" if online else " (offline)"
        lines.append(
            f"  {_dot_id(nv.node_id)} [xlabel={_dot_id(nv.hostname + state)}, width={size:.2f},"
            f' fillcolor="{fill}"{extra}, tooltip={_dot_id(nv.hostname)}];'
        )
    for link in sorted(view.links.values(), key=lambda x: (x.a, x.b)):
        style, width = MEDIUM_STYLE.get(link_medium(link), WIRED_STYLE)
        if not link.in_graph:
            style = "dashed"
        tip = f"{view.name(link.a)} – {view.name(link.b)}: cost {link.cost}; {link.reason}"
        lines.append(
            f'  {_dot_id(link.a)} -- {_dot_id(link.b)} [color="{LINK_COLOUR[link.state]}", '
            f"style={style}, penwidth={width}, label={_dot_id(_edge_label(link))}, "
            f"tooltip={_dot_id(tip)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def png(dot_source: str, engine: str = "neato") -> bytes:
    """Render DOT with Graphviz; raises FileNotFoundError when Graphviz is missing."""
    exe = shutil.which(engine)
    if exe is None:
        raise FileNotFoundError(engine)
    done = subprocess.run(
        [exe, "-Tpng", "-Gdpi=110"],
        input=dot_source.encode(),
        capture_output=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace").strip())
    return done.stdout
