"""Parsers for the tools the lab measures with (ping, iperf3); pure so they are unit-tested."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_SENT_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT_RE = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0


def parse_ping(text: str) -> PingResult:
    """Read the summary of iputils `ping -q`; raises ValueError when there is none."""
    m = _SENT_RE.search(text)
    if not m:
        raise ValueError(f"no ping summary in output: {text.strip()[-200:]!r}")
    rtt = _RTT_RE.search(text)
    mn, avg, mx = (float(rtt.group(i)) for i in (1, 2, 3)) if rtt else (None, None, None)
    return PingResult(int(m.group(1)), int(m.group(2)), mn, avg, mx)


@dataclass(frozen=True)
class TrafficResult:
    """What an iperf3 run moved: bytes as the sender and receiver counted them, and the rate."""

    sent_bytes: int
    received_bytes: int
    seconds: float
    receiver_bps: float
    retransmits: int | None = None

    @property
    def receiver_mbps(self) -> float:
        return self.receiver_bps / 1e6


def parse_iperf3(text: str) -> TrafficResult:
    """Read `iperf3 -J` output of a TCP client; raises ValueError on an error report."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"iperf3 did not print JSON: {text.strip()[-200:]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError("iperf3 JSON is not an object")
    if data.get("error"):
        raise ValueError(f"iperf3: {data['error']}")
    end = data.get("end", {})
    sent = end.get("sum_sent", {})
    received = end.get("sum_received", {})
    if not sent or not received:
        raise ValueError("iperf3 JSON has no end.sum_sent / end.sum_received")
    retr = sent.get("retransmits")
    return TrafficResult(
        sent_bytes=int(sent.get("bytes", 0)),
        received_bytes=int(received.get("bytes", 0)),
        seconds=float(received.get("seconds", sent.get("seconds", 0.0))),
        receiver_bps=float(received.get("bits_per_second", 0.0)),
        retransmits=int(retr) if retr is not None else None,
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
