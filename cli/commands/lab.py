"""`mutualmesh lab`: build, break and inspect a real mesh of namespaces on this machine."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from cli.errors import ExitStatus, UserError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NAME = os.environ.get("MUTUALMESH_LAB", "lab")
ADMIN_VIEWS = ("nodes", "links", "contrib")
# Agents publish every 15 s so the demo's traffic reaches their records soon; much faster and the
# admin CLI's broker reader (it stops after a quiet moment) never sees the mesh fall quiet.
DEMO_AGENT_ARGS = ("--publish-interval", "15")
DEMO_LINK_RATE = "50mbit"
INTERNET_NAME = "internet"


def _user_errors(func: F) -> F:
    """Turn the lab's own errors into what/fix messages with a non-zero exit, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cli.lab.impair import ImpairError
        from cli.lab.lab import LabError
        from cli.lab.topology import TopologyError

        try:
            return func(*args, **kwargs)
        except LabError as exc:
            status = ExitStatus.USAGE if exc.usage else ExitStatus.ERROR
            raise UserError(exc.what, fix=exc.fix, status=status) from None
        except (TopologyError, ImpairError) as exc:
            raise UserError(str(exc), fix="see `mutualmesh lab --help`") from None

    return wrapper  # type: ignore[return-value]


def _name_option(func: F) -> F:
    return click.option(
        "--name",
        default=DEFAULT_NAME,
        show_default=True,
        help="Which lab (1-8 lowercase letters/digits); several labs can run side by side.",
    )(func)


def _require_root(action: str, argv_hint: str) -> None:
    from cli.lab.lab import missing_requirements

    missing = missing_requirements()
    if missing:
        raise UserError(
            f"`lab {action}` cannot run here; missing: " + "; ".join(missing),
            fix=f"run it as root on Linux: sudo {sys.executable.rsplit('/', 1)[0]}/mutualmesh "
            f"lab {argv_hint}",
            status=ExitStatus.ERROR,
        )


def _load(name: str) -> Any:
    from cli.lab.lab import Lab

    return Lab.load(name, echo=click.echo)


@click.group()
def lab() -> None:
    """Run a real mesh of network namespaces on this machine (needs root).

    Each node is a namespace with its own babeld and mosquitto (and meshd with --agents);
    links are veth pairs that `impair`, `cut` and `restore` can break in real ways.
    """


@lab.command()
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
@_name_option
@_user_errors
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
    _require_root("up", f"up --topology {topology} --name {name}")
    the_lab = Lab(name, topo, agents=agents, agent_args=agent_arg, echo=click.echo)
    click.echo(
        f"building lab {name!r}: {topo.spec}, {len(topo.nodes)} nodes, "
        f"{len(topo.mesh_links())} links"
        + (f", {len(topo.segments)} shared segments" if topo.segments else "")
        + f", gateways: {', '.join(topo.gateways) or 'none'}, "
        f"agents: {'on' if the_lab.agents else 'off'}"
    )
    the_lab.up(timeout=timeout)
    _hints(the_lab)


def _hints(the_lab: Any, demo: bool = False) -> None:
    nodes = the_lab.t.names
    a = nodes[0]
    b = the_lab.t.neighbours(a)[0] if the_lab.t.neighbours(a) else nodes[1]
    far = nodes[-1]
    flag = "" if the_lab.name == "lab" else f" --name {the_lab.name}"
    rows = [
        (f"mutualmesh lab status{flag}", "nodes, routes, link costs"),
        (f"mutualmesh lab exec {a}{flag} -- ping -c 3 {the_lab.addr(far)}", f"{a} reaches {far}"),
        (f"mutualmesh lab traffic {a} {far} --seconds 3{flag}", "TCP traffic across the mesh"),
        (
            f"mutualmesh lab impair {a} {b} --loss 20"
            + (" --delay 25" if the_lab.t.mesh_links() else "")
            + flag,
            "make a link worse",
        ),
        (f"mutualmesh lab cut {a} {b}{flag}", f"break it (then: lab restore {a} {b})"),
    ]
    if the_lab.agents and importlib.util.find_spec("cli.commands.links"):
        rows.append((f"mutualmesh lab view links{flag}", "see it in the agents' records"))
        if importlib.util.find_spec("cli.commands.audit"):
            rows.append((f"mutualmesh lab view audit{flag}", "what the audit finds"))
    rows.append((f"mutualmesh lab down{flag}", "remove everything"))
    width = max(len(cmd) for cmd, _ in rows)
    _say("The lab keeps running. Try:" if demo else "next:")
    for cmd, why in rows:
        click.echo(f"  {cmd.ljust(width)}   # {why}")


