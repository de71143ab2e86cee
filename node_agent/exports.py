"""What Freifunk and OpenWISP tools read, built from verified records: yanic's meshviewer-ffrgb
`meshviewer.json` and a NetJSON NetworkGraph.

Here (not in the CLI) because every router serves them (`/meshviewer.json`, `/netjson`) from its
own store; the CLI's `topology` command calls the same builders. Pure: a `MeshView` in, JSON out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from meshd import defaults
from meshd.advice import medium_of
from meshd.graph import dijkstra
from meshd.nodestate import node_state
from meshd.topology import Link, MeshView, NodeView

# our link media -> yanic's link types (meshviewer draws "vpn" dashed, "other" as a cable)
LINK_TYPE = {"wifi": "wifi", "tap": "vpn"}


def stamp(t: float) -> str:
    """yanic's time format (Go `2006-01-02T15:04:05-0700`)."""
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def is_online(view: MeshView, nv: NodeView) -> bool:
    """What a map draws as online: the one node-state rule, as the audit and views use it."""
    return node_state(view, nv).reachable


def link_medium(link: Link) -> str:
    return medium_of(link.ab, link.ba)


def firmware(software: str) -> dict[str, str]:
    """`mutualmesh 0.1.0` -> base `mutualmesh`, release `0.1.0` (meshviewer shows both)."""
    base, _, release = software.rpartition(" ")
    return {"base": base or software, "release": release if base else software}


def nearest_gateways(view: MeshView) -> dict[str, tuple[str, str]]:
    """node -> (gateway, next hop towards it): the cheapest babel path to any gateway."""
    best: dict[str, tuple[int, str, str]] = {}
    for gw in sorted(n.node_id for n in view.nodes.values() if n.is_gateway):
        if gw not in view.adjacency:
            continue
        dist, pred = dijkstra(view.adjacency, gw)
        for node, d in dist.items():
            if node != gw and (node not in best or d < best[node][0]):
                best[node] = (d, gw, pred[node])
    return {node: (gw, hop) for node, (_, gw, hop) in best.items()}


def meshviewer(
    view: MeshView,
    clients: Mapping[str, int] | None = None,
    first_seen: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """meshviewer.json as yanic's `output/meshviewer-ffrgb` writes it.

    `firstseen` is the earliest of a known first sighting and the time the node began counting
    (its traffic record's `since`), never `lastseen` (meshviewer would draw every node as new).
    `uptime` without a traffic record falls back to the node record's issue time, a lower bound.
    Links of offline nodes are left out, as yanic does.
    """
    clients = clients or {}
    first_seen = first_seen or {}
    gateways = nearest_gateways(view)
    nodes = []
    online: set[str] = set()
    for nv in sorted(view.nodes.values(), key=lambda n: n.node_id):
        info, traffic = nv.info, nv.counters
        up = is_online(view, nv)
        if up:
            online.add(nv.node_id)
        starts = [t for t in (first_seen.get(nv.node_id), traffic.since if traffic else None) if t]
        count = clients.get(nv.node_id, 0)
        node: dict[str, Any] = {
            "node_id": nv.node_id,
            "hostname": nv.hostname,
            "is_online": up,
            "is_gateway": nv.is_gateway,
            "clients": count,
            "clients_wifi24": 0,
            "clients_wifi5": 0,
            "clients_other": count,
            "firstseen": stamp(min([*starts, nv.last_seen])),
            "lastseen": stamp(nv.last_seen),
            "addresses": list(info.addresses) if info else [],
        }
        if traffic is not None:
            node["uptime"] = stamp(max(0, nv.last_seen - traffic.uptime_s))
        elif up and nv.node is not None:
            node["uptime"] = stamp(nv.node.issued_at)
        if info is not None:
            node["model"] = info.model
            node["firmware"] = firmware(info.software)
            if info.location is not None:
                node["location"] = {"latitude": info.location.lat, "longitude": info.location.lon}
            if info.contact:
                node["owner"] = info.contact
        if nv.node_id in gateways:
            node["gateway"], node["gateway_nexthop"] = gateways[nv.node_id]
        nodes.append(node)
    links = []
    for link in sorted(view.links.values(), key=lambda x: (x.a, x.b)):
        if not link.in_graph or link.a not in online or link.b not in online:
            continue
        links.append(
            {
                "type": LINK_TYPE.get(link_medium(link), "other"),
                "source": link.a,
                "target": link.b,
                "source_tq": round(1.0 - (link.ab.loss or 0.0), 3),
                "target_tq": round(1.0 - (link.ba.loss or 0.0), 3),
                "source_addr": "",
                "target_addr": "",
            }
        )
    return {"timestamp": stamp(view.now), "nodes": nodes, "links": links}


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def netjson(
    view: MeshView, *, label: str = "", routing_version: str | None = None
) -> dict[str, Any]:
    """A NetJSON NetworkGraph. `cost` is babel's cost (the worse direction), `version` the
    routing daemon's (as the spec asks; "unknown" when the node cannot tell), mutualmesh's own
    version under `revision`, floats rounded so diffs show real changes only."""
    protocols = {nv.info.config.routing for nv in view.nodes.values() if nv.info and nv.info.config}
    nodes = []
    for nv in sorted(view.nodes.values(), key=lambda n: n.node_id):
        info = nv.info
        props: dict[str, Any] = {
            "hostname": nv.hostname,
            "gateway": nv.is_gateway,
            "online": is_online(view, nv),
        }
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
        ab, ba = link.ab, link.ba
        props = {
            "state": link.state.value,
            "medium": link_medium(link),
            "cost_ab": ab.cost,
            "cost_ba": ba.cost,
            "loss_ab": _round(ab.loss),
            "loss_ba": _round(ba.loss),
            "rtt_ms_ab": _round(ab.rtt_ms, 3),
            "rtt_ms_ba": _round(ba.rtt_ms, 3),
        }
        for key, value in (("signal_dbm_ab", ab.signal_dbm), ("signal_dbm_ba", ba.signal_dbm)):
            if value is not None:
                props[key] = value
        links.append(
            {
                "source": link.a,
                "target": link.b,
                "cost": float(link.cost),
                "cost_text": f"{link.cost} ({link.state.value})",
                "properties": props,
            }
        )
    return {
        "type": "NetworkGraph",
        "protocol": protocols.pop() if len(protocols) == 1 else "babel",
        "version": routing_version or "unknown",
        "revision": f"mutualmesh {defaults.VERSION}",
        "metric": "babel",
        "label": label,
        "nodes": nodes,
        "links": links,
    }


def prometheus_sd(view: MeshView, *, port: int = defaults.HTTP_PORT) -> list[dict[str, Any]]:
    """Prometheus file_sd targets, one per node (yanic's prometheus-sd output)."""
    out = []
    for nv in sorted(view.nodes.values(), key=lambda n: n.hostname):
        info = nv.info
        if info is None or not info.addresses:
            continue
        addr = info.addresses[0]
        host = f"[{addr}]" if ":" in addr else addr
        out.append(
            {
                "targets": [f"{host}:{port}"],
                "labels": {
                    "node_id": nv.node_id,
                    "hostname": nv.hostname,
                    "gateway": "true" if nv.is_gateway else "false",
                    **({"model": info.model} if info.model else {}),
                },
            }
        )
    return out
