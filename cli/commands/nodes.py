"""`mutualmesh nodes` and `nodes show NAME`: who is on the mesh, from their own signed records."""

from __future__ import annotations

from typing import Any

import click

from cli.analysis.views import NODES, NodeRow, node_json
from cli.errors import UserError
from cli.output import emit_json, human_age, output_format, say, table
from cli.read.options import MeshArgs, mesh_options, open_mesh


def _args(ctx: click.Context, kw: dict[str, Any]) -> MeshArgs:
    """Options may be given before or after `show`; the later ones win."""
    parent: dict[str, Any] = dict(ctx.obj or {})
    merged = {k: (v if v not in (None, False) else parent.get(k, v)) for k, v in kw.items()}
    return MeshArgs(**merged)


@click.group(invoke_without_command=True)
@mesh_options
@click.pass_context
def nodes(ctx: click.Context, /, **kw: Any) -> None:
    """List the nodes: name, id, age of the newest record, software, gateway, neighbours,
    uptime and state (online / stale / offline / isolated)."""
    ctx.obj = kw
    if ctx.invoked_subcommand is not None:
        return
    args = MeshArgs(**kw)
    mesh = open_mesh(args)
    view = mesh.view()
    items = sorted(view.nodes.values(), key=lambda n: n.hostname)
    NODES.emit(
        [NodeRow(view, nv) for nv in items],
        output_format(args.as_json),
        json_key="nodes",
        json_extra={"source": mesh.source, "now": mesh.now},
    )


@nodes.command("show")
@click.argument("name")
@mesh_options
@click.pass_context
def show(ctx: click.Context, /, name: str, **kw: Any) -> None:
    """Everything known about one node (by hostname, node id or id prefix)."""
    args = _args(ctx, kw)
    mesh = open_mesh(args)
    view = mesh.view()
    nv = view.find(name)
    if nv is None:
        raise UserError(
            f"no node named {name!r} in the mesh",
            fix="run `mutualmesh nodes` to list names and ids",
        )
    j = node_json(view, nv)
    links = []
    for other in sorted(view.nodes):
        link = view.link(nv.node_id, other)
        if link is not None:
            out, back = (link.ab, link.ba) if link.a == nv.node_id else (link.ba, link.ab)
            links.append((view.name(other), link.state.value, out.loss, back.loss, link.cost))
    if args.as_json:
        j["links"] = [
            {"neighbour": n, "state": s, "loss_out": lo, "loss_in": li, "cost": c}
            for n, s, lo, li, c in links
        ]
        emit_json(j)
        return
    for key in ("name", "id", "state", "software", "model", "gateway_kbit", "contact"):
        say(f"{key:<13} {j[key] if j[key] is not None else '-'}")
    say(f"{'age':<13} {human_age(j['age_s'])}")
    say(f"{'uptime':<13} {human_age(j['uptime_s'])}")
    say(f"{'addresses':<13} {', '.join(j['addresses']) or '-'}")
    if j["location"]:
        say(f"{'location':<13} {j['location']['lat']}, {j['location']['lon']}")
    if j["config"]:
        c = j["config"]
        chans = ", ".join(f"{b}:{ch}" for b, ch in c["channels"].items())
        say(f"{'config':<13} mesh id {c['mesh_id']}, {c['routing']}, channels {chans or '-'}")
    for kind, r in j["records"].items():
        say(
            f"{'record ' + kind:<13} seq {r['seq']}, "
            f"issued {human_age(mesh.now - r['issued_at'])} ago"
        )
    say()
    table(
        ["neighbour", "state", "loss out", "loss in", "cost"],
        [
            [n, s, "-" if lo is None else f"{lo:.0%}", "-" if li is None else f"{li:.0%}", c]
            for n, s, lo, li, c in links
        ],
        right=["loss out", "loss in", "cost"],
    )