@lab.command()
@click.option("--stale", is_flag=True, help="Remove every stale lab (see `lab list`), not one lab.")
@click.option("--all", "all_", is_flag=True, help="Remove every lab on this machine.")
@_name_option
@_user_errors
def down(stale: bool, all_: bool, name: str) -> None:
    """Remove every namespace, process and file of the lab (works after a crash; idempotent)."""
    from cli.lab.lab import check_name, down_by_name, list_lab_infos

    if stale and all_:
        raise UserError("--stale and --all exclude each other", status=ExitStatus.USAGE)
    check_name(name)
    if stale or all_:
        _require_root("down", "down --stale" if stale else "down --all")
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


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def list_(as_json: bool) -> None:
    """List the labs on this machine, and which are stale (left by a crash)."""
    from cli.lab.lab import list_lab_infos

    infos = list_lab_infos()
    if as_json:
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    if not infos:
        click.echo("no labs (start one with `mutualmesh lab up`)")
        return
    rows: list[tuple[str, ...]] = [("lab", "state", "topology", "namespaces", "owner", "note")]
    for i in infos:
        rows.append(
            (
                i.name,
                i.phase,
                i.spec or "-",
                str(i.namespaces),
                f"pid {i.owner}" if i.owner else "-",
                f"STALE: {i.stale}" if i.stale else "",
            )
        )
    _table(rows)
    if any(i.stale for i in infos):
        click.echo("\nremove stale labs with `mutualmesh lab down --stale`")


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_name_option
@_user_errors
def status(as_json: bool, name: str) -> None:
    """Nodes, whether their processes run, routes, and link impairments and costs."""
    _require_root("status", f"status --name {name}")
    st = _load(name).status()
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    _print_status(st)


def _yn(value: bool | None) -> str:
    return "-" if value is None else ("up" if value else "DOWN")


def _print_status(st: dict[str, Any]) -> None:
    click.echo(
        f"lab {st['name']!r}: {st['topology']}, state {st['phase']}, "
        f"agents {'on' if st['agents'] else 'off'}"
    )
    head = (
        "node",
        "address",
        "gw",
        "babeld",
        "mosquitto",
        "agent",
        "neighbours",
        "routes",
        "default",
    )
    rows = [head]
    for n in st["nodes"]:
        p = n["processes"]
        rows.append(
            (
                n["node"],
                n["v4"],
                "yes" if n["gateway"] else "",
                _yn(p.get("babeld")),
                _yn(p.get("mosquitto")),
                _yn(p.get("agent")),
                str(n["neighbours"]),
                f"{n['routes']}/{n['routes_expected']}",
                "yes" if n["default_route"] else "no",
            )
        )
    _table(rows)
    link_rows: list[tuple[str, ...]] = [("link", "state", "impairment", "babel cost (each end)")]
    for k in st["links"]:
        costs = ", ".join(f"{node} {c if c is not None else '-'}" for node, c in k["cost"].items())
        imp = k["impairment"] + (f" (from {k['from']})" if k["impairment"] != "none" else "")
        link_rows.append((k["link"], "CUT" if k["cut"] else "up", imp, costs))
    if st["links"]:
        click.echo("")
        _table(link_rows)
    for seg in st.get("segments", []):
        pairs = ", ".join(f"{k} {v}" for k, v in seg["pairs"].items()) or "all in range, no loss"
        members = ", ".join(seg["nodes"])
        click.echo(f"\nshared segment {seg['segment']} ({seg['iface']}): {members}; {pairs}")
    if st.get("internet"):
        i = st["internet"]
        click.echo(f"\ninternet: {i['v4']} in {i['namespace']}, sink {_yn(i['sink'])}")
    missing = st["missing_routes"]
    click.echo("\nhealth: " + ("all pairs routed" if not missing else "; ".join(missing[:5])))


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@lab.command()
@click.argument("a")
@click.argument("b")
@click.option(
    "--loss",
    type=float,
    help="Percent of pings lost over the link (split each way); on a shared segment 100 = out"
    " of range.",
)
@click.option("--rate", help="Bandwidth per direction, e.g. 10mbit, 500kbit.")
@click.option("--delay", type=float, help="One-way delay in ms per direction (TAP relay).")
@click.option(
    "--jitter", type=float, help="Random +-ms around --delay per frame (frames stay in order)."
)
@click.option("--one-way", is_flag=True, help="Impair only the direction from A to B.")
@_name_option
@_user_errors
def impair(
    a: str,
    b: str,
    loss: float | None,
    rate: str | None,
    delay: float | None,
    jitter: float | None,
    one_way: bool,
    name: str,
) -> None:
    """Make link A-B lossy, slow or long (values not given stay as they were)."""
    if loss is None and rate is None and delay is None and jitter is None:
        raise UserError(
            "nothing to do", fix="give --loss, --rate, --delay and/or --jitter (or use `lab heal`)"
        )
    _require_root("impair", f"impair {a} {b} --name {name}")
    imp = _load(name).impair(
        a, b, loss=loss, rate=rate, delay_ms=delay, jitter_ms=jitter, one_way=one_way
    )
    click.echo(f"{a}-{b}: {imp.describe()}")


