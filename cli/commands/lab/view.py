"""`lab view`: an admin view run inside a node, against that node's own broker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from cli.commands.lab.common import load, name_option, require_root
from cli.errors import ExitStatus, UserError

VIEWS = ("nodes", "links", "contrib", "audit", "diagnose", "topology")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("view")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--at", "node", help="Ask this node's broker [default: the first node].")
@name_option
def view(view: str, args: tuple[str, ...], node: str | None, name: str) -> None:
    """Run an admin VIEW (nodes, links, contrib, audit, ...) inside a node, against its broker.

    The admin CLI verifies every record with the lab's community file, exactly as on a real
    mesh; extra ARGS go to the view, e.g. `lab view links --worst 3` or `lab view audit --json`.
    """
    if view not in VIEWS or not importlib.util.find_spec(f"cli.commands.{view}"):
        have = [v for v in VIEWS if importlib.util.find_spec(f"cli.commands.{v}")]
        raise UserError(
            f"{view!r} is not an admin view",
            fix=f"use one of: {', '.join(have)}",
            status=ExitStatus.USAGE,
        )
    require_root("view", f"view {view} --name {name}")
    lab = load(name)
    lab.require_up()
    if not lab.agents:
        raise UserError(
            f"lab {name!r} runs no agents, so no node publishes records to view",
            fix=f"rebuild it with agents: `mutualmesh lab down --name {name}` and "
            f"`mutualmesh lab up --agents --name {name}`",
        )
    at = lab.check_node(node or lab.topology.names[0])
    script = Path(sys.executable).parent / "mutualmesh"
    argv = [str(script), view, *args, "--broker", lab.addr(at)]
    argv += ["--community", str(lab.run_dir / "community.yaml")]
    sys.exit(lab.exec(at, argv))
