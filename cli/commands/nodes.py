"""`mutualmesh nodes` and `nodes show NAME`: who is on the mesh, from their own signed records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from cli.analysis.views import NODES, NodeRow, node_json
from cli.errors import UserError
from cli.output import Column, View, emit_json, human_age, output_format, say
from cli.read.options import MeshArgs, mesh_options, open_mesh
from meshd.topology import Direction, Link, MeshView


def _args(ctx: click.Context, kw: dict[str, Any]) -> MeshArgs:
    """Options may be given before or after `show`; the later ones win."""
    parent: dict[str, Any] = dict(ctx.obj or {})
    merged = {k: (v if v not in (None, False) else parent.get(k, v)) for k, v in kw.items()}
    return MeshArgs(**merged)


@dataclass(frozen=True, slots=True)
class NeighbourRow:
    """One link of the shown node, seen from that node."""

    view: MeshView
    me: str
    link: Link

    @property
    def out(self) -> Direction:
        return self.link.ab if self.link.a == self.me else self.link.ba

    @property
    def back(self) -> Direction:
        return self.link.ba if self.link.a == self.me else self.link.ab

    @property
    def other(self) -> str:
        return self.view.name(self.link.b if self.link.a == self.me else self.link.a)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


NEIGHBOURS = View[NeighbourRow](
    [
        Column("neighbour", cell=lambda r: r.other, json=("neighbour", lambda r: r.other)),
        Column(
            "state", cell=lambda r: r.link.state.value, json=("state", lambda r: r.link.state.value)
        ),
        Column(
            "loss out",
            cell=lambda r: _pct(r.out.loss),
            json=("loss_out", lambda r: r.out.loss),
            right=True,
        ),
        Column(
            "loss in",
            cell=lambda r: _pct(r.back.loss),
            json=("loss_in", lambda r: r.back.loss),
            right=True,
        ),
        Column(
            "cost", cell=lambda r: r.link.cost, json=("cost", lambda r: r.link.cost), right=True
        ),
    ]
)


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
    links = [
        NeighbourRow(view, nv.node_id, link)
        for other in sorted(view.nodes)
        if (link := view.link(nv.node_id, other)) is not None
    ]
    if args.as_json:
        j["links"] = NEIGHBOURS.json_rows(links)
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
    NEIGHBOURS.emit(links, "table")
