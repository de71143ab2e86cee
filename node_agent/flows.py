"""End-to-end byte counts per mesh destination: what this node's clients and the router itself
sent to and received from every other node, which the admin side checks relays' claims against
(`meshd.contrib`).

The address plan gives every node its own prefixes, so one nftables table in the forward hook
(clients' traffic) and the output and input hooks (the router's own, control plane aside) maps
a packet's mesh address to that node's named counter (an object map, one lookup per packet
whatever the mesh size); addresses outside every known prefix land in the "other" counters.
Counters are named after the peer's node id, so they keep their values when peers come and go
and the table is re-applied (`add` keeps existing counters). The record carries only the top
destinations plus "other" (`endpoint_flows`), so it stays small.

Pure builders and parsers, plus two coroutines the agent calls; nothing here reads a clock.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence

from meshd.accounting import Ledger
from meshd.records import MAX_ENDPOINTS, OTHER_PEER, EndpointFlow
from node_agent.system import own_chains

Runner = Callable[..., Awaitable[tuple[int, str]]]
Flows = dict[str, tuple[int, int]]  # peer node id (or OTHER_PEER) -> (sent, received)

TABLE = "mutualmesh_flows"
_OTHER = "other"


def _names(items: Sequence[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in items) + " }"


def _families(prefixes: Sequence[str]) -> tuple[list[str], list[str]]:
    v4: list[str] = []
    v6: list[str] = []
    for p in prefixes:
        net = ipaddress.ip_network(p, strict=False)
        (v4 if net.version == 4 else v6).append(str(net))
    return v4, v6


def flows_nft_script(
    peers: Mapping[str, Sequence[str]],
    mesh: Sequence[str],
    clients: Sequence[str],
    table: str = TABLE,
) -> str:
    """The whole table for today's peers: `peers` maps each other node's id to its prefixes
    (router address and client block, from its node record or the address plan)."""
    lines = [f"add table inet {table}"]
    for peer in [*sorted(peers), _OTHER]:
        lines += [f"add counter inet {table} o_{peer}", f"add counter inet {table} t_{peer}"]
    for fam, kind in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
        lines += [
            f"add set inet {table} known{fam} {{ type {kind}; flags interval; }}",
            f"flush set inet {table} known{fam}",
        ]
        for way in ("orig", "term"):
            lines += [
                f"add map inet {table} {way}{fam} {{ type {kind} : counter; flags interval; }}",
                f"flush map inet {table} {way}{fam}",
            ]
    for fam in ("4", "6"):
        known: list[str] = []
        orig: list[str] = []
        term: list[str] = []
        for peer, prefixes in sorted(peers.items()):
            for net in _families(prefixes)[0 if fam == "4" else 1]:
                known.append(net)
                orig.append(f'{net} : "o_{peer}"')
                term.append(f'{net} : "t_{peer}"')
        if known:
            lines.append(f"add element inet {table} known{fam} {{ {', '.join(known)} }}")
            lines.append(f"add element inet {table} orig{fam} {{ {', '.join(orig)} }}")
            lines.append(f"add element inet {table} term{fam} {{ {', '.join(term)} }}")
    lines += [
        f"add chain inet {table} flows "
        "{ type filter hook forward priority -140; policy accept; }",
        f"flush chain inet {table} flows",
        *own_chains(table, -140),
    ]
    if mesh:  # the router's own traffic (an iperf end, a service it hosts), control plane aside
        m = _names(mesh)
        lines += _counting(f"inet {table} own_out oifname {m}", f"inet {table} own_in iifname {m}")
    if mesh and clients:
        m, c = _names(mesh), _names(clients)
        lines += _counting(
            f"inet {table} flows iifname {c} oifname {m}",
            f"inet {table} flows iifname {m} oifname {c}",
        )
    return "\n".join(lines) + "\n"


def _counting(out: str, back: str) -> list[str]:
    """Per family: what leaves by `out` counted by destination, what comes back by `back` by
    source, each peer in its named counter and everyone else in "other"."""
    lines = []
    for fam, ip in (("4", "ip"), ("6", "ip6")):
        o = f"add rule {out} meta nfproto ipv{fam}"
        b = f"add rule {back} meta nfproto ipv{fam}"
        lines += [
            f"{o} {ip} daddr @known{fam} counter name {ip} daddr map @orig{fam}",
            f'{o} {ip} daddr != @known{fam} counter name "o_{_OTHER}"',
            f"{b} {ip} saddr @known{fam} counter name {ip} saddr map @term{fam}",
            f'{b} {ip} saddr != @known{fam} counter name "t_{_OTHER}"',
        ]
    return lines


def parse_flow_counters(text: str) -> Flows:
    """`nft -j list counters table inet T` -> {peer: (sent, received)}; garbage gives {}."""
    out: Flows = {}
    try:
        items = json.loads(text).get("nftables", [])
    except (ValueError, AttributeError):
        return {}
    for item in items if isinstance(items, list) else []:
        c = item.get("counter") if isinstance(item, dict) else None
        if not isinstance(c, dict):
            continue
        name = str(c.get("name", ""))
        way, _, peer = name.partition("_")
        if way not in ("o", "t") or not peer:
            continue
        try:
            nbytes = int(c["bytes"])
        except (KeyError, TypeError, ValueError):
            continue
        key = OTHER_PEER if peer == _OTHER else peer
        sent, received = out.get(key, (0, 0))
        out[key] = (sent + nbytes, received) if way == "o" else (sent, received + nbytes)
    return out


def fold(ledger: Ledger, raw: Flows, epoch: str) -> Flows:
    """Raw counters into the node's saved ledger (they survive restarts like every other
    meter); returns the cumulative totals per peer."""
    out: Flows = {}
    for peer, (sent, received) in sorted(raw.items()):
        ledger.update(f"ep/{peer}/sent", sent, epoch)
        ledger.update(f"ep/{peer}/received", received, epoch)
    for name in ledger.meters:
        kind, _, rest = name.partition("/")
        if kind != "ep":
            continue
        peer, _, way = rest.rpartition("/")
        s, r = out.get(peer, (0, 0))
        total = ledger.total(name)
        out[peer] = (s + total, r) if way == "sent" else (s, r + total)
    return out


def endpoint_flows(totals: Flows, top: int = MAX_ENDPOINTS) -> tuple[EndpointFlow, ...]:
    """The record's `endpoints`: the `top` destinations by bytes, everything else as "other"."""
    named = sorted(
        ((p, f) for p, f in totals.items() if p != OTHER_PEER and f[0] + f[1]),
        key=lambda item: (-(item[1][0] + item[1][1]), item[0]),
    )
    rest_s, rest_r = totals.get(OTHER_PEER, (0, 0))
    for _, (s, r) in named[top:]:
        rest_s, rest_r = rest_s + s, rest_r + r
    out = [EndpointFlow(p, s, r) for p, (s, r) in named[:top]]
    if rest_s or rest_r:
        out.append(EndpointFlow(OTHER_PEER, rest_s, rest_r))
    return tuple(out)


async def apply(run: Runner, script: str, table: str = TABLE) -> int | None:
    """Load (or re-load, when the peers change) the table. Returns its handle, which changes
    when the table was recreated (its counters restarted: use it in the ledger epoch), or None
    if nftables refused the script."""
    rc, _ = await run("nft", "-f", "-", stdin=script.encode())
    if rc:
        return None
    rc, out = await run("nft", "-j", "list", "table", "inet", table)
    try:
        for item in json.loads(out).get("nftables", []) if rc == 0 else []:
            if isinstance(item, dict) and isinstance(item.get("table"), dict):
                return int(item["table"].get("handle", 0))
    except (ValueError, TypeError, AttributeError):
        pass
    return 0


async def read(run: Runner, table: str = TABLE) -> Flows:
    """The raw counters now; {} when the table is missing or nft fails (counted as no data)."""
    rc, out = await run("nft", "-j", "list", "counters", "table", "inet", table)
    return parse_flow_counters(out) if rc == 0 else {}
