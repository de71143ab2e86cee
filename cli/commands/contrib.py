"""`mutualmesh contrib`: what each node gives and takes, and whether its neighbours back it up.

Both views are column tables (`cli.output.View`): a column is said once, with its table cell,
its JSON value and its CSV fields. A new verification state is one entry in `MARK` (and in
`cli.output.STYLE` for its colour); a new figure is one `_figure` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cli.analysis.pipeline import contributions_for
from cli.analysis.views import figure_json
from cli.output import (
    Column,
    View,
    human_age,
    human_bytes,
    output_format,
    parse_duration,
    say,
)
from cli.read.options import MeshArgs, cost_share_option, mesh_options, open_mesh
from meshd.contrib import LEGEND, Check, Contribution, CostShare, Figure, cost_share

SORT: dict[str, Callable[[Contribution], float]] = {
    "relay": lambda c: c.relayed.value,
    "gateway": lambda c: c.gateway.value,
    "uptime": lambda c: c.uptime_s.value,
    "score": lambda c: c.score,
}

#: How each verification state is marked next to a figure in the table.
MARK: dict[Check, str] = {
    Check.VERIFIED: "✓",
    Check.PENDING: "…",
    Check.DISPUTED: "≠",
    Check.CONTRADICTED: "✗",
    Check.UNCHECKED: "?",
}


def _mark(fig: Figure) -> str:
    return MARK.get(fig.check, "?")


def _figure(
    header: str,
    key: str,
    csv_name: str,
    get: Callable[[Contribution], Figure],
    fmt: Callable[[Any], str],
) -> Column[Contribution]:
    """A checked figure: value and mark in the table, value+check+evidence in JSON, value and
    check as two CSV fields."""
    return Column(
        header,
        cell=lambda c: f"{fmt(get(c).value)} {_mark(get(c))}",
        json=(key, lambda c: figure_json(get(c))),
        csv=((key, lambda c: get(c).value), (f"{csv_name}_check", lambda c: get(c).check.value)),
        right=True,
    )


CONTRIBUTION = View[Contribution](
    [
        Column("name", cell=lambda c: c.hostname, json=("name", lambda c: c.hostname)),
        Column(None, json=("id", lambda c: c.node_id)),
        _figure("relayed", "relayed_bytes", "relayed", lambda c: c.relayed, human_bytes),
        _figure("uplink", "gateway_bytes", "gateway", lambda c: c.gateway, human_bytes),
        _figure("consumed", "consumed_bytes", "consumed", lambda c: c.consumed, human_bytes),
        _figure("uptime", "uptime_s", "uptime", lambda c: c.uptime_s, human_age),
        Column(
            "relay %",
            cell=lambda c: f"{c.share['relayed']:.0%}",
            csv=(("relay_share", lambda c: round(c.share["relayed"], 4)),),
            right=True,
        ),
        Column(
            "uplink %",
            cell=lambda c: f"{c.share['gateway']:.0%}",
            csv=(("gateway_share", lambda c: round(c.share["gateway"], 4)),),
            right=True,
        ),
        Column(
            None,
            json=("share", lambda c: {k: round(v, 4) for k, v in c.share.items()}),
            csv=(),
        ),
        Column(
            "score",
            cell=lambda c: f"{c.score:.2f}",
            json=("score", lambda c: round(c.score, 4)),
            right=True,
        ),
        Column(
            "check",
            cell=lambda c: c.state.value,
            json=("state", lambda c: c.state.value),
            csv=(("state", lambda c: c.state.value),),
        ),
        Column(None, json=("verified", lambda c: c.verified), csv=()),
        Column(None, json=("phantoms", lambda c: list(c.phantoms)), csv=()),
    ]
)


def _cost_view(consumed: dict[str, Figure]) -> View[CostShare]:
    return View[CostShare](
        [
            Column("name", cell=lambda s: s.hostname, json=("name", lambda s: s.hostname)),
            Column(None, json=("id", lambda s: s.node_id)),
            Column(
                "consumed",
                cell=lambda s: (
                    f"{human_bytes(consumed[s.node_id].value)} {_mark(consumed[s.node_id])}"
                ),
                csv=(("consumed_bytes", lambda s: consumed[s.node_id].value),),
                right=True,
            ),
            Column(
                "billed on",
                cell=lambda s: f"{human_bytes(s.basis)} ({s.basis_kind})",
                json=("basis", lambda s: {"bytes": s.basis, "kind": s.basis_kind}),
                csv=(("basis_bytes", lambda s: s.basis), ("basis_kind", lambda s: s.basis_kind)),
                right=True,
            ),
            Column(
                "base",
                cell=lambda s: f"{s.base:.2f}",
                json=("base", lambda s: round(s.base, 2)),
                right=True,
            ),
            Column(
                "by consumption",
                cell=lambda s: f"{s.consumption:.2f}",
                json=("consumption", lambda s: round(s.consumption, 2)),
                right=True,
            ),
            Column(
                "total",
                cell=lambda s: f"{s.total:.2f}",
                json=("total", lambda s: round(s.total, 2)),
                right=True,
            ),
        ]
    )


@click.command()
@click.option(
    "--since",
    "since",
    default=None,
    metavar="DURATION",
    help="Window, e.g. 24h, 7d (needs --archive history).",
)
@click.option(
    "--by",
    "by",
    type=click.Choice(sorted(SORT)),
    default="score",
    show_default=True,
    help="Sort order.",
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@cost_share_option("Split AMOUNT of community costs: equal base + share by consumption.")
@mesh_options
def contrib(since: str | None, by: str, as_csv: bool, amount: float | None, **kw: Any) -> None:
    """Per node: bytes relayed for others, uplink bytes served to others, bytes consumed,
    uptime, share of the total, and for each figure whether counters no single node can bend
    back it up: ✓ verified (the neighbours' and endpoints' counters allow it), … pending
    (records too far apart in time to judge yet), ≠ disputed (counters that should agree do
    not; nobody is blamed), ✗ contradicted (impossible by its own or agreed counters),
    ? unchecked (nobody can check). Only verified figures earn score; the cost share bills
    verified consumption, else its lower bound. --json carries each figure's bounds and
    evidence; docs/contribution.md says what each check tolerates."""
    args = MeshArgs(**kw)
    since_s = parse_duration(since) if since else None
    fmt = output_format(args.as_json, as_csv)
    mesh = open_mesh(args)
    items, window, _ = contributions_for(mesh, since_s)
    items.sort(key=lambda c: (-SORT[by](c), c.hostname))
    if amount is not None:
        policy = mesh.community.contribution
        _cost_view({c.node_id: c.consumed for c in items}).emit(
            cost_share(items, amount, policy),
            fmt,
            title=f"cost share of {amount:.2f}: {policy.base_share:.0%} equal, "
            f"{policy.consumption_share:.0%} by consumption ({window.note})",
            json_key="members",
            json_extra={
                "amount": amount,
                "base_share": policy.base_share,
                "consumption_share": policy.consumption_share,
                "window": window.note,
            },
        )
        return
    CONTRIBUTION.emit(
        items,
        fmt,
        title=f"contribution {window.note}",
        json_key="nodes",
        json_extra={"window": window.note, "baseline_at": window.baseline_at},
    )
    if fmt != "table":
        return
    for state in Check:
        say(f"{MARK[state]} {state.value}: {LEGEND[state]}")
    for c in items:
        for label, fig in (("relayed", c.relayed), ("uplink", c.gateway), ("consumed", c.consumed)):
            if fig.check in (Check.CONTRADICTED, Check.DISPUTED, Check.PENDING):
                mark = MARK[fig.check]
                say(f"{mark} {c.hostname} {label}: claims {fig.value:,} B; {fig.evidence}")
