"""`mutualmesh audit`: findings with severity, subject, explanation and fix. Exit 3 if any."""

from __future__ import annotations

from typing import Any

import click

from cli.analysis.pipeline import run_audit
from cli.errors import ExitStatus
from cli.output import Column, View, emit_json, say
from cli.read.options import MeshArgs, mesh_options, open_mesh
from meshd import defaults
from meshd.audit import CHECKS, AuditPolicy, Finding
from meshd.findings import ABOUT

FINDINGS = View[Finding](
    [
        Column("severity", cell=lambda f: f.severity.value),
        Column("code", cell=lambda f: f.code.value),
        Column("subject", cell=lambda f: f.subject),
        Column("what", cell=lambda f: f.summary),
    ]
)


def _help() -> str:
    """The command's help, listing every check and code from the audit's own table."""
    lines = [
        "Find what is wrong or concentrated in the mesh. Each finding has a severity, a code, "
        "a subject, an explanation and a fix.",
        "",
        "Exit status: 0 when clean, 3 when there are findings, 1/2/4 on errors.",
        "",
        "Checks and the codes they report:",
    ]
    for check in CHECKS:
        lines.append("")
        lines.append(f"\b\n{check.name}:")
        lines.extend(f"  {code.value:<26} {ABOUT[code]}" for code in check.codes)
    return "\n".join(lines)


@click.command(help=_help())
@click.option(
    "--stale-after",
    type=click.IntRange(min=1),
    default=defaults.STALE_AFTER_S,
    show_default=True,
    help="Seconds without a record before a node is stale.",
)
@click.option("--explain/--short", default=True, help="Print each finding's explanation and fix.")
@mesh_options
def audit(stale_after: int, explain: bool, **kw: Any) -> None:
    args = MeshArgs(**kw)
    mesh = open_mesh(args)
    result = run_audit(mesh, AuditPolicy(stale_after_s=stale_after))
    if args.as_json:
        emit_json(
            {
                "source": mesh.source,
                "now": mesh.now,
                "clean": not result.findings,
                "stats": result.stats,
                "findings": [f.to_json() for f in result.findings],  # the core's own shape
            }
        )
    else:
        s = result.stats
        say(
            f"{s['nodes']} nodes, {s['links']} links, {s['components']} part(s); "
            f"{len(result.findings)} finding(s) from {mesh.source}"
        )
        if result.findings:
            FINDINGS.emit(result.findings, "table")
            if explain:
                seen: set[str] = set()
                for f in result.findings:
                    if f.code in seen:
                        continue
                    seen.add(f.code)
                    say(f"\n{f.code}: {f.explanation}\n  fix: {f.fix}")
        else:
            say("clean: nothing to report", style="green")
    if result.findings:
        click.get_current_context().exit(int(ExitStatus.FINDINGS))
