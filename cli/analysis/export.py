"""Topology exports other tools read: NetJSON NetworkGraph (OpenWISP, netdiff), Graphviz DOT,
PNG via Graphviz, and Freifunk's meshviewer.json. Locations only for nodes that opted in."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from meshd import __version__
from meshd.nodestate import node_state
from meshd.topology import LinkState, MeshView

LINK_COLOUR = {
    LinkState.GOOD: "#2e7d32",
    LinkState.LOSSY: "#f9a825",
    LinkState.ASYMMETRIC: "#ef6c00",
    LinkState.FLAPPING: "#c62828",
    LinkState.ONE_SIDED: "#c62828",
    LinkState.DOWN: "#9e9e9e",
}


def netjson(view: MeshView, *, label: str = "") -> dict[str, Any]:
    """A NetJSON NetworkGraph; `cost` is babel's cost (the worse direction), per the spec's
    'cost' being the routing metric's value."""
    nodes = []
    for nv in sorted(view.nodes.values(), key=lambda n: n.node_id):
        info = nv.info
        props: dict[str, Any] = {"hostname": nv.hostname, "gateway": nv.is_gateway}
        if info is not None:
            props["software"] = info.software
            props["model"] = info.model
            if info.location is not None:
                props["location"] = {"lat": info.location.lat, "lng": info.location.lon}
        node: dict[str, Any] = {"id": nv.node_id, "label": nv.hostname, "properties": props}
        if info is not None and info.addresses:
            node["local_addresses"] = list(info.addresses)
        nodes.append(node)
    links = []
    for link in sorted(view.links.values(), key=lambda x: (x.a, x.b)):
        if not link.in_graph:
            continue
        links.append(
            {
                "source": link.a,
                "target": link.b,
                "cost": float(link.cost),
                "cost_text": link.state.value,
                "properties": {
                    "state": link.state.value,
                    "cost_ab": link.ab.cost,
                    "cost_ba": link.ba.cost,
                    "loss_ab": link.ab.loss,
                    "loss_ba": link.ba.loss,
                    "rtt_ms": link.ab.rtt_ms,
                },
            }
        )
    return {
        "type": "NetworkGraph",
        "protocol": "babel",
        "version": "1",
        "revision": f"mutualmesh {__version__}",
        "metric": "babel",
        "label": label,
        "nodes": nodes,
        "links": links,
    }


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(view: MeshView, scores: Mapping[str, float] | None = None, *, label: str = "") -> str:
    """Graphviz source: links coloured by state, node size by contribution score (0..1)."""
    scores = scores or {}
    top = max(scores.values(), default=0.0) or 1.0
    lines = [
        f"graph {_dot_id(label or 'mesh')} {{",
        "  graph [overlap=false, splines=true, outputorder=edgesfirst];",
        '  node [shape=circle, style=filled, fillcolor="#e3f2fd", fontname="Helvetica",'
        " fontsize=10];",
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    for nv in sorted(view.nodes.values(), key=lambda n: n.hostname):
        size = 0.4 + 1.2 * (scores.get(nv.node_id, 0.0) / top)
        fill = "#fff59d" if nv.is_gateway else "#e3f2fd"
        lines.append(
            f"  {_dot_id(nv.node_id)} [label={_dot_id(nv.hostname)}, width={size:.2f}, "
            f'fixedsize=false, fillcolor="{fill}"];'
        )
    for link in sorted(view.links.values(), key=lambda x: (x.a, x.b)):
        style = "solid" if link.in_graph else "dashed"
        width = 2.0 if link.state is LinkState.GOOD else 1.5
        lines.append(
            f'  {_dot_id(link.a)} -- {_dot_id(link.b)} [color="{LINK_COLOUR[link.state]}", '
            f'style={style}, penwidth={width}, label="{link.cost}", '
            f"tooltip={_dot_id(link.reason)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def png(dot_source: str, engine: str = "neato") -> bytes:
    """Render DOT with Graphviz; raises FileNotFoundError when Graphviz is missing."""
    exe = shutil.which(engine)
    if exe is None:
        raise FileNotFoundError(engine)
    done = subprocess.run(
        [exe, "-Tpng"], input=dot_source.encode(), capture_output=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace").strip())
    return done.stdout


def meshviewer(view: MeshView, clients: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The meshviewer.json shape Freifunk maps read (as yanic writes it)."""
    clients = clients or {}

    def stamp(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")

    nodes = []
    for nv in sorted(view.nodes.values(), key=lambda n: n.node_id):
        info = nv.info
        online = node_state(view, nv).reachable
        node: dict[str, Any] = {
            "node_id": nv.node_id,
            "hostname": nv.hostname,
            "is_online": online,
            "is_gateway": nv.is_gateway,
            "clients": clients.get(nv.node_id, 0),
            "clients_wifi24": 0,
            "clients_wifi5": 0,
            "clients_other": clients.get(nv.node_id, 0),
            "firstseen": stamp(nv.last_seen),
            "lastseen": stamp(nv.last_seen),
            "uptime": stamp(nv.last_seen - nv.counters.uptime_s) if nv.counters else None,
            "addresses": list(info.addresses) if info else [],
            "model": info.model if info else None,
            "firmware": {"base": info.software, "release": info.software} if info else {},
            "gateway": None,
        }
        if info is not None and info.location is not None:
            node["location"] = {"latitude": info.location.lat, "longitude": info.location.lon}
        nodes.append(node)
    links = []
    for link in sorted(view.links.values(), key=lambda x: (x.a, x.b)):
        if not link.in_graph:
            continue
        medium = link.ab.entry.medium if link.ab.entry else "other"
        links.append(
            {
                "type": "wifi" if medium == "wifi" else "other",
                "source": link.a,
                "target": link.b,
                "source_tq": round(1.0 - (link.ab.loss or 0.0), 3),
                "target_tq": round(1.0 - (link.ba.loss or 0.0), 3),
                "source_addr": "",
                "target_addr": "",
            }
        )
    return {"timestamp": stamp(view.now), "nodes": nodes, "links": links}
