"""`lab kill`: kill a node's agent or daemons, as a crash or power cut would."""

from __future__ import annotations

import click

from cli.commands.lab.common import load, name_option, require_root
from cli.lab.daemons import KILLABLE


@click.command()
@click.argument("node")
@click.option("--what", type=click.Choice([*KILLABLE, "all"]), default="agent", show_default=True)
@name_option
def kill(node: str, what: str, name: str) -> None:
    """Kill a node's agent (or daemons) with SIGKILL, as a crash or power cut would."""
    require_root("kill", f"kill {node} --name {name}")
    stopped = load(name).kill(node, what)
    click.echo(f"{node}: killed {', '.join(stopped) or 'nothing (not running)'}")
