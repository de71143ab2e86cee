"""`mutualmesh links`: every link in both directions, with a one-word state."""

from __future__ import annotations

from typing import Any

import click

from cli.analysis.pipeline import history, link_json
from cli.errors import UserError
from cli.mesh import MeshArgs, mesh_options, open_mesh
from cli.output import emit_json, table


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@click.command()
@click.option("--worst", type=click.IntRange(min=1), default=None, help="Only the N worst links.")
@click.option("--node", "node_name", default=None, help="Only links of this node.")
@mesh_options
def links(worst: int | None, node_name: str | None, **kw: Any) -> None:
    """Both directions of each link: ETX, loss, RTT, babel cost, signal and bitrate where the
    radio tells, and a state: good / lossy / asymmetric / one-sided / flapping / down."""
    args = MeshArgs(**kw)
    mesh = open_mesh(args)
    _, _, flaps = history(mesh, args.archive, None)
    view = mesh.view(flaps)
    items = list(view.links.values())
    if node_name is not None:
        nv = view.find(node_name)
        if nv is None:
            raise UserError(f"no node named {node_name!r}", fix="see `mutualmesh nodes`")
        items = [x for x in items if nv.node_id in (x.a, x.b)]
    if worst is not None:
        items = sorted(items, key=lambda x: -x.badness())[:worst]
    else:
        items.sort(key=lambda x: (view.name(x.a), view.name(x.b)))
    if args.as_json:
        emit_json({"source": mesh.source, "links": [link_json(view, x) for x in items]})
        return
    rows = []
    for link in items:
        for i, d in enumerate((link.ab, link.ba)):
            rows.append(
                [
                    f"{view.name(d.src)} → {view.name(d.dst)}",
                    _fmt(d.etx, ".2f"),
                    "-" if d.loss is None else f"{d.loss:.0%}",
                    _fmt(d.rtt_ms, ".1f"),
                    _fmt(d.cost, "d"),
                    _fmt(d.signal_dbm, "d"),
                    _fmt(d.bitrate_mbit, "g"),
                    link.state.value if i == 0 else "",
                ]
            )
    table(
        ["direction", "etx", "loss", "rtt ms", "cost", "signal dBm", "Mbit/s", "state"],
        rows,
        right=["etx", "loss", "rtt ms", "cost", "signal dBm", "Mbit/s"],
    )
