"""`lab status`: nodes, their processes and routes, links with impairments and babel costs."""

from __future__ import annotations

import json
from typing import Any

import click

from cli.commands.lab.common import load, name_option, require_root, table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@name_option
def status(as_json: bool, name: str) -> None:
    """Nodes, whether their processes run, routes, and link impairments and costs."""
    require_root("status", f"status --name {name}")
    st = load(name).status()
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    print_status(st)


def _yn(value: bool | None) -> str:
    return "-" if value is None else ("up" if value else "DOWN")


def print_status(st: dict[str, Any]) -> None:
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
    table(rows)
    link_rows: list[tuple[str, ...]] = [("link", "state", "impairment", "babel cost (each end)")]
    for k in st["links"]:
        costs = ", ".join(f"{node} {c if c is not None else '-'}" for node, c in k["cost"].items())
        imp = k["impairment"] + (f" (from {k['from']})" if k["impairment"] != "none" else "")
        link_rows.append((k["link"], "CUT" if k["cut"] else "up", imp, costs))
    if st["links"]:
        click.echo("")
        table(link_rows)
    for seg in st.get("segments", []):
        pairs = ", ".join(f"{k} {v}" for k, v in seg["pairs"].items()) or "all in range, no loss"
        members = ", ".join(seg["nodes"])
        click.echo(f"\nshared segment {seg['segment']} ({seg['iface']}): {members}; {pairs}")
    if st.get("internet"):
        i = st["internet"]
        click.echo(f"\ninternet: {i['v4']} in {i['namespace']}, sink {_yn(i['sink'])}")
    missing = st["missing_routes"]
    click.echo("\nhealth: " + ("all pairs routed" if not missing else "; ".join(missing[:5])))
