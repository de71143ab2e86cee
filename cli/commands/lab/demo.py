"""`lab demo`: the narrated tour of a 7-node neighbourhood with one gateway."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.commands.lab.common import (
    flag,
    name_option,
    require_root,
    say,
    table,
)
from cli.commands.lab.status import print_status
from cli.commands.lab.up import hints
from cli.lab.state import wait_until

if TYPE_CHECKING:
    from cli.lab.lab import Lab

ADMIN_VIEWS = ("nodes", "links", "contrib")
# Agents publish every 15 s so the demo's traffic reaches their records soon; much faster and the
# admin CLI's broker reader (it stops after a quiet moment) never sees the mesh fall quiet.
DEMO_AGENT_ARGS = ("--publish-interval", "15")
DEMO_LINK_RATE = "50mbit"
INTERNET_NAME = "internet"
RECORDS_WAIT_S = 45.0  # how long the demo waits for every agent's post-traffic record


DEMO_MAP = r"""
      internet
         |
        n1 ------- n2 ------- n3 ------- n4
         |                     |          |
        n6 ------- n7 ---------+          |
         |                                |
         +------------- n5 ---------------+
"""


@click.command()
@click.option("--agents/--no-agents", default=None, help="Run meshd in every node.")
@click.option("--seconds", default=2.0, show_default=True, help="Seconds of each traffic flow.")
@name_option
def demo(agents: bool | None, seconds: float, name: str) -> None:
    """A 7-node neighbourhood with one gateway: build it, send traffic, show what admins see."""
    from cli.lab.lab import Lab, check_name
    from cli.lab.topology import neighbourhood
    from cli.output import human_bytes

    check_name(name)
    require_root("demo", f"demo --name {name}")
    topo = neighbourhood()
    lab = Lab(name, topo, agents=agents, agent_args=DEMO_AGENT_ARGS, echo=click.echo)
    gw = topo.gateways[0]
    click.secho("mutualmesh lab demo", bold=True)
    intro = [
        f"A street of {len(topo.nodes)} houses, each with a mesh router; the only internet is"
        f" {gw}'s uplink,",
        "which it shares. Every router is a network namespace on this machine running the real",
        "software: babeld (routing) and mosquitto (the router's own MQTT broker)"
        + (", plus meshd, the" if lab.agents else "."),
    ]
    if lab.agents:
        intro.append("node agent that measures links, counts bytes and signs what its router sees.")
    click.echo("\n".join(intro))
    click.echo(DEMO_MAP)
    say("1. Build the mesh (namespaces, links, daemons; then wait for routes and agents)")
    t0 = time.monotonic()
    lab.up()
    click.echo(f"ready in {time.monotonic() - t0:.1f}s")
    for link in topo.mesh_links():
        lab.impair(link.a, link.b, rate=DEMO_LINK_RATE)
    click.echo(f"every link shaped to {DEMO_LINK_RATE} each way, like a good 5 GHz hop")

    say("2. Real traffic (iperf3): two houses use the shared uplink, one sends to a neighbour")
    flows = [("n4", INTERNET_NAME), ("n7", INTERNET_NAME), ("n2", "n5")]
    for a, b in flows:
        path = lab.path(a, b)
        r = lab.traffic(a, b, seconds)
        relays = path[1:-2] if b == INTERNET_NAME else path[1:-1]
        role = [f"{', '.join(relays)} relay{'s' if len(relays) == 1 else ''}"] if relays else []
        if b == INTERNET_NAME and len(path) >= 2:
            role.append(f"{path[-2]} is the gateway")
        click.echo(
            f"{a} -> {b}: {human_bytes(r.sent_bytes, binary=True)} at {r.receiver_mbps:.0f} Mbit/s,"
            f" path {' > '.join(path)}" + (f" ({'; '.join(role)})" if role else "")
        )
    traffic_ended = time.time()

    say("3. What the lab sees: processes, babel routing and link impairments per node")
    click.echo(
        "   neighbours = babel neighbours, routes = nodes it can reach; a cost of 256 is a clean"
        " link\n   (loss raises it, and babeld then routes around the link)"
    )
    print_status(lab.status())
    say("4. Bytes each router carried on its mesh links (kernel counters, rx+tx)")
    click.echo("   relays carry bytes both ways; the uplink column is what the gateway sent out")
    _print_carried(lab)
    _admin_views(lab, traffic_ended)
    hints(lab, demo=True)


def _print_carried(lab: Lab) -> None:
    from cli.lab import netns
    from cli.output import human_bytes

    rows: list[tuple[str, ...]] = [("node", "mesh rx", "mesh tx", "uplink tx")]
    for n in lab.topology.nodes:
        counters = netns.iface_counters(lab.ns(n.name))
        mesh = [k.side(n.name)[0] for k in lab.topology.mesh_links(n.name)]
        rx = sum(counters.get(i, {}).get("rx_bytes", 0) for i in mesh)
        tx = sum(counters.get(i, {}).get("tx_bytes", 0) for i in mesh)
        up = counters.get("up0", {}).get("tx_bytes", 0) if n.gateway else 0
        uplink = human_bytes(up, binary=True) if up else ""
        rows.append((n.name, human_bytes(rx, binary=True), human_bytes(tx, binary=True), uplink))
    table(rows)


def _admin_view(lab: Lab, view: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run an admin command inside the first node, against that node's own broker.

    A view that does not answer within 30 s comes back as a failed run, not an exception.
    """
    node = lab.topology.names[0]
    script = Path(sys.executable).parent / "mutualmesh"
    argv = [str(script), view, "--broker", lab.addr(node)]
    argv += ["--community", str(lab.run_dir / "community.yaml"), *extra]
    full = ["ip", "netns", "exec", lab.ns(node), *argv]
    try:
        return subprocess.run(full, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(full, 124, "", f"(`{view}` did not answer in 30 s)")


def _all_published_since(lab: Lab, since: float) -> bool:
    """True once every node's newest record was issued after `since` (wall-clock seconds)."""
    proc = _admin_view(lab, "nodes", "--json")
    try:
        rows = json.loads(proc.stdout).get("nodes", [])
    except ValueError:
        return False
    elapsed = time.time() - since
    return len(rows) == len(lab.topology.nodes) and all(
        isinstance(r.get("age_s"), int | float) and r["age_s"] < elapsed for r in rows
    )


VIEW_EXPLAIN = {
    "nodes": "every router, known only from its own signed record: software, uplink offer,"
    " neighbours",
    "links": "every link in both directions as the agents measure it (ETX, loss, RTT) with"
    " babel's cost",
    "contrib": "who relayed for others and who shared an uplink; `check` says whether the"
    " neighbours'\n   own counters confirm each claim (verified) or contradict it",
}


def _admin_views(lab: Lab, traffic_ended: float) -> None:
    """The admin CLI's own views, read from a node's broker once the agents' records are in."""
    views = [v for v in ADMIN_VIEWS if importlib.util.find_spec(f"cli.commands.{v}")]
    if not views or not lab.agents:
        click.echo("\n(start the demo with --agents to see the admin views nodes, links, contrib)")
        return
    first = lab.topology.names[0]
    say(f"5. What an admin sees: signed records every router shares, read from {first}'s broker")
    click.echo(
        "   each agent publishes node/links/traffic records to its broker; neighbours relay them,"
        "\n   so every router holds the whole picture and the admin CLI can ask any of them"
    )
    t0 = time.monotonic()
    click.echo("waiting for every agent to publish its counters after the traffic ...")
    arrived = wait_until(lambda: _all_published_since(lab, traffic_ended), RECORDS_WAIT_S, 1.0)
    took = time.monotonic() - t0
    if arrived:
        click.echo(f"records from all nodes reached {first} ({took:.1f}s)")
    else:
        click.echo(f"not every node's new record reached {first} in {took:.0f}s; showing as is")
    opt = flag(lab)
    for view in views:
        click.echo(f"\n$ mutualmesh lab view {view}{opt}")
        if view in VIEW_EXPLAIN:
            click.echo(f"   ({VIEW_EXPLAIN[view]})")
        proc = _admin_view(lab, view)
        click.echo((proc.stdout or proc.stderr).rstrip() or "(no output)")
