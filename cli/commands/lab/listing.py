"""`lab list`: the labs on this machine, and which are stale."""

from __future__ import annotations

import json

import click

from cli.commands.lab.common import table


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def list_(as_json: bool) -> None:
    """List the labs on this machine, and which are stale (left by a crash)."""
    from cli.lab.lab import list_lab_infos

    infos = list_lab_infos()
    if as_json:
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    if not infos:
        click.echo("no labs (start one with `mutualmesh lab up`)")
        return
    rows: list[tuple[str, ...]] = [("lab", "state", "topology", "namespaces", "owner", "note")]
    for i in infos:
        rows.append(
            (
                i.name,
                i.phase,
                i.spec or "-",
                str(i.namespaces),
                f"pid {i.owner}" if i.owner else "-",
                f"STALE: {i.stale}" if i.stale else "",
            )
        )
    table(rows)
    if any(i.stale for i in infos):
        click.echo("\nremove stale labs with `mutualmesh lab down --stale`")
