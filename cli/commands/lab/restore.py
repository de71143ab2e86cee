"""`lab restore`: bring a cut link back and wait until babeld uses it."""

from __future__ import annotations

import time

import click

from cli.commands.lab.common import load, name_option, require_root


@click.command()
@click.argument("a")
@click.argument("b")
@name_option
def restore(a: str, b: str, name: str) -> None:
    """Bring a cut link A-B back and wait until babeld uses it."""
    require_root("restore", f"restore {a} {b} --name {name}")
    t0 = time.monotonic()
    ok = load(name).restore(a, b)
    took = time.monotonic() - t0
    click.echo(
        f"{a}-{b}: restored, babel neighbours again after {took:.1f}s"
        if ok
        else f"{a}-{b}: up, but babeld does not use it yet"
    )
