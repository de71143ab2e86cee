"""Gluon respondd answers, so an existing yanic (and through it meshviewer and the Freifunk
Grafana dashboards) collects mutualmesh nodes unchanged.

The protocol, as yanic speaks it: a UDP datagram `GET nodeinfo statistics neighbours` to
`[ff05::2:1001]:1001` (or to one node's address), answered by one datagram of raw-deflate
(RFC 1951, no zlib header) JSON `{"nodeinfo": {...}, "statistics": {...}, "neighbours": {...}}`;
yanic reads at most 8192 bytes. A bare provider name (`nodeinfo`) is the older form and gets
that provider's JSON uncompressed.

respondd is unsigned: whoever answers first is believed. These answers are a courtesy for the
Freifunk tools; the verified picture is the signed records (docs/members.md).

The builders are pure (records and a few facts in, dicts out); `RespondEndpoint` is the small
asyncio edge around them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshd import defaults
from meshd.records import LinksBody, NodeBody, TrafficBody

log = logging.getLogger("meshd.respondd")

PROVIDERS = ("nodeinfo", "statistics", "neighbours")
MAX_REQUEST = 256  # a real query is ~40 bytes; anything longer is noise or an attack
MAX_ANSWER = 8192  # yanic's MaxDataGramSize
# our media -> the interface list yanic reads in nodeinfo.network.mesh.*.interfaces
MESH_LISTS = {"wifi": "wireless", "tap": "tunnel"}


@dataclass(frozen=True)
class Self:
    """What this node knows about itself, from its own (signed) records and the system."""

    node_id: str
    node: NodeBody | None
    links: LinksBody | None
    traffic: TrafficBody | None
    community: str = ""
    clients: int | None = None
    babeld_version: str | None = None
    firmware_base: str | None = None  # e.g. "OpenWrt 23.05.3"; None when not on OpenWrt
    own_link_local: Mapping[str, str] = field(default_factory=dict)  # iface -> our fe80::
    neighbour_address: Mapping[str, str] = field(default_factory=dict)  # node_id -> its fe80::


def firmware(software: str, base: str | None) -> dict[str, str]:
    """`meshd 0.1.0` -> release `0.1.0`; base is the system (`OpenWrt 23.05.3`) when known,
    else the software's name, so meshviewer does not print the same string twice."""
    name, _, release = software.rpartition(" ")
    if not name:
        name, release = software or "mutualmesh", defaults.VERSION
    return {"base": base or name, "release": release}


def _bare(address: str) -> str:
    return address.split("%", 1)[0]


def nodeinfo(me: Self) -> dict[str, Any]:
    """Gluon's nodeinfo: who the node is. Mesh interfaces are listed by link-local address,
    which is how yanic maps a neighbour's babel address back to a node and a link type."""
    info = me.node
    lists: dict[str, list[str]] = {}
    media = {e.iface: e.medium for e in (me.links.links if me.links else ())}
    for iface, addr in sorted(me.own_link_local.items()):
        kind = MESH_LISTS.get(media.get(iface, "other"), "other")
        lists.setdefault(kind, []).append(_bare(addr))
    out: dict[str, Any] = {
        "node_id": me.node_id,
        "hostname": info.hostname if info else me.node_id,
        "network": {
            "addresses": list(info.addresses) if info else [],
            "mesh": {"babel": {"interfaces": lists}},
        },
        "software": {"firmware": firmware(info.software if info else "", me.firmware_base)},
        "hardware": {"model": info.model if info else ""},
        "system": {"site_code": me.community},
        "vpn": any(m == "tap" for m in media.values()),
    }
    if me.babeld_version:
        out["software"]["babeld"] = {"version": me.babeld_version}
    if info is not None and info.location is not None:
        out["location"] = {"latitude": info.location.lat, "longitude": info.location.lon}
    if info is not None and info.contact:
        out["owner"] = {"contact": info.contact}
    return out


def statistics(me: Self) -> dict[str, Any]:
    """Gluon's statistics: uptime, clients and traffic from the node's own traffic record."""
    out: dict[str, Any] = {"node_id": me.node_id}
    t = me.traffic
    if t is not None:
        rx = sum(n.rx_bytes for n in t.neighbours)
        tx = sum(n.tx_bytes for n in t.neighbours)
        out["uptime"] = float(t.uptime_s)
        out["traffic"] = {
            "rx": {"bytes": rx, "packets": sum(n.rx_packets for n in t.neighbours)},
            "tx": {"bytes": tx, "packets": sum(n.tx_packets for n in t.neighbours)},
            "forward": {"bytes": t.forwarded_bytes, "packets": t.forwarded_packets},
        }
        # our own namespace for what respondd has no word for (Gluon's advice: add, don't fork)
        out["mutualmesh"] = {"gateway_bytes": t.gateway_bytes, "client_bytes": t.client_bytes}
    if me.clients is not None:
        out["clients"] = {"total": me.clients, "wifi": me.clients}
    if me.node is not None and me.node.gateway_kbit is not None:
        out["gateway"] = me.node_id
    return out


