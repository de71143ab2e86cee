"""`lab start`: start whatever of a node's processes is not running."""

from __future__ import annotations

import click

from cli.commands.lab.common import load, name_option, require_root


@click.command()
@click.argument("node")
@name_option
def start(node: str, name: str) -> None:
    """Start whatever of a node's processes is not running."""
    require_root("start", f"start {node} --name {name}")
    started = load(name).start(node)
    click.echo(f"{node}: started {', '.join(started) or 'nothing (all running)'}")
