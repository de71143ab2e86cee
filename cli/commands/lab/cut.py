"""`lab cut`: take a link down at both ends."""

from __future__ import annotations

import click

from cli.commands.lab.common import load, name_option, require_root


@click.command()
@click.argument("a")
@click.argument("b")
@name_option
def cut(a: str, b: str, name: str) -> None:
    """Take link A-B down at both ends."""
    require_root("cut", f"cut {a} {b} --name {name}")
    load(name).cut(a, b)
    click.echo(f"{a}-{b}: cut")
