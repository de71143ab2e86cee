"""`lab exec`: run a command inside a node."""

from __future__ import annotations

import sys

import click

from cli.commands.lab.common import load, name_option, require_root


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@name_option
def exec_(node: str, command: tuple[str, ...], name: str) -> None:
    """Run COMMAND inside NODE (or `internet`), e.g. `lab exec n1 -- ip route`."""
    require_root("exec", f"exec {node} -- {' '.join(command)}")
    sys.exit(load(name).exec(node, list(command)))
