"""`lab up`: build a lab and wait until it is converged."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import click

from cli.commands.lab.common import flag, name_option, require_root, say

if TYPE_CHECKING:
    from cli.lab.lab import Lab


@click.command()
@click.option(
    "--topology",
    "-t",
    default="chain:3",
    show_default=True,
    help="chain:N, ring:N, grid:RxC, shared:N, neighbourhood, or a YAML file.",
)
@click.option(
    "--gateway", "-g", multiple=True, help="Node with an uplink to the internet (repeat)."
)
@click.option(
    "--agents/--no-agents",
    default=None,
    help="Run meshd in every node [default: on if the node agent is installed].",
)
@click.option(
    "--agent-arg",
    multiple=True,
    help="Extra meshd flag for every agent, e.g. --agent-arg=--publish-interval=5 (repeat).",
)
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for routes.")
@name_option
def up(
    topology: str,
    gateway: tuple[str, ...],
    agents: bool | None,
    agent_arg: tuple[str, ...],
    timeout: float,
    name: str,
) -> None:
    """Build the lab and wait until every node has a route to every other node."""
    from cli.lab.lab import Lab, check_name
    from cli.lab.topology import parse

    check_name(name)
    topo = parse(topology)
    if gateway:
        topo = topo.with_gateways(list(gateway))
    require_root("up", f"up --topology {topology} --name {name}")
    lab = Lab(name, topo, agents=agents, agent_args=agent_arg, echo=click.echo)
    click.echo(
        f"building lab {name!r}: {topo.spec}, {len(topo.nodes)} nodes, "
        f"{len(topo.mesh_links())} links"
        + (f", {len(topo.segments)} shared segments" if topo.segments else "")
        + f", gateways: {', '.join(topo.gateways) or 'none'}, "
        f"agents: {'on' if lab.agents else 'off'}"
    )
    lab.up(timeout=timeout)
    hints(lab)


def hints(lab: Lab, demo: bool = False) -> None:
    """The commands worth trying next on this lab."""
    topo = lab.topology
    nodes = topo.names
    a = nodes[0]
    b = topo.neighbours(a)[0] if topo.neighbours(a) else nodes[1]
    far = nodes[-1]
    opt = flag(lab)
    rows = [
        (f"mutualmesh lab status{opt}", "nodes, routes, link costs"),
        (f"mutualmesh lab exec {a}{opt} -- ping -c 3 {lab.addr(far)}", f"{a} reaches {far}"),
        (f"mutualmesh lab traffic {a} {far} --seconds 3{opt}", "TCP traffic across the mesh"),
        (
            f"mutualmesh lab impair {a} {b} --loss 20"
            + (" --delay 25" if topo.mesh_links() else "")
            + opt,
            "make a link worse",
        ),
        (f"mutualmesh lab cut {a} {b}{opt}", f"break it (then: lab restore {a} {b})"),
    ]
    if lab.agents and importlib.util.find_spec("cli.commands.links"):
        rows.append((f"mutualmesh lab view links{opt}", "see it in the agents' records"))
        if importlib.util.find_spec("cli.commands.audit"):
            rows.append((f"mutualmesh lab view audit{opt}", "what the audit finds"))
    rows.append((f"mutualmesh lab down{opt}", "remove everything"))
    width = max(len(cmd) for cmd, _ in rows)
    say("The lab keeps running. Try:" if demo else "next:")
    for cmd, why in rows:
        click.echo(f"  {cmd.ljust(width)}   # {why}")
