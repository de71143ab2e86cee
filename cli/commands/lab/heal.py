"""`lab heal`: take every impairment off a link."""

from __future__ import annotations

import click

from cli.commands.lab.common import load, name_option, require_root


@click.command()
@click.argument("a")
@click.argument("b")
@name_option
def heal(a: str, b: str, name: str) -> None:
    """Remove loss, rate limit and delay from link A-B."""
    require_root("heal", f"heal {a} {b} --name {name}")
    lab = load(name)
    lab.heal(a, b)
    ok = lab.wait_neighbours(a, b, timeout=15)
    click.echo(f"{a}-{b}: healed" + ("" if ok else " (babeld does not use it yet)"))
