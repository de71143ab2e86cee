"""`mutualmesh links`: every link in both directions, with a one-word state."""

from __future__ import annotations

from typing import Any

import click

from cli.analysis.pipeline import history
from cli.analysis.views import DIRECTIONS, direction_rows, link_json
from cli.errors import UserError
from cli.output import emit_json
from cli.read.options import MeshArgs, mesh_options, open_mesh


@click.command()
@click.option("--worst", type=click.IntRange(min=1), default=None, help="Only the N worst links.")
@click.option("--node", "node_name", default=None, help="Only links of this node.")
@mesh_options
def links(worst: int | None, node_name: str | None, **kw: Any) -> None:
    """Both directions of each link: ETX, loss, RTT, babel cost, signal and bitrate where the
    radio tells, and a state: good / lossy / asymmetric / one-sided / flapping / down."""
    args = MeshArgs(**kw)
    mesh = open_mesh(args)
    _, _, flaps = history(mesh, None)
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
    DIRECTIONS.emit([r for link in items for r in direction_rows(view, link)], "table")
