"""`mutualmesh contrib`: what each node gives and takes, and whether its neighbours back it up."""

from __future__ import annotations

from typing import Any

import click

from cli.analysis.pipeline import contribution_json, contributions_for
from cli.mesh import MeshArgs, mesh_options, open_mesh
from cli.output import emit_csv, emit_json, human_age, human_bytes, parse_duration, say, table
from meshd.contrib import Check, Figure, cost_share

SORT = {
    "relay": lambda c: c.relayed.value,
    "gateway": lambda c: c.gateway.value,
    "uptime": lambda c: c.uptime_s.value,
    "score": lambda c: c.score,
}


def _mark(fig: Figure) -> str:
    return {Check.VERIFIED: "✓", Check.CONTRADICTED: "✗", Check.UNCHECKED: "?"}[fig.check]


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
@click.option(
    "--cost-share",
    "amount",
    type=click.FloatRange(min=0),
    default=None,
    metavar="AMOUNT",
    help="Split AMOUNT of community costs: equal base + share by consumption.",
)
@mesh_options
def contrib(since: str | None, by: str, as_csv: bool, amount: float | None, **kw: Any) -> None:
    """Per node: bytes relayed for others, uplink bytes served to others, bytes consumed,
    uptime, share of the total, and for each figure whether the neighbours' own counters verify
    it (✓ verified, ✗ contradicted, ? nobody can check). Only verified figures earn score."""
    args = MeshArgs(**kw)
    since_s = parse_duration(since) if since else None
    mesh = open_mesh(args)
    items, window, _ = contributions_for(mesh, args.archive, since_s)
    items.sort(key=lambda c: (-SORT[by](c), c.hostname))
    if amount is not None:
        shares = cost_share(items, amount, mesh.community.contribution)
        policy = mesh.community.contribution
        if args.as_json:
            emit_json(
                {
                    "amount": amount,
                    "base_share": policy.base_share,
                    "consumption_share": policy.consumption_share,
                    "window": window.note,
                    "members": [
                        {
                            "name": s.hostname,
                            "id": s.node_id,
                            "base": round(s.base, 2),
                            "consumption": round(s.consumption, 2),
                            "total": round(s.total, 2),
                        }
                        for s in shares
                    ],
                }
            )
            return
        cols = ["name", "consumed", "base", "by consumption", "total"]
        consumed = {c.node_id: c.consumed for c in items}
        rows = [
            [
                s.hostname,
                f"{human_bytes(consumed[s.node_id].value)} {_mark(consumed[s.node_id])}",
                f"{s.base:.2f}",
                f"{s.consumption:.2f}",
                f"{s.total:.2f}",
            ]
            for s in shares
        ]
        if as_csv:
            emit_csv(
                ["name", "id", "consumed_bytes", "base", "consumption", "total"],
                [
                    [
                        s.hostname,
                        s.node_id,
                        consumed[s.node_id].value,
                        round(s.base, 2),
                        round(s.consumption, 2),
                        round(s.total, 2),
                    ]
                    for s in shares
                ],
            )
            return
        table(
            cols,
            rows,
            title=f"cost share of {amount:.2f}: {policy.base_share:.0%} equal, "
            f"{policy.consumption_share:.0%} by consumption ({window.note})",
            right=cols[1:],
        )
        return
    if args.as_json:
        emit_json(
            {
                "window": window.note,
                "baseline_at": window.baseline_at,
                "nodes": [contribution_json(c) for c in items],
            }
        )
        return
    if as_csv:
        emit_csv(
            [
                "name",
                "id",
                "relayed_bytes",
                "relayed_check",
                "gateway_bytes",
                "gateway_check",
                "consumed_bytes",
                "consumed_check",
                "uptime_s",
                "uptime_check",
                "relay_share",
                "gateway_share",
                "score",
            ],
            [
                [
                    c.hostname,
                    c.node_id,
                    c.relayed.value,
                    c.relayed.check.value,
                    c.gateway.value,
                    c.gateway.check.value,
                    c.consumed.value,
                    c.consumed.check.value,
                    c.uptime_s.value,
                    c.uptime_s.check.value,
                    round(c.share["relayed"], 4),
                    round(c.share["gateway"], 4),
                    round(c.score, 4),
                ]
                for c in items
            ],
        )
        return
    rows = [
        [
            c.hostname,
            f"{human_bytes(c.relayed.value)} {_mark(c.relayed)}",
            f"{human_bytes(c.gateway.value)} {_mark(c.gateway)}",
            f"{human_bytes(c.consumed.value)} {_mark(c.consumed)}",
            f"{human_age(c.uptime_s.value)} {_mark(c.uptime_s)}",
            f"{c.share['relayed']:.0%}",
            f"{c.share['gateway']:.0%}",
            f"{c.score:.2f}",
            "verified" if c.verified else "contradicted",
        ]
        for c in items
    ]
    cols = [
        "name",
        "relayed",
        "uplink",
        "consumed",
        "uptime",
        "relay %",
        "uplink %",
        "score",
        "check",
    ]
    table(cols, rows, title=f"contribution {window.note}", right=cols[1:-1])
    bad = [c for c in items if not c.verified]
    for c in bad:
        for label, fig in (("relayed", c.relayed), ("uplink", c.gateway), ("consumed", c.consumed)):
            if fig.check is Check.CONTRADICTED:
                say(f"✗ {c.hostname} {label}: claims {fig.value:,} B; {fig.evidence}")
