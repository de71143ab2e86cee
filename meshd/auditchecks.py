"""The audit's checks: each a function over one shared `Context`, listed in `CHECKS` with the
`FindingCode`s it can report. Adding a finding: its code and one-line `ABOUT` in
`meshd.findings`, and a few lines here (a new function and one `CHECKS` row, or an addition to
the check it belongs to). The audit never trusts a node's word about itself where its
neighbours' records can say otherwise; see `meshd.contrib` for how claims are checked.
"""

from __future__ import annotations

from collections import Counter

from meshd.contrib import Check
from meshd.errors import RejectReason
from meshd.findings import AuditCheck, Context, Finding, FindingCode, Severity
from meshd.graph import gini as gini_of
from meshd.nodestate import NodeState, node_state
from meshd.topology import LinkState


def _pair(x: str, y: str) -> str:
    return f"{x}–{y}" if x <= y else f"{y}–{x}"


def _claims(cx: Context, found: list[Finding]) -> None:
    name = cx.view.name
    for c in cx.data.contributions:
        for label, code, fig in (
            ("relayed", FindingCode.UNVERIFIED_RELAYED, c.relayed),
            ("gateway", FindingCode.UNVERIFIED_GATEWAY, c.gateway),
            ("consumed", FindingCode.UNVERIFIED_CONSUMED, c.consumed),
        ):
            if fig.check is not Check.CONTRADICTED:
                continue
            found.append(
                Finding(
                    code,
                    Severity.CRITICAL,
                    c.hostname,
                    f"claims {fig.value:,} B {label} but its neighbours' counters say otherwise:"
                    f" {fig.evidence}",
                    "A contribution figure must be backed by the neighbours' own counters. This "
                    "one is not, so it does not count, and the node's agent or owner may be "
                    "misreporting.",
                    "Ask the node's owner to check its agent version and counters; until fixed, "
                    "its contribution is not counted.",
                    {"claimed": fig.value, "evidence": fig.evidence},
                )
            )
        for m in c.mismatches:
            if m.sender != c.node_id:
                continue
            found.append(
                Finding(
                    FindingCode.COUNTER_MISMATCH,
                    Severity.WARNING,
                    f"{name(m.sender)}→{name(m.receiver)}",
                    f"{name(m.sender)} says it sent {m.sent:,} B, {name(m.receiver)} says it got "
                    f"{m.received:,} B",
                    "Both ends count the same bytes; more than the loss tolerance apart means "
                    "one of them counts wrongly (or lies).",
                    "Compare both routers' interface counters; update the agent on the one that "
                    "is off.",
                    {"sent": m.sent, "received": m.received},
                )
            )


_LINK_FINDINGS = frozenset({LinkState.ONE_SIDED, LinkState.ASYMMETRIC, LinkState.FLAPPING})


