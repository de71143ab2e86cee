"""Link impairment without netem (this kernel has none).

- loss: an nftables netdev *ingress* chain on the receiving interface drops frames at random
  (`numgen random`), so babel hellos, ARP/ND and data all see the same loss, as on a radio;
- rate: a tbf qdisc on the sending interface;
- delay: a userspace TAP relay (`cli.lab.relay`) carries the link instead of the veth.

`--jitter MS` adds a uniform +-MS to each frame's delay in the relay (frames stay in order).

`--loss PCT` means the loss a ping over the link sees (round trip). Without `--one-way` it is
split evenly between the two directions (each drops 1 - sqrt(1 - PCT)); with `--one-way` only
frames from A to B are dropped. `--delay MS` and `--rate R` are per direction, like netem.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

NFT_TABLE = "mutualmesh_lab_impair"
RADIO_TABLE = "mutualmesh_lab_radio"
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?\s*$", re.I)
_RATE_UNITS = {
    "bit": 1,
    "kbit": 1_000,
    "mbit": 1_000_000,
    "gbit": 1_000_000_000,
    "bps": 8,
    "kbps": 8_000,
    "mbps": 8_000_000,
    "gbps": 8_000_000_000,
}
LOSS_SCALE = 10_000  # numgen modulus: loss is applied in steps of 0.01 %


class ImpairError(ValueError):
    """An impairment value the user gave is not usable."""


def parse_rate(text: str) -> int:
    """`10mbit`, `500kbit`, `2mbps` (bytes) -> bits per second, tc's unit names."""
    m = _RATE_RE.match(text)
    if not m:
        raise ImpairError(f"rate {text!r}: write it like 10mbit, 500kbit or 1gbit")
    value = float(m.group(1)) * _RATE_UNITS[(m.group(2) or "bit").lower()]
    if value < 8_000 or value > 100_000_000_000:
        raise ImpairError(f"rate {text!r}: must be between 8kbit and 100gbit")
    return int(value)


def check_loss(pct: float) -> float:
    if not 0 <= pct < 100:
        raise ImpairError(f"loss {pct}: must be a percentage in [0, 100)")
    return pct


def check_delay(ms: float) -> float:
    if not 0 <= ms <= 10_000:
        raise ImpairError(f"delay {ms}: must be milliseconds in [0, 10000]")
    return ms


def check_jitter(ms: float, delay_ms: float) -> float:
    """Jitter is +-ms around the delay, so it needs a delay at least as large."""
    if not 0 <= ms <= 10_000:
        raise ImpairError(f"jitter {ms}: must be milliseconds in [0, 10000]")
    if ms > delay_ms:
        raise ImpairError(
            f"jitter {ms:g} ms is larger than the delay ({delay_ms:g} ms): give --delay >= --jitter"
        )
    return ms


def per_direction_loss(pct: float, one_way: bool) -> tuple[float, float]:
    """(A->B, B->A) drop probabilities so a round trip loses `pct` percent."""
    p = check_loss(pct) / 100
    if one_way:
        return (p, 0.0)
    each = 1 - math.sqrt(1 - p)
    return (each, each)


@dataclass(frozen=True)
class Impairment:
    """What `lab impair` set on a link; zero values mean "not impaired"."""

    loss: float = 0.0
    rate_bps: int = 0
    delay_ms: float = 0.0
    one_way: bool = False
    jitter_ms: float = 0.0  # +- around delay_ms, uniform, frames stay in order

    @property
    def empty(self) -> bool:
        return not self.loss and not self.rate_bps and not self.delay_ms

    def describe(self) -> str:
        parts = []
        if self.loss:
            parts.append(f"loss {self.loss:g}%")
        if self.rate_bps:
            parts.append(f"rate {format_rate(self.rate_bps)}")
        if self.delay_ms:
            jitter = f"+-{self.jitter_ms:g}" if self.jitter_ms else ""
            parts.append(f"delay {self.delay_ms:g}{jitter}ms")
        if parts and self.one_way:
            parts.append("one-way")
        return ", ".join(parts) or "none"


def format_rate(bps: int) -> str:
    for unit, size in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps >= size and bps % size == 0:
            return f"{bps // size}{unit}"
    return f"{bps}bit"


def nft_script(drops: dict[str, float]) -> str:
    """A self-replacing netdev table dropping frames on ingress: {iface: probability}."""
    head = f"table netdev {NFT_TABLE}\ndelete table netdev {NFT_TABLE}\n"
    if not drops:
        return head
    body = [f"table netdev {NFT_TABLE} {{"]
    for i, (iface, prob) in enumerate(sorted(drops.items())):
        threshold = round(prob * LOSS_SCALE)
        body += [
            f"  chain ingress_{i} {{",
            f'    type filter hook ingress device "{iface}" priority -500; policy accept;',
            f'    numgen random mod {LOSS_SCALE} < {threshold} counter name "dropped_{i}" drop',
            f'    counter name "passed_{i}"',
            "  }",
            f"  counter dropped_{i} {{ }}",
            f"  counter passed_{i} {{ }}",
        ]
    body.append("}")
    return head + "\n".join(body) + "\n"


def tbf_argv(iface: str, rate_bps: int) -> list[str]:
    """tbf on egress; the bucket holds 20 ms of traffic (>= 32 KiB) so TCP reaches the rate."""
    burst = max(32 * 1024, rate_bps // 8 // 50)
    return [
        "tc", "qdisc", "replace", "dev", iface, "root",
        "tbf", "rate", f"{rate_bps}bit", "burst", str(burst), "latency", "50ms",
    ]  # fmt: skip


def tbf_clear_argv(iface: str) -> list[str]:
    return ["tc", "qdisc", "del", "dev", iface, "root"]


def relay_params(
    delay_ms: float, one_way: bool, jitter_ms: float = 0.0
) -> dict[str, dict[str, float]]:
    """Parameters file of the delay relay (it re-reads it on SIGUSR1)."""
    check_delay(delay_ms)
    check_jitter(jitter_ms, delay_ms)
    forward = {"delay_ms": delay_ms}
    if jitter_ms:
        forward["jitter_ms"] = jitter_ms
    return {"a_to_b": forward, "b_to_a": {"delay_ms": 0.0} if one_way else dict(forward)}


def radio_script(drops: dict[tuple[str, str], float]) -> str:
    """A self-replacing bridge table for a shared segment: {(from port, to port): probability}.

    The bridge evaluates `forward` once per output port, so flooded multicast (babel hellos,
    mDNS, ARP) is dropped per receiver exactly like unicast: a pair out of range (probability 1)
    never hears each other, while both still hear the others.
    """
    head = f"table bridge {RADIO_TABLE}\ndelete table bridge {RADIO_TABLE}\n"
    body = [
        f"table bridge {RADIO_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
    ]
    for (src, dst), prob in sorted(drops.items()):
        match = f'iifname "{src}" oifname "{dst}"'
        if prob >= 1:
            body.append(f"    {match} counter drop")
        elif prob > 0:
            threshold = round(prob * LOSS_SCALE)
            body.append(f"    {match} numgen random mod {LOSS_SCALE} < {threshold} counter drop")
    body += ["  }", "}"]
    return head + "\n".join(body) + "\n"