@lab.command()
@click.argument("a")
@click.argument("b")
@_name_option
@_user_errors
def heal(a: str, b: str, name: str) -> None:
    """Remove loss, rate limit and delay from link A-B."""
    _require_root("heal", f"heal {a} {b} --name {name}")
    the_lab = _load(name)
    the_lab.heal(a, b)
    ok = the_lab.wait_neighbours(a, b, timeout=15)
    click.echo(f"{a}-{b}: healed" + ("" if ok else " (babeld does not use it yet)"))


@lab.command()
@click.argument("a")
@click.argument("b")
@_name_option
@_user_errors
def cut(a: str, b: str, name: str) -> None:
    """Take link A-B down at both ends."""
    _require_root("cut", f"cut {a} {b} --name {name}")
    _load(name).cut(a, b)
    click.echo(f"{a}-{b}: cut")


@lab.command()
@click.argument("a")
@click.argument("b")
@_name_option
@_user_errors
def restore(a: str, b: str, name: str) -> None:
    """Bring a cut link A-B back and wait until babeld uses it."""
    _require_root("restore", f"restore {a} {b} --name {name}")
    t0 = time.monotonic()
    ok = _load(name).restore(a, b)
    took = time.monotonic() - t0
    click.echo(
        f"{a}-{b}: restored, babel neighbours again after {took:.1f}s"
        if ok
        else f"{a}-{b}: up, but babeld does not use it yet"
    )


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@_name_option
@_user_errors
def exec_(node: str, command: tuple[str, ...], name: str) -> None:
    """Run COMMAND inside NODE (or `internet`), e.g. `lab exec n1 -- ip route`."""
    _require_root("exec", f"exec {node} -- {' '.join(command)}")
    sys.exit(_load(name).exec(node, list(command)))


@lab.command()
@click.argument("a")
@click.argument("b")
@click.option("--seconds", "-s", default=3.0, show_default=True, help="How long to send.")
@_name_option
@_user_errors
def traffic(a: str, b: str, seconds: float, name: str) -> None:
    """Send real TCP traffic from node A to node B (or `internet`) with iperf3."""
    from cli.lab.measure import human_bytes

    _require_root("traffic", f"traffic {a} {b} --name {name}")
    the_lab = _load(name)
    the_lab.require_up()
    r = the_lab.traffic(a, b, seconds)
    click.echo(
        f"{a} -> {b}: sent {r.sent_bytes} bytes ({human_bytes(r.sent_bytes)}), received "
        f"{r.received_bytes} bytes in {r.seconds:.1f}s = {r.receiver_mbps:.1f} Mbit/s"
    )


