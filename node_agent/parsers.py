"""Parsers for what the routing daemons and the radio tell us (pure text in, values out).

Formats: babeld's local interface (`dump` / `monitor` lines), `iw dev IFACE station dump`
(802.11s peers), and batctl's neighbour and originator tables (`batctl n`, `batctl o`) for
batman-adv meshes, in both the B.A.T.M.A.N. IV (TQ) and V (throughput) layouts. Unknown lines are
skipped, never fatal: a newer daemon that adds fields must not stop the agent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# -- babeld -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BabelNeighbour:
    id: str
    address: str
    iface: str
    reach: int
    rxcost: int
    txcost: int
    cost: int
    rtt_ms: float | None = None


@dataclass(frozen=True, slots=True)
class BabelRoute:
    id: str
    prefix: str
    metric: int
    installed: bool
    via: str | None
    iface: str | None


def _pairs(tokens: list[str]) -> dict[str, str]:
    """babeld prints `key value` pairs after the verb, kind and id."""
    return {tokens[i]: tokens[i + 1] for i in range(0, len(tokens) - 1, 2)}


def _int(text: str | None, base: int = 10, default: int = 0) -> int:
    try:
        return default if text is None else int(text, base)
    except ValueError:
        return default


@dataclass
class BabelTable:
    """babeld's neighbour and route tables, kept current by feeding dump and monitor lines."""

    neighbours: dict[str, BabelNeighbour] = field(default_factory=dict)
    routes: dict[str, BabelRoute] = field(default_factory=dict)

    def apply(self, line: str) -> str | None:
        """Apply one line; returns 'neighbour' or 'route' when that table changed."""
        tokens = line.split()
        if len(tokens) < 3 or tokens[0] not in ("add", "change", "flush"):
            return None
        verb, kind, ident = tokens[0], tokens[1], tokens[2]
        if kind == "neighbour":
            if verb == "flush":
                return "neighbour" if self.neighbours.pop(ident, None) else None
            f = _pairs(tokens[3:])
            rtt = f.get("rtt")
            try:
                rtt_ms = float(rtt) if rtt is not None else None
            except ValueError:
                rtt_ms = None
            self.neighbours[ident] = BabelNeighbour(
                id=ident,
                address=f.get("address", ""),
                iface=f.get("if", ""),
                reach=_int(f.get("reach"), 16),
                rxcost=_int(f.get("rxcost")),
                txcost=_int(f.get("txcost")),
                cost=_int(f.get("cost"), default=65535),
                rtt_ms=rtt_ms,
            )
            return "neighbour"
        if kind == "route":
            if verb == "flush":
                return "route" if self.routes.pop(ident, None) else None
            f = _pairs(tokens[3:])
            self.routes[ident] = BabelRoute(
                id=ident,
                prefix=f.get("prefix", ""),
                metric=_int(f.get("metric"), default=65535),
                installed=f.get("installed") == "yes",
                via=f.get("via"),
                iface=f.get("if"),
            )
            return "route"
        return None

    def neighbour_at(self, address: str) -> BabelNeighbour | None:
        """The babeld neighbour with this link-local address (how peers are matched to links)."""
        for n in self.neighbours.values():
            if n.address == address:
                return n
        return None


def babel_status(line: str) -> str | None:
    """'ok', 'no' or 'bad' when a line ends a babeld answer, else None."""
    word = line.strip()
    return word if word in ("ok", "no", "bad") else None


# -- iw station dump ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Station:
    mac: str
    iface: str
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0
    signal_dbm: int | None = None
    signal_avg_dbm: int | None = None
    tx_bitrate_mbit: float | None = None
    rx_bitrate_mbit: float | None = None
    expected_throughput_mbit: float | None = None
    inactive_ms: int | None = None
    plink: str | None = None  # 802.11s peer link state, ESTAB when usable


