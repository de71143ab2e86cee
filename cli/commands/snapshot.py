"""`mutualmesh snapshot save FILE`: keep the verified records of the mesh for later or offline."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import UserError
from cli.output import emit_json, say
from cli.read.options import MeshArgs, mesh_options, open_mesh
from cli.read.source import write_snapshot


@click.group()
def snapshot() -> None:
    """Save the verified records of the mesh to a file."""


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@mesh_options
def save(file: str, **kw: object) -> None:
    """Write every record that verified (and only those) to FILE.

    The file keeps the exact signed bytes, so reading it back (`--snapshot FILE`) verifies every
    record again: a snapshot proves nothing by itself.
    """
    args = MeshArgs(**kw)  # type: ignore[arg-type]
    mesh = open_mesh(args)
    path = Path(file)
    if not path.parent.exists():
        raise UserError(f"folder {path.parent} does not exist", where=file, fix="create it first")
    try:
        write_snapshot(
            path,
            mesh.community.name,
            mesh.now,
            [e.raw for e in mesh.store],
            statuses=mesh.statuses,
            revocations=mesh.revocations,
        )
    except OSError as exc:
        raise UserError(f"cannot write the snapshot: {exc.strerror}", where=file) from None
    rejected = sum(mesh.rejections.values())
    if args.as_json:
        emit_json(
            {
                "file": str(path),
                "records": len(mesh.store),
                "nodes": len(mesh.store.node_ids()),
                "rejected": {k.value: v for k, v in mesh.rejections.items()},
                "dropped": dict(mesh.dropped or {}),  # messages that were not records at all
                "source": mesh.source,
            }
        )
        return
    say(
        f"saved {len(mesh.store)} verified records of {len(mesh.store.node_ids())} nodes "
        f"from {mesh.source} to {path}" + (f" ({rejected} refused)" if rejected else "")
    )