VIEWS = ("nodes", "links", "contrib", "audit", "diagnose", "topology")


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("view")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--at", "node", help="Ask this node's broker [default: the first node].")
@_name_option
@_user_errors
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
    _require_root("view", f"view {view} --name {name}")
    the_lab = _load(name)
    the_lab.require_up()
    if not the_lab.agents:
        raise UserError(
            f"lab {name!r} runs no agents, so no node publishes records to view",
            fix=f"rebuild it with agents: `mutualmesh lab down --name {name}` and "
            f"`mutualmesh lab up --agents --name {name}`",
        )
    at = node or the_lab.t.names[0]
    the_lab._check_node(at)
    script = Path(sys.executable).parent / "mutualmesh"
    argv = [str(script), view, *args, "--broker", the_lab.addr(at)]
    argv += ["--community", str(the_lab.run_dir / "community.yaml")]
    sys.exit(the_lab.exec(at, argv))


@lab.command()
@click.argument("node")
@click.option(
    "--what",
    type=click.Choice(["agent", "babeld", "mosquitto", "all"]),
    default="agent",
    show_default=True,
)
@_name_option
@_user_errors
def kill(node: str, what: str, name: str) -> None:
    """Kill a node's agent (or daemons) with SIGKILL, as a crash or power cut would."""
    _require_root("kill", f"kill {node} --name {name}")
    stopped = _load(name).kill(node, what)
    click.echo(f"{node}: killed {', '.join(stopped) or 'nothing (not running)'}")


@lab.command()
@click.argument("node")
@_name_option
@_user_errors
def start(node: str, name: str) -> None:
    """Start whatever of a node's processes is not running."""
    _require_root("start", f"start {node} --name {name}")
    started = _load(name).start(node)
    click.echo(f"{node}: started {', '.join(started) or 'nothing (all running)'}")


DEMO_MAP = r"""
      internet
         |
        n1 ------- n2 ------- n3 ------- n4
         |                     |          |
        n6 ------- n7 ---------+          |
         |                                |
         +------------- n5 ---------------+
"""


def _say(text: str) -> None:
    """A heading line of the demo: what the next block shows."""
    click.echo("")
    click.secho(text, bold=True)


@lab.command()
@click.option("--agents/--no-agents", default=None, help="Run meshd in every node.")
@click.option("--seconds", default=2.0, show_default=True, help="Seconds of each traffic flow.")
@_name_option
@_user_errors
def demo(agents: bool | None, seconds: float, name: str) -> None:
    """A 7-node neighbourhood with one gateway: build it, send traffic, show what admins see."""
    from cli.lab.lab import Lab, check_name
    from cli.lab.measure import human_bytes
    from cli.lab.topology import neighbourhood

    check_name(name)
    _require_root("demo", f"demo --name {name}")
    topo = neighbourhood()
    the_lab = Lab(name, topo, agents=agents, agent_args=DEMO_AGENT_ARGS, echo=click.echo)
    gw = topo.gateways[0]
    click.secho("mutualmesh lab demo", bold=True)
    intro = [
        f"A street of {len(topo.nodes)} houses, each with a mesh router; the only internet is"
        f" {gw}'s uplink,",
        "which it shares. Every router is a network namespace on this machine running the real",
        "software: babeld (routing) and mosquitto (the router's own MQTT broker)"
        + (", plus meshd, the" if the_lab.agents else "."),
    ]
    if the_lab.agents:
        intro.append("node agent that measures links, counts bytes and signs what its router sees.")
    click.echo("\n".join(intro))
    click.echo(DEMO_MAP)
    _say("1. Build the mesh (namespaces, links, daemons; then wait for routes and agents)")
    t0 = time.monotonic()
    the_lab.up()
    click.echo(f"ready in {time.monotonic() - t0:.1f}s")
    for link in topo.mesh_links():
        the_lab.impair(link.a, link.b, rate=DEMO_LINK_RATE)
    click.echo(f"every link shaped to {DEMO_LINK_RATE} each way, like a good 5 GHz hop")

    _say("2. Real traffic (iperf3): two houses use the shared uplink, one sends to a neighbour")
    flows = [("n4", INTERNET_NAME), ("n7", INTERNET_NAME), ("n2", "n5")]
    for a, b in flows:
        path = the_lab.path(a, b)
        r = the_lab.traffic(a, b, seconds)
        relays = path[1:-2] if b == INTERNET_NAME else path[1:-1]
        role = [f"{', '.join(relays)} relay{'s' if len(relays) == 1 else ''}"] if relays else []
        if b == INTERNET_NAME and len(path) >= 2:
            role.append(f"{path[-2]} is the gateway")
        click.echo(
            f"{a} -> {b}: {human_bytes(r.sent_bytes)} at {r.receiver_mbps:.0f} Mbit/s,"
            f" path {' > '.join(path)}" + (f" ({'; '.join(role)})" if role else "")
        )
    traffic_ended = time.time()

    _say("3. What the lab sees: processes, babel routing and link impairments per node")
    click.echo(
        "   neighbours = babel neighbours, routes = nodes it can reach; a cost of 256 is a clean"
        " link\n   (loss raises it, and babeld then routes around the link)"
    )
    _print_status(the_lab.status())
    _say("4. Bytes each router carried on its mesh links (kernel counters, rx+tx)")
    click.echo("   relays carry bytes both ways; the uplink column is what the gateway sent out")
    _print_carried(the_lab)
    _admin_views(the_lab, traffic_ended)
    _hints(the_lab, demo=True)