def _links(cx: Context, found: list[Finding]) -> None:
    view = cx.view
    name = view.name
    for link in view.links.values():
        if link.state not in _LINK_FINDINGS:
            continue  # most links: skip before naming them
        subject = _pair(name(link.a), name(link.b))
        if link.state is LinkState.ONE_SIDED:
            found.append(
                Finding(
                    FindingCode.ONE_SIDED_LINK,
                    Severity.WARNING,
                    subject,
                    "one-sided link: "
                    + link.reason.replace(link.a, name(link.a)).replace(link.b, name(link.b)),
                    "One router hears the other but not the reverse, so routes over it fail or "
                    "flap. Typical causes: very different transmit power, a firewall, or one "
                    "side just went down.",
                    "Check both radios' power and antenna alignment and both routers' "
                    "firewalls; if a node was removed, this clears once its records expire.",
                )
            )
        elif link.state is LinkState.ASYMMETRIC:
            found.append(
                Finding(
                    FindingCode.ASYMMETRIC_LINK,
                    Severity.WARNING,
                    subject,
                    f"asymmetric link: {link.reason}",
                    "The link is much worse in one direction; babel will use it both ways at "
                    "the worse cost, and TCP over it stalls.",
                    "Look for interference near the receiver on the bad side, or a mismatched "
                    "transmit power or antenna.",
                    {"loss_ab": link.ab.loss, "loss_ba": link.ba.loss},
                )
            )
        elif link.state is LinkState.FLAPPING:
            found.append(
                Finding(
                    FindingCode.FLAPPING_LINK,
                    Severity.WARNING,
                    subject,
                    f"flapping link: {link.reason}",
                    "A link that keeps going up and down makes routes change all the time.",
                    "Check power supplies, cables and radio alignment on both ends.",
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


def _partitions(cx: Context, found: list[Finding]) -> None:
    view, comps, previous = cx.view, cx.comps, cx.data.previous_adjacency
    name = view.name
    gateways = {n for n, nv in view.nodes.items() if nv.is_gateway}
    if len(comps) > 1:
        main = set(comps[0])
        for comp in comps[1:]:
            members = set(comp)
            # where was it attached? links its members (or the main part) still mention
            attached = sorted(
                {
                    other
                    for (a, b), link in view.links.items()
                    for x, other in ((a, b), (b, a))
                    if x in members and other in main
                }
                | {other for x in members for other in previous.get(x, {}) if other in main}
            )
            where = (
                f"; it was attached through {', '.join(name(a) for a in attached)}"
                if attached
                else ""
            )
            found.append(
                Finding(
                    FindingCode.PARTITION,
                    Severity.CRITICAL,
                    ", ".join(name(n) for n in comp[:10]) + (" …" if len(comp) > 10 else ""),
                    f"{len(comp)} node(s) cannot reach the other {len(main)}{where}",
                    "The mesh is split: nodes on one side cannot reach the other side, nor its "
                    "gateways.",
                    "Restore the link between the parts (check the attaching nodes and their "
                    "radios), or add a second path so one failure cannot split the mesh again.",
                    {
                        "nodes": [name(n) for n in comp],
                        "attached_through": [name(a) for a in attached],
                    },
                )
            )
    if gateways:
        for comp in comps:
            if not gateways & set(comp):
                found.append(
                    Finding(
                        FindingCode.GATEWAY_UNREACHABLE,
                        Severity.CRITICAL,
                        ", ".join(name(n) for n in comp[:10]) + (" …" if len(comp) > 10 else ""),
                        f"{len(comp)} node(s) have no path to any gateway",
                        "These members have no internet access through the mesh.",
                        "Reconnect this part of the mesh, or add a gateway in it.",
                        {"nodes": len(comp)},
                    )
                )


def _concentration(cx: Context, found: list[Finding]) -> None:
    view, contributions, bt, policy = cx.view, cx.data.contributions, cx.bt, cx.policy
    stats = cx.stats
    stats |= {
        "betweenness_sources": bt.sources,
        "betweenness_exact": bt.exact,
    }
    if len(view.nodes) < policy.min_nodes_for_concentration:
        return
    top = bt.top()
    if top is not None:
        node, share = top
        stats["top_path_share"] = {"node": view.name(node), "share": round(share, 4)}
        if share > policy.path_share_max:
            how = "exact" if bt.exact else f"estimated from {bt.sources} sampled sources"
            found.append(
                Finding(
                    FindingCode.PATH_CONCENTRATION,
                    Severity.WARNING,
                    view.name(node),
                    f"{share:.0%} of shortest paths between other nodes go through "
                    f"{view.name(node)} ({how})",
                    "Whoever runs this router can see, slow or stop most of the community's "
                    "traffic: power the commons should not hand to one member.",
                    "Add links that bypass it, so routes have alternatives.",
                    {"share": round(share, 4), "exact": bt.exact, "sources": bt.sources},
                )
            )
    relayed = [c.relayed.value for c in contributions]
    if sum(relayed) > 0:
        g = gini_of(relayed)
        stats["relay_gini"] = round(g, 4)
        if g > policy.relay_gini_max:
            top_c = max(contributions, key=lambda c: c.relayed.value)
            found.append(
                Finding(
                    FindingCode.RELAY_CONCENTRATION,
                    Severity.NOTICE,
                    "mesh",
                    f"relaying is concentrated (Gini {g:.2f}); {top_c.hostname} carries "
                    f"{top_c.share.get('relayed', 0):.0%}",
                    "A few routers carry everyone's traffic; they wear out and their owners "
                    "pay the power.",
                    "Add links elsewhere, or recognise these members in the cost share.",
                    {"gini": round(g, 4)},
                )
            )
    capacity = {
        n: nv.info.gateway_kbit for n, nv in view.nodes.items() if nv.info and nv.info.gateway_kbit
    }
    total = sum(capacity.values())
    if total:
        node, kbit = max(capacity.items(), key=lambda kv: (kv[1], kv[0]))
        share = kbit / total
        stats["top_uplink_share"] = {"node": view.name(node), "share": round(share, 4)}
        if share > policy.uplink_share_max:
            found.append(
                Finding(
                    FindingCode.UPLINK_CONCENTRATION,
                    Severity.WARNING if len(capacity) > 1 else Severity.NOTICE,
                    view.name(node),
                    f"{view.name(node)} holds {share:.0%} of the mesh's uplink capacity "
                    f"({len(capacity)} gateway(s))",
                    "If this member leaves or its line fails, most of the community loses the "
                    "internet.",
                    "Invite more members to share an uplink.",
                    {"share": round(share, 4), "gateways": len(capacity)},
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


def _failure_points(cx: Context, found: list[Finding]) -> None:
    name = cx.view.name
    for node, cut in sorted(cx.cuts.points.items()):
        found.append(
            Finding(
                FindingCode.ARTICULATION_POINT,
                Severity.WARNING,
                name(node),
                f"if {name(node)} fails, {cut} node(s) lose the rest of the mesh",
                "This router is the only way between two parts of the mesh: a single point of "
                "failure.",
                "Add a link (another radio path or a cable) between the nodes on either side.",
                {"cut_off": cut},
            )
        )
    for (a, b), cut in sorted(cx.cuts.bridges.items()):
        found.append(
            Finding(
                FindingCode.BRIDGE,
                Severity.WARNING,
                _pair(name(a), name(b)),
                f"the link {_pair(name(a), name(b))} is the only path for {cut} node(s)",
                "If this one link fails, the mesh splits in two.",
                "Add a second path: another neighbour within radio range or a cable.",
                {"cut_off": cut},
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
            FindingCode.COUNTER_MISMATCH,
        ),
        _claims,
    ),
    AuditCheck("counters", (FindingCode.COUNTER_REGRESSION,), _regressions),
    AuditCheck(
        "links",
        (FindingCode.ONE_SIDED_LINK, FindingCode.ASYMMETRIC_LINK, FindingCode.FLAPPING_LINK),
        _links,
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
    AuditCheck("partitions", (FindingCode.PARTITION, FindingCode.GATEWAY_UNREACHABLE), _partitions),
    AuditCheck(
        "failure-points", (FindingCode.ARTICULATION_POINT, FindingCode.BRIDGE), _failure_points
    ),
    AuditCheck(
        "concentration",
        (
            FindingCode.PATH_CONCENTRATION,
            FindingCode.RELAY_CONCENTRATION,
            FindingCode.UPLINK_CONCENTRATION,
        ),
        _concentration,
    ),
)
