"""What can go wrong in a commons, found from verified records and said in plain words.

Each finding names its subject, says what was seen (with the figures), why it matters, and how to
fix it. `audit` computes the graph facts once and runs every check of `meshd.auditchecks.CHECKS`;
the codes they report are `meshd.findings.FindingCode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshd.auditchecks import CHECKS
from meshd.findings import (
    SEVERITY_ORDER,
    AuditCheck,
    AuditInput,
    AuditPolicy,
    Context,
    Finding,
    FindingCode,
    Severity,
)
from meshd.graph import Betweenness, betweenness, components, cut_points

__all__ = [
    "CHECKS",
    "AuditCheck",
    "AuditInput",
    "AuditPolicy",
    "AuditResult",
    "Finding",
    "FindingCode",
    "Severity",
    "audit",
]


@dataclass
class AuditResult:
    findings: list[Finding]
    betweenness: Betweenness
    components: list[list[str]]
    stats: dict[str, Any]


def audit(data: AuditInput, policy: AuditPolicy | None = None) -> AuditResult:
    policy = policy or AuditPolicy()
    view = data.view
    cx = Context(
        data,
        policy,
        components(view.adjacency),
        betweenness(view.adjacency, max_sources=policy.max_betweenness_sources),
        cut_points(view.adjacency),
    )
    found: list[Finding] = []
    for check in CHECKS:
        check.run(cx, found)
    cx.stats.update(
        {
            "nodes": len(view.nodes),
            "links": sum(1 for link in view.links.values() if link.in_graph),
            "components": len(cx.comps),
            "articulation_points": len(cx.cuts.points),
            "bridges": len(cx.cuts.bridges),
        }
    )
    found.sort(key=lambda x: (SEVERITY_ORDER[x.severity], x.code, x.subject))
    return AuditResult(found, cx.bt, cx.comps, cx.stats)