def _print_carried(the_lab: Any) -> None:
    from cli.lab import netns
    from cli.lab.measure import human_bytes

    rows: list[tuple[str, ...]] = [("node", "mesh rx", "mesh tx", "uplink tx")]
    for n in the_lab.t.nodes:
        counters = netns.iface_counters(the_lab.ns(n.name))
        mesh = [k.side(n.name)[0] for k in the_lab.t.mesh_links(n.name)]
        rx = sum(counters.get(i, {}).get("rx_bytes", 0) for i in mesh)
        tx = sum(counters.get(i, {}).get("tx_bytes", 0) for i in mesh)
        up = counters.get("up0", {}).get("tx_bytes", 0) if n.gateway else 0
        rows.append((n.name, human_bytes(rx), human_bytes(tx), human_bytes(up) if up else ""))
    _table(rows)


def _admin_view(the_lab: Any, view: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run an admin command inside the first node, against that node's own broker.

    A view that does not answer within 30 s comes back as a failed run, not an exception.
    """
    node = the_lab.t.names[0]
    script = Path(sys.executable).parent / "mutualmesh"
    argv = [str(script), view, "--broker", the_lab.addr(node)]
    argv += ["--community", str(the_lab.run_dir / "community.yaml"), *extra]
    full = ["ip", "netns", "exec", the_lab.ns(node), *argv]
    try:
        return subprocess.run(full, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(full, 124, "", f"(`{view}` did not answer in 30 s)")


def _all_published_since(the_lab: Any, since: float) -> bool:
    """True once every node's newest record was issued after `since` (wall-clock seconds)."""
    proc = _admin_view(the_lab, "nodes", "--json")
    try:
        rows = json.loads(proc.stdout).get("nodes", [])
    except ValueError:
        return False
    elapsed = time.time() - since
    return len(rows) == len(the_lab.t.nodes) and all(
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


def _admin_views(the_lab: Any, traffic_ended: float) -> None:
    """The admin CLI's own views, read from a node's broker once the agents' records are in."""
    views = [v for v in ADMIN_VIEWS if importlib.util.find_spec(f"cli.commands.{v}")]
    if not views or not the_lab.agents:
        click.echo("\n(start the demo with --agents to see the admin views nodes, links, contrib)")
        return
    first = the_lab.t.names[0]
    _say(f"5. What an admin sees: signed records every router shares, read from {first}'s broker")
    click.echo(
        "   each agent publishes node/links/traffic records to its broker; neighbours relay them,"
        "\n   so every router holds the whole picture and the admin CLI can ask any of them"
    )
    t0 = time.monotonic()
    click.echo("waiting for every agent to publish its counters after the traffic ...")
    while not _all_published_since(the_lab, traffic_ended) and time.monotonic() - t0 < 45:
        time.sleep(1.0)
    took = time.monotonic() - t0
    click.echo(f"records from all nodes reached {first} ({took:.1f}s)")
    flag = "" if the_lab.name == "lab" else f" --name {the_lab.name}"
    for view in views:
        click.echo(f"\n$ mutualmesh lab view {view}{flag}")
        if view in VIEW_EXPLAIN:
            click.echo(f"   ({VIEW_EXPLAIN[view]})")
        proc = _admin_view(the_lab, view)
        click.echo((proc.stdout or proc.stderr).rstrip() or "(no output)")
