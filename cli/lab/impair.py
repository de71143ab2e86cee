"""Link impairment without netem (this kernel has none): one validated type, one options table.

- loss: an nftables netdev *ingress* chain on the receiving interface drops frames at random
  (`numgen random`), so babel hellos, ARP/ND and data all see the same loss, as on a radio;
- rate: a tbf qdisc on the sending interface;
- delay and jitter: a userspace TAP relay (`cli.lab.relay`) carries the link instead of the veth;
  jitter adds a uniform +-MS to each frame's delay (frames stay in order).

`loss` means the loss a ping over the link sees (round trip). Without `one_way` it is split
evenly between the two directions (each drops 1 - sqrt(1 - PCT)); with `one_way` only frames
from A to B are dropped. `delay` and `rate` are per direction, like netem.

`OPTIONS` is the one list of knobs: the `lab impair` flags, the YAML keys, the keywords of
`Lab.impair`, validation and `describe` all come from it, and each entry names the lab function
that applies it (`cli.lab.shaping.APPLIERS`). A new impairment is a field of `Impairment`, an
entry here and one apply function there.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshd.errors import FixableError

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


#: The fix a bad impairment or topology value points to.
LAB_HELP = "see `mutualmesh lab --help`"


class ImpairError(FixableError, ValueError):
    """An impairment value the user gave is not usable."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = LAB_HELP) -> None:
        super().__init__(what, where, fix)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImpairError(f"{what} {value!r}: must be a number")
    return float(value)


def parse_rate(text: object) -> int:
    """`10mbit`, `500kbit`, `2mbps` (bytes) -> bits per second, tc's unit names; 0 = unlimited."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        m = _RATE_RE.match(text) if isinstance(text, str) else None
        if not m:
            raise ImpairError(f"rate {text!r}: write it like 10mbit, 500kbit or 1gbit")
        value = float(m.group(1)) * _RATE_UNITS[(m.group(2) or "bit").lower()]
    if value and (value < 8_000 or value > 100_000_000_000):
        raise ImpairError(f"rate {text!r}: must be between 8kbit and 100gbit")
    return int(value)


def check_loss(pct: object) -> float:
    value = _number(pct, "loss")
    if not 0 <= value < 100:
        raise ImpairError(f"loss {pct}: must be a percentage in [0, 100)")
    return value


def check_delay(ms: object) -> float:
    value = _number(ms, "delay")
    if not 0 <= value <= 10_000:
        raise ImpairError(f"delay {ms}: must be milliseconds in [0, 10000]")
    return value


def check_jitter_range(ms: object) -> float:
    value = _number(ms, "jitter")
    if not 0 <= value <= 10_000:
        raise ImpairError(f"jitter {ms}: must be milliseconds in [0, 10000]")
    return value


def check_jitter(ms: float, delay_ms: float) -> float:
    """Jitter is +-ms around the delay, so it needs a delay at least as large."""
    check_jitter_range(ms)
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


def format_rate(bps: int) -> str:
    for unit, size in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bps >= size and bps % size == 0:
            return f"{bps // size}{unit}"
    return f"{bps}bit"


@dataclass(frozen=True)
class Impairment:
    """What is done to a link; zero values mean "not impaired". Valid once constructed."""

    loss: float = 0.0
    rate_bps: int = 0
    delay_ms: float = 0.0
    one_way: bool = False
    jitter_ms: float = 0.0  # +- around delay_ms, uniform, frames stay in order

    def __post_init__(self) -> None:
        for opt in OPTIONS:
            opt.parse(getattr(self, opt.field))
        check_jitter(self.jitter_ms, self.delay_ms)
        if not isinstance(self.one_way, bool):
            raise ImpairError(f"one_way {self.one_way!r}: must be true or false")

    @property
    def empty(self) -> bool:
        return all(not getattr(self, opt.field) for opt in OPTIONS)

    def describe(self) -> str:
        parts = [text for opt in OPTIONS if (text := opt.show(self))]
        if parts and self.one_way:
            parts.append("one-way")
        return ", ".join(parts) or "none"

    def changed(self, given: Mapping[str, object], one_way: bool) -> Impairment:
        """This impairment with the options in `given` (by option name) set; the rest stay.

        Taking the delay away takes its jitter with it, unless jitter is given too.
        """
        unknown = set(given) - set(BY_NAME)
        if unknown:
            raise ImpairError(
                f"unknown impairment {', '.join(sorted(unknown))}: use {', '.join(BY_NAME)}"
            )
        values = {BY_NAME[k].field: BY_NAME[k].parse(v) for k, v in given.items()}
        if "jitter_ms" not in values and not values.get("delay_ms", self.delay_ms):
            values["jitter_ms"] = 0.0
        return dataclasses.replace(self, one_way=one_way, **values)

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any], where: str) -> Impairment:
        """From a YAML link entry (`loss`, `rate`, `delay`, `jitter`, `one_way`; others ignored)."""
        given = {k: v for k, v in entry.items() if k in BY_NAME}
        try:
            return cls().changed(given, entry.get("one_way", False))
        except ImpairError as exc:
            raise ImpairError(f"{where}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Impairment:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Option:
    """One impairment knob: `--NAME` on the command line, `NAME:` in YAML, `NAME=` for `impair`."""

    name: str
    field: str  # the Impairment field it sets
    parse: Callable[[object], Any]  # user value -> field value, raises ImpairError
    kind: type  # what the command line reads (float or str)
    help: str
    show: Callable[[Impairment], str]  # its part of `describe` ("" when unset)
    applier: str  # the key in cli.lab.shaping.APPLIERS of the function that applies it
    on_segment: bool = False  # also settable between two members of a shared segment


def _show_delay(imp: Impairment) -> str:
    if not imp.delay_ms:
        return ""
    jitter = f"+-{imp.jitter_ms:g}" if imp.jitter_ms else ""
    return f"delay {imp.delay_ms:g}{jitter}ms"


OPTIONS: tuple[Option, ...] = (
    Option(
        "loss",
        "loss",
        check_loss,
        float,
        "Percent of pings lost over the link (split each way); on a shared segment 100 = out"
        " of range.",
        lambda imp: f"loss {imp.loss:g}%" if imp.loss else "",
        "loss",
        on_segment=True,
    ),
    Option(
        "rate",
        "rate_bps",
        parse_rate,
        str,
        "Bandwidth per direction, e.g. 10mbit, 500kbit.",
        lambda imp: f"rate {format_rate(imp.rate_bps)}" if imp.rate_bps else "",
        "rate",
    ),
    Option(
        "delay",
        "delay_ms",
        check_delay,
        float,
        "One-way delay in ms per direction (TAP relay).",
        _show_delay,
        "relay",
    ),
    Option(
        "jitter",
        "jitter_ms",
        check_jitter_range,
        float,
        "Random +-ms around --delay per frame (frames stay in order).",
        lambda imp: "",  # shown with the delay it varies
        "relay",
    ),
)
BY_NAME = {opt.name: opt for opt in OPTIONS}


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
