"""The audit's checks on the shape of the mesh: links the two ends disagree about, partitions
and unreachable gateways, single points of failure, and relaying concentrated on a few nodes.
`meshd.auditchecks` lists them in `CHECKS` with the checks on nodes' records."""

from __future__ import annotations

from meshd.findings import Context, Finding, FindingCode, Severity
from meshd.graph import gini as gini_of
from meshd.topology import LinkState


def pair(x: str, y: str) -> str:
    return f"{x}–{y}" if x <= y else f"{y}–{x}"


_LINK_FINDINGS = frozenset({LinkState.ONE_SIDED, LinkState.ASYMMETRIC, LinkState.FLAPPING})


def links(cx: Context, found: list[Finding]) -> None:
    view = cx.view
    name = view.name
    for link in view.links.values():
        if link.state not in _LINK_FINDINGS:
            continue  # most links: skip before naming them
        subject = pair(name(link.a), name(link.b))
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


def partitions(cx: Context, found: list[Finding]) -> None:
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


def concentration(cx: Context, found: list[Finding]) -> None:
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


def failure_points(cx: Context, found: list[Finding]) -> None:
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
                pair(name(a), name(b)),
                f"the link {pair(name(a), name(b))} is the only path for {cut} node(s)",
                "If this one link fails, the mesh splits in two.",
                "Add a second path: another neighbour within radio range or a cable.",
                {"cut_off": cut},
            )
        )
