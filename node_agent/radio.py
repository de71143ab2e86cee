"""What the radio and batman-adv know about each neighbour, matched to our neighbour table.

`iw dev IF station dump` lists 802.11s peers by MAC with byte counters, signal and rates;
`batctl n` / `batctl o` list batman-adv neighbours and originators by MAC with throughput
(B.A.T.M.A.N. V) or TQ (IV). Our neighbours are known by node id and IPv6 link-local address, so
each is matched to a MAC: its EUI-64 link-local address spells its MAC, and where addresses are
not EUI-64 (stable-privacy) the kernel's neighbour table (`ip -j neigh`) maps address to MAC.
The commands run through an injected runner, so tests feed recorded output.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from node_agent.neighbours import Neighbour
from node_agent.parsers import (
    BatNeighbour,
    BatOriginator,
    Station,
    parse_batctl_neighbours,
    parse_batctl_originators,
    parse_station_dump,
)

log = logging.getLogger("meshd.radio")
Runner = Callable[..., Awaitable[tuple[int, str]]]  # run(*argv) -> (returncode, stdout)


def mac_from_link_local(address: str) -> str | None:
    """The MAC an EUI-64 IPv6 address was made from (fe80::211:c5ff:fe4a:103e ->
    02:11:c5:4a:10:3e... with the universal/local bit flipped back), None if not EUI-64."""
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return None
    iid = ip.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    mac = bytes([iid[0] ^ 0x02, iid[1], iid[2], iid[5], iid[6], iid[7]])
    return ":".join(f"{b:02x}" for b in mac)


def parse_ip_neigh(text: str) -> dict[str, str]:
    """`ip -j neigh show dev IF` -> {address: mac}; entries without a MAC (FAILED) are left out."""
    try:
        rows = json.loads(text or "[]")
    except ValueError:
        return {}
    out: dict[str, str] = {}
    if not isinstance(rows, list):
        return out
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("dst"), str):
            mac = row.get("lladdr")
            if isinstance(mac, str) and len(mac) == 17:
                out[row["dst"]] = mac.lower()
    return out


def neighbour_macs(n: Neighbour, arp: Mapping[str, str]) -> set[str]:
    """Every MAC the neighbour may use on its link, from its addresses."""
    macs: set[str] = set()
    for address in (n.address, *n.advertised):
        bare = address.split("%", 1)[0]
        eui = mac_from_link_local(bare) if bare.lower().startswith("fe80") else None
        if eui:
            macs.add(eui)
        if bare in arp:
            macs.add(arp[bare])
    return macs


def match_stations(
    stations: Iterable[Station],
    neighbours: Iterable[Neighbour],
    arp: Mapping[str, Mapping[str, str]],
) -> dict[tuple[str, str], Station]:
    """{(node_id, iface): station}; `arp` is {iface: {address: mac}}. A station no neighbour
    claims (a mesh peer running no agent) is left out."""
    by_mac = {(s.iface, s.mac): s for s in stations}
    out: dict[tuple[str, str], Station] = {}
    for n in neighbours:
        for mac in sorted(neighbour_macs(n, arp.get(n.iface, {}))):
            station = by_mac.get((n.iface, mac))
            if station is not None:
                out[(n.node_id, n.iface)] = station
                break
    return out


@dataclass(frozen=True, slots=True)
class BatLink:
    """batman-adv's view of the direct link to one neighbour (best hard interface)."""

    mac: str
    hard_iface: str
    throughput_mbit: float | None  # B.A.T.M.A.N. V
    tq: int | None  # B.A.T.M.A.N. IV, 0..255, of the direct route
    last_seen_ms: int


def match_batman(
    neighbours_out: Iterable[BatNeighbour],
    originators: Iterable[BatOriginator],
    ours: Iterable[Neighbour],
    arp: Mapping[str, Mapping[str, str]],
) -> dict[str, BatLink]:
    """{node_id: BatLink} for our neighbours that batman-adv sees as direct neighbours."""
    direct: dict[str, list[BatNeighbour]] = {}
    for b in neighbours_out:
        direct.setdefault(b.mac, []).append(b)
    tq: dict[str, int] = {}  # TQ of the direct route (next hop = the originator itself)
    for o in originators:
        if o.next_hop == o.mac and o.tq is not None:
            tq[o.mac] = max(o.tq, tq.get(o.mac, 0))
    out: dict[str, BatLink] = {}
    for n in ours:
        for mac in sorted(neighbour_macs(n, arp.get(n.iface, {}))):
            links = direct.get(mac)
            if not links and mac not in tq:
                continue
            best = max(links or [], key=lambda b: b.throughput_mbit or 0.0, default=None)
            out[n.node_id] = BatLink(
                mac=mac,
                hard_iface=best.iface if best else "",
                throughput_mbit=best.throughput_mbit if best else None,
                tq=tq.get(mac),
                last_seen_ms=best.last_seen_ms if best else 0,
            )
            break
    return out


@dataclass
class RadioView:
    stations: dict[tuple[str, str], Station] = field(default_factory=dict)
    batman: dict[str, BatLink] = field(default_factory=dict)


class RadioReader:
    """Runs `iw`, `ip neigh` and `batctl` through `run` and matches the answers to neighbours."""

    def __init__(self, run: Runner, wifi_ifaces: Iterable[str], batman_iface: str | None) -> None:
        self.run = run
        self.wifi_ifaces = sorted(set(wifi_ifaces))
        self.batman_iface = batman_iface
        self.warned: set[str] = set()
        self.last_stations: dict[str, list[Station]] = {}  # iface -> its last dump

    async def _out(self, *argv: str) -> str | None:
        rc, out = await self.run(*argv)
        if rc:
            if argv[0] not in self.warned:  # once per tool: a missing `iw` is not news each cycle
                self.warned.add(argv[0])
                log.warning("%s failed (%s); its link data stays empty", " ".join(argv), out)
            return None
        return out

    async def read(self, neighbours: Iterable[Neighbour]) -> RadioView:
        ours = list(neighbours)
        ifaces = sorted({n.iface for n in ours})
        arp: dict[str, dict[str, str]] = {}
        for iface in ifaces:
            out = await self._out("ip", "-j", "neigh", "show", "dev", iface)
            arp[iface] = parse_ip_neigh(out) if out is not None else {}
        view = RadioView()
        stations: list[Station] = []
        for iface in self.wifi_ifaces:
            out = await self._out("iw", "dev", iface, "station", "dump")
            if out is not None:
                found = [st for st in parse_station_dump(out) if st.iface == iface]
                self.last_stations[iface] = found
                stations += found
        view.stations = match_stations(stations, ours, arp)
        if self.batman_iface is not None:
            n_out = await self._out("batctl", "meshif", self.batman_iface, "n")
            o_out = await self._out("batctl", "meshif", self.batman_iface, "o")
            view.batman = match_batman(
                parse_batctl_neighbours(n_out or ""),
                parse_batctl_originators(o_out or ""),
                ours,
                arp,
            )
        return view
