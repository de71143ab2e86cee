"""`mutualmesh diagnose A [B]`: the path between two nodes, its weakest hop and what to do."""

from __future__ import annotations

from typing import Any

import click

from cli.analysis.diagnosis import diagnose as explain
from cli.analysis.diagnosis import diagnosis_json
from cli.errors import ExitStatus, ToolFailed, UserError
from cli.output import Column, View, emit_json, say
from cli.read.options import MeshArgs, mesh_options, open_mesh
from meshd.graph import dijkstra
from meshd.topology import MeshView, NodeView


def _nearest_gateway(view: MeshView, a: str) -> str | None:
    dist, _ = dijkstra(view.adjacency, a)
    gws = [n for n, nv in view.nodes.items() if nv.is_gateway and n in dist and n != a]
    return min(gws, key=lambda n: (dist[n], n)) if gws else None


def _address(nv: NodeView) -> str:
    info = nv.info
    v4 = [a for a in (info.addresses if info else ()) if ":" not in a]
    if not v4:
        raise UserError(f"{nv.hostname} publishes no IPv4 address to probe")
    return v4[0]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


#: The hop table; its JSON is `diagnosis_json`'s "hops", which these cells read.
HOPS = View[dict[str, Any]](
    [
        Column("hop", cell=lambda h: f"{h['from']} → {h['to']}"),
        Column("state", cell=lambda h: h["state"]),
        Column("cost", cell=lambda h: h["cost"], right=True),
        Column("loss out", cell=lambda h: _pct(h["loss_out"]), right=True),
        Column("loss back", cell=lambda h: _pct(h["loss_back"]), right=True),
        Column(
            "rtt ms",
            cell=lambda h: "-" if h["rtt_ms"] is None else f"{h['rtt_ms']:.1f}",
            right=True,
        ),
        Column("signal", cell=lambda h: h["signal_dbm"], right=True),
    ]
)


@click.command()
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option(
    "--mtu", "probe_mtu", is_flag=True, help="Probe the path MTU to B (needs root, packets sent)."
)
@click.option(
    "--trace", "probe_trace", is_flag=True, help="Traceroute to B across the mesh (needs root)."
)
@click.option(
    "--rogue",
    "rogue_iface",
    metavar="IFACE",
    default=None,
    help="Look for rogue DHCP servers and router advertisements on IFACE (needs root).",
)
@mesh_options
def diagnose(
    a: str | None,
    b: str | None,
    probe_mtu: bool,
    probe_trace: bool,
    rogue_iface: str | None,
    **kw: Any,
) -> None:
    """Explain the path from A to B (default: A's nearest gateway): per-hop loss both ways, RTT,
    cost and signal, the weakest hop, likely causes (one-way loss, low signal, congestion,
    flapping, MTU) and next steps. Active probes use scapy and run from this machine.

    Exit status: 0 when done (and, with --rogue, nobody answered), 3 when --rogue found a DHCP
    server or IPv6 router, 1 when a probe cannot run, 2 on bad input, 4 when no broker answers.
    """
    args = MeshArgs(**kw)
    if rogue_iface is not None:
        from cli.analysis.probes import ProbeError, rogue_servers

        try:
            found = rogue_servers(rogue_iface)
        except (OSError, ValueError, ProbeError) as exc:
            raise ToolFailed(
                f"cannot probe {rogue_iface}: {exc}", fix="run as root on an existing interface"
            ) from None
        if args.as_json:
            emit_json(found)
        else:
            say(
                f"DHCP servers answering on {rogue_iface}: "
                f"{', '.join(found['dhcp_servers']) or 'none'}"
            )
            say(
                f"IPv6 routers advertising on {rogue_iface}: "
                f"{', '.join(found['router_advertisers']) or 'none'}"
            )
        if found["dhcp_servers"] or found["router_advertisers"]:
            click.get_current_context().exit(int(ExitStatus.FINDINGS))
        if a is None:
            return
    if a is None:
        raise UserError("name the node to start from", fix="mutualmesh diagnose NODE [NODE]")
    mesh = open_mesh(args)
    view = mesh.view()
    na = view.find(a)
    if na is None:
        raise UserError(f"no node named {a!r}", fix="see `mutualmesh nodes`")
    if b is not None:
        nb = view.find(b)
        if nb is None:
            raise UserError(f"no node named {b!r}", fix="see `mutualmesh nodes`")
        target = nb.node_id
    else:
        gw = _nearest_gateway(view, na.node_id)
        if gw is None:
            raise UserError(
                f"{na.hostname} reaches no gateway", fix="name a second node: diagnose A B"
            )
        target = gw
    d = explain(view, na.node_id, target)
    out = diagnosis_json(view, d)
    if probe_mtu or probe_trace:
        from cli.analysis import probes

        addr = _address(view.nodes[target])
        try:
            if probe_mtu:
                r = probes.path_mtu(addr)
                out["path_mtu"] = r.path_mtu
            if probe_trace:
                out["trace"] = [{"ttl": t, "from": s} for t, s in probes.trace(addr)]
        except PermissionError:
            raise ToolFailed("active probes need root", fix="run as root") from None
    if args.as_json:
        emit_json(out)
        return
    if d.path is None:
        say(f"no path from {out['from']} to {out['to']}")
    else:
        say(f"path {' → '.join(out['path'])}")
        HOPS.emit(out["hops"], "table")
        if out["weakest"]:
            say(f"weakest hop: {out['weakest'][0]} → {out['weakest'][1]}")
    for c in out["causes"] or ["no likely cause found in the records"]:
        say(f"cause: {c}")
    for s in out["next_steps"]:
        say(f"next:  {s}")
    if "path_mtu" in out:
        say(f"path MTU: {out['path_mtu'] or 'no reply'}")
    for t in out.get("trace", []):
        say(f"{t['ttl']:>3}  {t['from'] or '*'}")
