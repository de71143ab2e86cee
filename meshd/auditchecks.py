"""The audit's checks: each a function over one shared `Context`, listed in `CHECKS` with the
`FindingCode`s it can report; those on the shape of the mesh live in `meshd.auditgraph`. Adding a
finding: its code and one-line `ABOUT` in `meshd.findings`, and a few lines here or there (a new
function and one `CHECKS` row, or an addition to the check it belongs to). The audit never trusts
a node's word about itself where its neighbours' records can say otherwise; see `meshd.contrib`
for how claims are checked.
"""

from __future__ import annotations

from collections import Counter

from meshd.auditgraph import concentration, failure_points, links, pair, partitions
from meshd.contrib import Check
from meshd.errors import RejectReason
from meshd.findings import AuditCheck, Context, Finding, FindingCode, Severity
from meshd.nodestate import NodeState, node_state


def _claims(cx: Context, found: list[Finding]) -> None:
    """Contribution findings from `meshd.contrib`'s states: a contradicted figure is the
    claimant's own fault; a disputed one, a dispute of a link, or counters about a non-neighbour
    name every side and blame none (docs/contribution.md)."""
    name = cx.view.name
    for c in cx.data.contributions:
        for label, code, fig in (
            ("relayed", FindingCode.UNVERIFIED_RELAYED, c.relayed),
            ("gateway", FindingCode.UNVERIFIED_GATEWAY, c.gateway),
            ("consumed", FindingCode.UNVERIFIED_CONSUMED, c.consumed),
        ):
            figures = {"claimed": fig.value, "evidence": fig.evidence, **fig.to_json()}
            if fig.check is Check.CONTRADICTED:
                found.append(
                    Finding(
                        code,
                        Severity.CRITICAL,
                        c.hostname,
                        f"claims {fig.value:,} B {label}, which counters make impossible:"
                        f" {fig.evidence}",
                        "A contribution figure must be backed by counters no single node can "
                        "bend. This one is contradicted by the node's own counters or by "
                        "counters both ends of its links agree on, so it does not count.",
                        "Ask the node's owner to check its agent version and counters; until "
                        "fixed, its contribution is not counted.",
                        figures,
                    )
                )
            elif fig.check is Check.DISPUTED:
                between = f" ({', '.join(fig.disputes)})" if fig.disputes else ""
                found.append(
                    Finding(
                        FindingCode.DISPUTED_CLAIM,
                        Severity.WARNING,
                        c.hostname,
                        f"{label} {fig.value:,} B is disputed{between}: {fig.evidence}",
                        "Counters that should agree do not; the figure earns nothing until they "
                        "do. Neither side is blamed: either may count wrongly, or lie.",
                        "Compare the named routers' counters (and, for consumption, whether the "
                        "router itself moves traffic); update the agent on the one that is off.",
                        figures,
                    )
                )
        for about in c.phantoms:
            found.append(
                Finding(
                    FindingCode.PHANTOM_REPORT,
                    Severity.WARNING,
                    c.hostname,
                    f"{c.hostname} publishes counters about {name(about)}, with which it has no "
                    "link both ends report",
                    "Counters count only over a link both ends list as up; these are ignored "
                    "and may be an attempt to frame the other node.",
                    "Check the reporter's agent and links; its own figures stand or fall on "
                    "its real links.",
                    {"about": name(about)},
                )
            )
        for m in c.mismatches:
            if m.sender != c.node_id:
                continue  # each direction is listed by both ends: report it once
            link = pair(name(m.sender), name(m.receiver))
            found.append(
                Finding(
                    FindingCode.COUNTER_MISMATCH,
                    Severity.WARNING,
                    link,
                    f"dispute of link {link}: {name(m.sender)} says it sent {m.sent:,} B, "
                    f"{name(m.receiver)} says it got {m.received:,} B",
                    "Both ends count the same bytes; more than the loss tolerance apart means "
                    "one of them counts wrongly (or lies). Neither is blamed.",
                    "Compare both routers' interface counters; update the agent on the one that "
                    "is off.",
                    {
                        "sender": name(m.sender),
                        "receiver": name(m.receiver),
                        "sent": m.sent,
                        "received": m.received,
                    },
                )
            )