_STATION = re.compile(r"^Station ([0-9a-fA-F:]{17}) \(on ([^)]+)\)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _first_number(text: str) -> float | None:
    m = _NUMBER.search(text)
    return float(m.group()) if m else None


def _throughput_mbit(text: str) -> float | None:
    """`61.035Mbps` or `1.2Gbps` or `500kbps` (iw picks the unit) in Mbit/s."""
    m = re.match(r"\s*(\d+(?:\.\d+)?)\s*([kMG]?)bps", text)
    if not m:
        return _first_number(text)
    scale = {"k": 0.001, "": 0.000001, "M": 1.0, "G": 1000.0}[m.group(2)]
    return float(m.group(1)) * scale


def parse_station_dump(text: str) -> list[Station]:
    stations: list[Station] = []
    current: dict[str, object] | None = None

    def flush() -> None:
        if current is not None:
            stations.append(Station(**current))  # type: ignore[arg-type]

    for raw in text.splitlines():
        head = _STATION.match(raw)
        if head:
            flush()
            current = {"mac": head.group(1).lower(), "iface": head.group(2)}
            continue
        if current is None or ":" not in raw:
            continue
        key, _, value = raw.strip().partition(":")
        key = key.strip()
        value = value.strip()
        number = _first_number(value)
        if key in ("rx bytes", "tx bytes", "rx packets", "tx packets") and number is not None:
            current[key.replace(" ", "_")] = int(number)
        elif key == "signal" and number is not None:
            current["signal_dbm"] = int(number)
        elif key == "signal avg" and number is not None:
            current["signal_avg_dbm"] = int(number)
        elif key == "tx bitrate" and number is not None:
            current["tx_bitrate_mbit"] = number
        elif key == "rx bitrate" and number is not None:
            current["rx_bitrate_mbit"] = number
        elif key == "expected throughput":
            current["expected_throughput_mbit"] = _throughput_mbit(value)
        elif key == "inactive time" and number is not None:
            current["inactive_ms"] = int(number)
        elif key == "mesh plink":
            current["plink"] = value
    flush()
    return stations


# -- batctl -----------------------------------------------------------------------------------

_MAC = r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}"
_SEEN = r"(\d+)\.(\d{3})s"


@dataclass(frozen=True, slots=True)
class BatNeighbour:
    mac: str
    iface: str
    last_seen_ms: int
    throughput_mbit: float | None = None  # B.A.T.M.A.N. V only


@dataclass(frozen=True, slots=True)
class BatOriginator:
    mac: str
    next_hop: str
    iface: str
    last_seen_ms: int
    best: bool
    tq: int | None = None  # B.A.T.M.A.N. IV: 0..255
    throughput_mbit: float | None = None  # B.A.T.M.A.N. V


_NEIGH_IV = re.compile(rf"^\s*(\S+)\s+({_MAC})\s+{_SEEN}\s*$")
_NEIGH_V = re.compile(rf"^\s*({_MAC})\s+{_SEEN}\s+\(\s*([\d.]+)\)\s+\[\s*(\S+)\]\s*$")
_ORIG = re.compile(
    rf"^\s*(\*)?\s*({_MAC})\s+{_SEEN}\s+\(\s*([\d.]+)\)\s+({_MAC})\s+\[\s*([^\]\s]+)\]"
)


def _ms(secs: str, msecs: str) -> int:
    return int(secs) * 1000 + int(msecs)


def parse_batctl_neighbours(text: str) -> list[BatNeighbour]:
    out: list[BatNeighbour] = []
    for line in text.splitlines():
        m = _NEIGH_V.match(line)
        if m:
            out.append(
                BatNeighbour(
                    m.group(1).lower(), m.group(5), _ms(m.group(2), m.group(3)), float(m.group(4))
                )
            )
            continue
        m = _NEIGH_IV.match(line)
        if m:
            out.append(BatNeighbour(m.group(2).lower(), m.group(1), _ms(m.group(3), m.group(4))))
    return out


def parse_batctl_originators(text: str) -> list[BatOriginator]:
    """Both layouts; a `(value)` with a decimal point is throughput (V), an integer is TQ (IV)."""
    out: list[BatOriginator] = []
    throughput_layout = "throughput" in text.split("\n", 2)[1] if "\n" in text else False
    for line in text.splitlines():
        m = _ORIG.match(line)
        if not m:
            continue
        value = m.group(5)
        is_v = throughput_layout or "." in value
        out.append(
            BatOriginator(
                mac=m.group(2).lower(),
                next_hop=m.group(6).lower(),
                iface=m.group(7),
                last_seen_ms=_ms(m.group(3), m.group(4)),
                best=m.group(1) == "*",
                tq=None if is_v else int(value),
                throughput_mbit=float(value) if is_v else None,
            )
        )
    return out
