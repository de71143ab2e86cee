"""`lab down`: remove a lab, every stale lab, or every lab (works after a crash; idempotent)."""

from __future__ import annotations

import time

import click

from cli.commands.lab.common import name_option, require_root
from cli.errors import ExitStatus, UserError


@click.command()
@click.option("--stale", is_flag=True, help="Remove every stale lab (see `lab list`), not one lab.")
@click.option("--all", "all_", is_flag=True, help="Remove every lab on this machine.")
@name_option
def down(stale: bool, all_: bool, name: str) -> None:
    """Remove every namespace, process and file of the lab (works after a crash; idempotent)."""
    from cli.lab.lab import check_name, down_by_name, list_lab_infos

    if stale and all_:
        raise UserError("--stale and --all exclude each other", status=ExitStatus.USAGE)
    check_name(name)
    if stale or all_:
        require_root("down", "down --stale" if stale else "down --all")
        infos = [i for i in list_lab_infos() if all_ or i.stale]
        if not infos:
            click.echo("no stale labs" if stale else "no labs")
            return
        for info in infos:
            t0 = time.monotonic()
            removed = down_by_name(info.name)
            why = f" (stale: {info.stale})" if info.stale else ""
            click.echo(
                f"lab {info.name!r} removed: {len(removed)} namespaces in"
                f" {time.monotonic() - t0:.2f}s{why}"
            )
        return
    t0 = time.monotonic()
    removed = down_by_name(name, echo=click.echo)
    took = time.monotonic() - t0
    if removed:
        click.echo(f"lab {name!r} removed: {len(removed)} namespaces in {took:.2f}s")
    else:
        click.echo(f"lab {name!r}: nothing to remove")