def _stale(cx: Context, found: list[Finding]) -> None:
    view = cx.view
    for nv in view.nodes.values():
        age = view.now - nv.last_seen
        if node_state(view, nv, cx.policy.stale_after_s) in (NodeState.STALE, NodeState.OFFLINE):
            found.append(
                Finding(
                    FindingCode.STALE_NODE,
                    Severity.WARNING,
                    nv.hostname,
                    f"no fresh record for {int(age)} s"
                    + (" (its broker says offline)" if nv.status == "offline" else ""),
                    "The node stopped publishing: it may be off, cut off or its agent stopped.",
                    "Check power and the agent (`logread | grep meshd` on the router).",
                    {"age_s": int(age)},
                )
            )


_REJECTED: dict[RejectReason, tuple[FindingCode, str]] = {
    RejectReason.UNENROLLED: (
        FindingCode.REJECTED_UNENROLLED,
        "unenrolled or expired certificate",
    ),
    RejectReason.BAD_SIGNATURE: (FindingCode.REJECTED_BAD_SIGNATURE, "bad signature"),
    RejectReason.REVOKED: (FindingCode.REJECTED_REVOKED, "revoked key"),
    RejectReason.OTHER_COMMUNITY: (FindingCode.REJECTED_OTHER_COMMUNITY, "another community"),
    RejectReason.NODE_ID_MISMATCH: (
        FindingCode.REJECTED_NODE_ID_MISMATCH,
        "node id not matching its key",
    ),
    RejectReason.MALFORMED: (FindingCode.REJECTED_MALFORMED, "malformed"),
}


def _trust(cx: Context, found: list[Finding]) -> None:
    data, view = cx.data, cx.view
    for reason, (code, what) in _REJECTED.items():
        count = data.rejections.get(reason, 0)
        if count:
            found.append(
                Finding(
                    code,
                    Severity.CRITICAL
                    if reason is not RejectReason.OTHER_COMMUNITY
                    else Severity.NOTICE,
                    "mesh",
                    f"{count} record(s) refused: {what}",
                    "Someone publishes records that do not verify against this community's "
                    "admin keys; they were ignored, but the device is on the mesh.",
                    "Find the device (see unknown-neighbour findings) and enroll it with "
                    "`mutualmesh node add`, or remove it.",
                    {"count": count},
                )
            )
    revoked = set(data.revoked)
    for node_id, reporters in sorted(view.unknown_neighbours.items()):
        who = ", ".join(sorted(view.name(r) for r in reporters))
        if node_id in revoked:
            found.append(
                Finding(
                    FindingCode.REVOKED_NEIGHBOUR,
                    Severity.CRITICAL,
                    node_id,
                    f"revoked node {node_id} is still a neighbour of {who}",
                    "The admins revoked this key, yet the device is still linked to the mesh.",
                    "Unplug or re-flash the device; block its MAC on its neighbours.",
                    {"reported_by": sorted(reporters)},
                )
            )
        else:
            found.append(
                Finding(
                    FindingCode.UNKNOWN_NEIGHBOUR,
                    Severity.WARNING,
                    node_id,
                    f"{who} see(s) neighbour {node_id}, which has no valid records",
                    "A device talks to the mesh without an enrollment certificate (or its "
                    "records were refused).",
                    "Enroll it with `mutualmesh node add`, or find and remove it.",
                    {"reported_by": sorted(reporters)},
                )
            )


def _addresses(cx: Context, found: list[Finding]) -> None:
    view = cx.view
    owners: dict[str, list[str]] = {}
    for nv in view.nodes.values():
        if nv.info is not None:
            for addr in nv.info.addresses:
                owners.setdefault(addr, []).append(nv.hostname)
    for addr, hosts in sorted(owners.items()):
        if len(hosts) > 1:
            found.append(
                Finding(
                    FindingCode.ADDRESS_CONFLICT,
                    Severity.CRITICAL,
                    addr,
                    f"{addr} is claimed by {', '.join(sorted(hosts))}",
                    "Two routers announce the same address; traffic for it reaches only one.",
                    "Re-provision one of them (`mutualmesh node add` assigns free addresses).",
                    {"nodes": sorted(hosts)},
                )
            )


