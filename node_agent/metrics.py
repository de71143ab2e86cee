"""Prometheus text exposition (format 0.0.4) of the agent's status, written by hand.

Hand-written because prometheus_client costs ~5 MB RSS on a router with a 20 MB budget. The rules
Prometheus people check (`promtool check metrics`): integers printed in full (a `%g` turns
12,345,678,901 bytes into 1.23457e+10 and `rate()` into stairs), base units (`_bytes`,
`_seconds`, `_ratio`), `_total` only on counters, one label per dimension, HELP and TYPE on every
family. Pure: the status dict in, text out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meshd import defaults

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric family: name, type, help, and its samples in insertion order."""

    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[Labels, int | float]] = field(default_factory=list)

    def add(self, value: int | float | bool | None, **labels: str) -> None:
        if value is None:
            return
        self.samples.append((tuple(labels.items()), value))


def number(value: int | float | bool) -> str:
    """A sample value as Prometheus writes it: integers in full, floats round-trip exact."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def render(families: Iterable[Family]) -> str:
    out: list[str] = []
    for fam in families:
        out.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        out.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            out.append(
                f"{fam.name}{{{text}}} {number(value)}" if text else f"{fam.name} {number(value)}"
            )
    return "\n".join(out) + "\n"


# (status field, metric suffix, help, scale): per-link gauges from the neighbour rows.
LINK_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("etx", "link_etx", "Expected transmission count to the neighbour (1 is perfect).", 1.0),
    ("loss", "link_loss_ratio", "Mean one-way probe loss to the neighbour, 0 to 1.", 1.0),
    ("rtt_ms", "link_rtt_seconds", "Median probe round-trip time to the neighbour.", 0.001),
    ("signal_dbm", "link_signal_dbm", "Received signal of the neighbour's station, in dBm.", 1.0),
    (
        "tx_bitrate_mbit",
        "link_transmit_rate_bytes_per_second",
        "Radio transmit bitrate to the neighbour, in bytes per second.",
        1e6 / 8,
    ),
    (
        "expected_throughput_mbit",
        "link_expected_throughput_bytes_per_second",
        "Throughput the driver (or batman-adv V) expects to the neighbour.",
        1e6 / 8,
    ),
    ("batman_tq", "link_batman_tq_ratio", "batman-adv IV transmit quality, 0 to 1.", 1 / 255),
)

# ledger meter "nft/<class>/<stat>" -> (metric stem, help)
NFT_CLASSES: dict[str, str] = {
    "forwarded": "Bytes or packets carried for others (neither from nor to this node).",
    "gateway": "Bytes or packets sent from the mesh to this node's uplink for other nodes.",
    "client": "Bytes or packets to and from this node's own clients.",
}
NEIGHBOUR_STATS: dict[str, tuple[str, str]] = {
    "rx_bytes": ("neighbour_receive_bytes_total", "Bytes received from the neighbour."),
    "tx_bytes": ("neighbour_transmit_bytes_total", "Bytes sent to the neighbour."),
    "rx_packets": ("neighbour_receive_packets_total", "Packets received from the neighbour."),
    "tx_packets": ("neighbour_transmit_packets_total", "Packets sent to the neighbour."),
}


def _scaled(value: Any, scale: float) -> int | float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if scale == 1.0:
        return value
    return round(value * scale, 9)


def families(status: Mapping[str, Any]) -> list[Family]:
    """Every family from the agent's status dict (the shape `/status` serves)."""
    p = "meshd_"
    fams: list[Family] = []

    def fam(name: str, kind: str, help_text: str) -> Family:
        f = Family(p + name, kind, help_text)
        fams.append(f)
        return f

    fam("build_info", "gauge", "Always 1; the version is in the label.").add(
        1, version=str(status.get("software_version", defaults.VERSION))
    )
    fam("node_info", "gauge", "Always 1; who this node is, in labels.").add(
        1,
        node_id=str(status.get("node_id", "")),
        hostname=str(status.get("hostname", "")),
        community=str(status.get("community", "")),
    )
    fam("agent_uptime_seconds", "gauge", "Seconds since the agent started.").add(
        status.get("uptime_agent_s")
    )
    nbs = [n for n in status.get("neighbours", []) if isinstance(n, Mapping)]
    fam("neighbours_heard", "gauge", "Neighbours currently heard.").add(
        sum(1 for n in nbs if n.get("up"))
    )
    up = fam("neighbour_up", "gauge", "1 while the neighbour is heard on the interface.")
    for n in nbs:
        up.add(bool(n.get("up")), neighbour=str(n["node_id"]), iface=str(n["iface"]))
    for key, suffix, help_text, scale in LINK_GAUGES:
        f = fam(suffix, "gauge", help_text)
        for n in nbs:
            f.add(_scaled(n.get(key), scale), neighbour=str(n["node_id"]), iface=str(n["iface"]))
    delivery = fam(
        "link_delivery_ratio", "gauge", "Share of probes delivered, per direction (rx: to us)."
    )
    for n in nbs:
        for direction in ("rx", "tx"):
            delivery.add(
                _scaled(n.get(f"delivery_{direction}"), 1.0),
                neighbour=str(n["node_id"]),
                iface=str(n["iface"]),
                direction=direction,
            )
    _counters(fam, status.get("totals", {}))
    fam("store_records", "gauge", "Verified records held in the store.").add(
        status.get("records_held", 0)
    )
    fam("store_nodes", "gauge", "Nodes with at least one verified record.").add(
        status.get("nodes_known", 0)
    )
    rej = fam("records_rejected_total", "counter", "Records refused by the store, by reason.")
    for reason, count in sorted(status.get("rejections", {}).items()):
        rej.add(count, reason=str(reason))
    nrej = fam(
        "neighbour_records_rejected_total",
        "counter",
        "Records refused from a neighbour's relay, by neighbour and reason.",
    )
    for nb, reasons in sorted(status.get("neighbour_rejections", {}).items()):
        for reason, count in sorted(reasons.items()):
            nrej.add(count, neighbour=str(nb), reason=str(reason))
    ev = fam("events_total", "counter", "Agent events (publishes, relay connects, ...), by event.")
    for name, count in sorted(status.get("counters", {}).items()):
        ev.add(count, event=str(name))
    return fams


def _counters(fam: Any, totals: Mapping[str, Any]) -> None:
    """Ledger meters, one dimension per label: `nb/<id>/<iface>/<stat>` and `nft/<class>/<unit>`."""
    per_nb = {stat: fam(metric, "counter", h) for stat, (metric, h) in NEIGHBOUR_STATS.items()}
    nft: dict[tuple[str, str], int] = {}
    for name, value in sorted(totals.items()):
        parts = str(name).split("/")
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        if len(parts) == 4 and parts[0] == "nb" and parts[3] in per_nb:
            per_nb[parts[3]].add(value, neighbour=parts[1], iface=parts[2])
        elif len(parts) == 3 and parts[0] == "nft" and parts[1] in NFT_CLASSES:
            nft[(parts[1], parts[2])] = value
    for cls, help_text in NFT_CLASSES.items():
        for unit in ("bytes", "packets"):
            f = fam(
                f"{cls}_{unit}_total",
                "counter",
                help_text.replace("Bytes or packets", unit.capitalize()),
            )
            f.add(nft.get((cls, unit)))


def metrics_text(status: Mapping[str, Any]) -> str:
    """The `/metrics` body."""
    return render(families(status))