def neighbours(me: Self) -> dict[str, Any]:
    """Gluon's neighbours, babel part (yanic's `data.BabelNeighbours`): per interface our
    link-local address and, per neighbour link-local address, babeld's costs."""
    babel: dict[str, Any] = {}
    for e in me.links.links if me.links else ():
        if not e.up:
            continue
        addr = me.neighbour_address.get(e.neighbour)
        if not addr:
            continue  # yanic keys neighbours by address; without one it cannot place the link
        iface = babel.setdefault(
            e.iface,
            {
                "protocol": "babel",
                "ll-addr": _bare(me.own_link_local.get(e.iface, "")),
                "neighbours": {},
            },
        )
        rx, tx = e.rxcost, e.txcost
        cost = max(rx or 0, tx or 0) or 65535
        iface["neighbours"][_bare(addr)] = {
            "rxcost": rx if rx is not None else 65535,
            "txcost": tx if tx is not None else 65535,
            "cost": min(cost, 65535),
            "reachability": 65535 if e.loss is None else round(65535 * (1 - e.loss)),
        }
    return {"node_id": me.node_id, "babel": babel}


BUILDERS: dict[str, Callable[[Self], dict[str, Any]]] = {
    "nodeinfo": nodeinfo,
    "statistics": statistics,
    "neighbours": neighbours,
}


def parse_request(data: bytes) -> tuple[bool, tuple[str, ...]] | None:
    """(compressed?, providers) for a well-formed query, None for anything else."""
    if not data or len(data) > MAX_REQUEST:
        return None
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if text.startswith("GET "):
        wanted = tuple(dict.fromkeys(w for w in text[4:].split() if w in BUILDERS))
        return (True, wanted) if wanted else None
    return (False, (text,)) if text in BUILDERS else None


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -15)


def answer(me: Self, request: bytes) -> bytes | None:
    """The datagram to send back for `request`, or None to stay silent."""
    parsed = parse_request(request)
    if parsed is None:
        return None
    compressed, wanted = parsed
    if not compressed:
        return json.dumps(BUILDERS[wanted[0]](me), separators=(",", ":")).encode()
    body = {name: BUILDERS[name](me) for name in wanted}
    packed = deflate(json.dumps(body, separators=(",", ":")).encode())
    if len(packed) > MAX_ANSWER and "neighbours" in body:
        body["neighbours"]["babel"] = {}  # too many neighbours to fit: keep the node on the map
        packed = deflate(json.dumps(body, separators=(",", ":")).encode())
    return packed


class RespondEndpoint(asyncio.DatagramProtocol):
    """Answers respondd queries on one UDP socket, multicast groups joined per interface.

    Answers are rate-limited (a small deflated query gets a bigger answer, so an open responder
    could be used to flood a spoofed address) and hostile datagrams are counted and dropped.
    """

    def __init__(
        self,
        snapshot: Callable[[], Self],
        *,
        rate_per_s: float = 20.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.rate = rate_per_s
        self.tokens = rate_per_s
        self.clock = clock
        self.last = 0.0
        self.counts: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def _allow(self) -> bool:
        now = self.clock() if self.clock else asyncio.get_running_loop().time()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            reply = answer(self.snapshot(), data)
        except Exception:  # an answer must never take the agent down
            log.exception("respondd: building the answer failed")
            self.counts["errors"] += 1
            return
        if reply is None:
            self.counts["malformed"] += 1
            return
        if not self._allow():
            self.counts["rate_limited"] += 1
            return
        if self.transport is not None:
            self.transport.sendto(reply, addr)
            self.counts["answered"] += 1


def open_socket(port: int, ifaces: Mapping[str, int], groups: tuple[str, ...]) -> socket.socket:
    """A dual-stack UDP socket on `port`, joined to `groups` on each interface (name -> index).
    An interface that cannot join (down, no IPv6) is logged and skipped."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", port))
    for name, index in sorted(ifaces.items()):
        for group in groups:
            mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as exc:
                log.info("respondd: cannot join %s on %s (%s)", group, name, exc)
    sock.setblocking(False)
    return sock


async def serve(
    snapshot: Callable[[], Self],
    ifaces: Mapping[str, int],
    port: int = defaults.RESPONDD_PORT,
    groups: tuple[str, ...] = defaults.RESPONDD_GROUPS,
) -> tuple[asyncio.DatagramTransport, RespondEndpoint]:
    loop = asyncio.get_running_loop()
    sock = open_socket(port, ifaces, groups)
    transport, proto = await loop.create_datagram_endpoint(
        lambda: RespondEndpoint(snapshot), sock=sock
    )
    return transport, proto
