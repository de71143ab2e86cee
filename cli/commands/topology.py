"""`mutualmesh topology --format netjson|dot|png|meshviewer|prometheus-sd`: the mesh for other
tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cli.analysis import export
from cli.analysis.pipeline import contributions_for
from cli.errors import ToolFailed, UserError
from cli.read.options import MeshArgs, mesh_options, open_mesh


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["netjson", "dot", "png", "meshviewer", "prometheus-sd"]),
    default="netjson",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write here instead of standard output (required for png on a terminal).",
)
@click.option(
    "--engine",
    type=click.Choice(["neato", "dot", "fdp", "sfdp"]),
    default="neato",
    show_default=True,
    help="Graphviz layout for png.",
)
@mesh_options
def topology(fmt: str, output: str | None, engine: str, **kw: Any) -> None:
    """Export the mesh: NetJSON NetworkGraph (babel costs as `cost`), Graphviz DOT, a PNG
    (links coloured by quality, nodes sized by contribution) or meshviewer.json for Freifunk
    maps, or Prometheus file_sd targets (every node's /metrics, like yanic's prometheus-sd).
    Locations appear only for nodes that opted in. (--json is the same as netjson.)"""
    args = MeshArgs(**kw)
    if args.as_json and fmt in ("dot", "png"):
        raise UserError(
            "--json applies to netjson and meshviewer", fix="drop --json or pick --format netjson"
        )
    mesh = open_mesh(args)
    view = mesh.view()
    data: bytes
    if fmt == "netjson":
        data = (
            json.dumps(export.netjson(view, label=mesh.community.name), indent=2) + "\n"
        ).encode()
    elif fmt == "prometheus-sd":
        data = (json.dumps(export.prometheus_sd(view), indent=2) + "\n").encode()
    elif fmt == "meshviewer":
        clients: dict[str, int] = {}
        data = (json.dumps(export.meshviewer(view, clients), indent=2) + "\n").encode()
    else:
        items, _, _ = contributions_for(mesh, None)
        scores = {c.node_id: c.score for c in items}
        source = export.dot(view, scores, label=mesh.community.name)
        if fmt == "dot":
            data = source.encode()
        else:
            if output is None and sys.stdout.isatty():
                raise UserError("a PNG cannot go to a terminal", fix="add -o mesh.png")
            try:
                data = export.png(source, engine)
            except FileNotFoundError:
                raise ToolFailed(
                    f"Graphviz `{engine}` is not installed", fix="apt-get install graphviz"
                ) from None
            except RuntimeError as exc:
                raise ToolFailed(f"Graphviz failed: {exc}") from None
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror}", where=output) from None
    click.echo(f"wrote {fmt} ({len(view.nodes)} nodes) to {output}", err=True)
