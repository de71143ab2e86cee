"""Record bodies and the metrics page from the agent's state (pure: no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from meshd.accounting import Ledger
from meshd.community import Community
from meshd.linkquality import LinkSample
from meshd.records import (
    MAX_ADDRESSES,
    MAX_NEIGHBOURS,
    LinkEntry,
    LinksBody,
    MeshConfig,
    NeighbourCounters,
    NodeBody,
    TrafficBody,
)
from node_agent.neighbours import Neighbour
from node_agent.parsers import BabelNeighbour, BabelTable
from node_agent.radio import RadioView

Body = NodeBody | LinksBody | TrafficBody


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def node_body(
    *,
    hostname: str,
    model: str,
    software: str,
    addresses: Iterable[str],
    gateway_kbit: int | None,
    community: Community,
) -> NodeBody:
    channels = {band: b.channel for band, b in community.bands.items()}
    return NodeBody(
        hostname=hostname,
        model=model[:64],
        software=software,
        addresses=tuple(addresses)[:MAX_ADDRESSES],
        gateway_kbit=gateway_kbit,
        config=MeshConfig(community.mesh_id, community.routing, channels),
    )


def babel_for(n: Neighbour, babel: BabelTable) -> BabelNeighbour | None:
    """babeld's entry for a neighbour: by its link-local address, else the only one on the link."""
    bare = n.address.split("%", 1)[0]
    for address in (bare, *n.advertised):
        found = babel.neighbour_at(address)
        if found is not None:
            return found
    on_link = [b for b in babel.neighbours.values() if b.iface == n.iface]
    return on_link[0] if len(on_link) == 1 else None


def _cap(mbit: float | None) -> float | None:
    return None if mbit is None or mbit < 0 else min(mbit, 1_000_000.0)


def radio_fields(n: Neighbour, radio: RadioView | None) -> dict[str, Any]:
    """Signal and rates of the link to `n` from the station dump, throughput from batman-adv
    V when the radio gives none; TQ (batman-adv IV) only for the status page."""
    st = radio.stations.get((n.node_id, n.iface)) if radio else None
    bat = radio.batman.get(n.node_id) if radio else None
    signal = st.signal_avg_dbm if st and st.signal_avg_dbm is not None else None
    if signal is None and st is not None:
        signal = st.signal_dbm
    if signal is not None and not -150 <= signal <= 30:
        signal = None  # a driver's placeholder, not a reading
    expected = st.expected_throughput_mbit if st else None
    if expected is None and bat is not None:
        expected = bat.throughput_mbit
    return {
        "signal_dbm": signal,
        "tx_bitrate_mbit": _r(_cap(st.tx_bitrate_mbit), 1) if st else None,
        "expected_throughput_mbit": _r(_cap(expected), 3),
        "batman_tq": bat.tq if bat else None,
    }


def links_body(
    neighbours: Iterable[Neighbour],
    samples: Mapping[str, LinkSample],
    babel: BabelTable,
    medium: Callable[[str], str],
    radio: RadioView | None = None,
) -> LinksBody:
    entries = []
    for n in sorted(neighbours, key=lambda x: x.node_id)[:MAX_NEIGHBOURS]:
        s = samples.get(n.node_id)
        b = babel_for(n, babel)
        r = radio_fields(n, radio)
        etx = s.etx if s else None
        entries.append(
            LinkEntry(
                neighbour=n.node_id,
                iface=n.iface,
                medium=medium(n.iface),
                up=n.up,
                rxcost=b.rxcost if b else None,
                txcost=b.txcost if b else None,
                rtt_ms=_r(s.rtt_ms if s and s.rtt_ms is not None else (b.rtt_ms if b else None), 3),
                delivery_rx=_r(s.delivery_rx) if s else None,
                delivery_tx=_r(s.delivery_tx) if s else None,
                loss=_r(s.loss) if s and s.loss is not None else None,
                etx=_r(min(etx, 65535.0)) if etx is not None else None,
                signal_dbm=r["signal_dbm"],
                tx_bitrate_mbit=r["tx_bitrate_mbit"],
                expected_throughput_mbit=r["expected_throughput_mbit"],
            )
        )
    return LinksBody(tuple(entries))


def traffic_body(
    ledger: Ledger, neighbours: Iterable[Neighbour], *, boot_id: str, uptime_s: int, since: int
) -> TrafficBody:
    per: dict[tuple[str, str], dict[str, int]] = {}
    for name, meter in ledger.meters.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == "nb":
            per.setdefault((parts[1], parts[2]), {})[parts[3]] = meter.total
    known = {n.node_id for n in neighbours}
    rows = sorted(per.items(), key=lambda kv: (kv[0][0] not in known, kv[0]))[:MAX_NEIGHBOURS]
    return TrafficBody(
        boot_id=boot_id[:64] or "unknown",
        uptime_s=uptime_s,
        since=since,
        neighbours=tuple(
            NeighbourCounters(
                neighbour=node_id,
                iface=iface,
                rx_bytes=c.get("rx_bytes", 0),
                tx_bytes=c.get("tx_bytes", 0),
                rx_packets=c.get("rx_packets", 0),
                tx_packets=c.get("tx_packets", 0),
            )
            for (node_id, iface), c in sorted(rows)
        ),
        forwarded_bytes=ledger.total("nft/forwarded/bytes"),
        forwarded_packets=ledger.total("nft/forwarded/packets"),
        gateway_bytes=ledger.total("nft/gateway/bytes"),
        client_bytes=ledger.total("nft/client/bytes"),
    )