def _drift(cx: Context, found: list[Finding]) -> None:
    view, community = cx.view, cx.data.community
    versions: Counter[str] = Counter()
    for nv in view.nodes.values():
        info = nv.info
        if info is None:
            continue
        versions[info.software] += 1
        cfg = info.config
        if community is None or cfg is None:
            continue
        problems = []
        if cfg.mesh_id != community.mesh_id:
            problems.append(f"mesh id {cfg.mesh_id!r} (community: {community.mesh_id!r})")
        if cfg.routing != community.routing:
            problems.append(f"routing {cfg.routing} (community: {community.routing})")
        for band, channel in cfg.channels.items():
            want = community.bands.get(band)
            if want is not None and want.channel != channel:
                problems.append(f"{band} channel {channel} (community: {want.channel})")
        if problems:
            found.append(
                Finding(
                    FindingCode.CONFIG_DRIFT,
                    Severity.WARNING,
                    nv.hostname,
                    "runs " + "; ".join(problems),
                    "A router whose radio settings differ from the community's cannot mesh "
                    "with the others on that band.",
                    "Push the community configuration again (`mutualmesh node push`).",
                    {"problems": problems},
                )
            )
    if len(versions) > 1:
        common, _ = versions.most_common(1)[0]
        others = {v: n for v, n in versions.items() if v != common}
        found.append(
            Finding(
                FindingCode.SOFTWARE_DRIFT,
                Severity.NOTICE,
                "mesh",
                f"{len(versions)} software versions in use; most run {common!r}, "
                + ", ".join(f"{n} run {v!r}" for v, n in sorted(others.items())),
                "Mixed versions are normal during an upgrade, but old ones miss fixes.",
                "Upgrade the stragglers.",
                {"versions": dict(versions)},
            )
        )


def _regressions(cx: Context, found: list[Finding]) -> None:
    for r in cx.data.regressions:
        found.append(
            Finding(
                FindingCode.COUNTER_REGRESSION,
                Severity.CRITICAL,
                cx.view.name(r.node_id),
                f"{r.counter} went down from {r.before:,} to {r.after:,} without a restart",
                "Cumulative counters only grow unless the node restarts its counting (a new "
                "boot id or start time). A drop means the counters were reset or edited.",
                "Check the node's agent logs and its clock; if the agent was replaced, publish "
                "a new counting start time so the history stays honest.",
                {"counter": r.counter, "before": r.before, "after": r.after},
            )
        )


#: Every check the audit runs, in order, with the codes it can report.
CHECKS: tuple[AuditCheck, ...] = (
    AuditCheck(
        "claims",
        (
            FindingCode.UNVERIFIED_RELAYED,
            FindingCode.UNVERIFIED_GATEWAY,
            FindingCode.UNVERIFIED_CONSUMED,
            FindingCode.DISPUTED_CLAIM,
            FindingCode.PHANTOM_REPORT,
            FindingCode.COUNTER_MISMATCH,
        ),
        _claims,
    ),
    AuditCheck("counters", (FindingCode.COUNTER_REGRESSION,), _regressions),
    AuditCheck(
        "links",
        (FindingCode.ONE_SIDED_LINK, FindingCode.ASYMMETRIC_LINK, FindingCode.FLAPPING_LINK),
        links,
    ),
    AuditCheck("freshness", (FindingCode.STALE_NODE,), _stale),
    AuditCheck(
        "trust",
        (
            *(code for code, _ in _REJECTED.values()),
            FindingCode.REVOKED_NEIGHBOUR,
            FindingCode.UNKNOWN_NEIGHBOUR,
        ),
        _trust,
    ),
    AuditCheck("addresses", (FindingCode.ADDRESS_CONFLICT,), _addresses),
    AuditCheck("drift", (FindingCode.CONFIG_DRIFT, FindingCode.SOFTWARE_DRIFT), _drift),
    AuditCheck("partitions", (FindingCode.PARTITION, FindingCode.GATEWAY_UNREACHABLE), partitions),
    AuditCheck(
        "failure-points", (FindingCode.ARTICULATION_POINT, FindingCode.BRIDGE), failure_points
    ),
    AuditCheck(
        "concentration",
        (
            FindingCode.PATH_CONCENTRATION,
            FindingCode.RELAY_CONCENTRATION,
            FindingCode.UPLINK_CONCENTRATION,
        ),
        concentration,
    ),
)
