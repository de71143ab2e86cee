"""Why a link is bad: the one table of reasons and thresholds behind every "what to try".

`mutualmesh diagnose` (admin words, `cli.analysis.diagnosis`) and the members' page (plain
words, `node_agent.webapi`) both explain a bad link; the router cannot import the CLI, so the
rules live here, pure, and each side keeps only its wording, one entry per `Reason`. A new
reason is a `Reason` member, one rule in `RULES` and a wording on each side (a side that has
nothing to say about it maps it to None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from meshd.topology import Direction, LinkState

LOW_SIGNAL_DBM = -80  # at or below: a faint radio signal
SLOW_RTT_MS = 50.0  # at or above, with little loss: congestion or bufferbloat
LOSSY = 0.1  # loss at or above this share is worth explaining
ONE_WAY_GAP = 0.15  # the two directions' losses differ by this much: loss only one way
WEAK_LOSS = 0.3  # heavy loss: the members' page calls such a link weak


class Reason(StrEnum):
    ONE_WAY_LOSS = "one_way_loss"
    LOSS_BOTH_WAYS = "loss_both_ways"
    LOW_SIGNAL = "low_signal"
    CONGESTED = "congested"
    FLAPPING = "flapping"
    ONE_SIDED = "one_sided"
    TUNNEL = "tunnel"
    DOWN = "down"


@dataclass(frozen=True)
class Hop:
    """A link seen from `src`: `out` is src -> dst, `back` dst -> src."""

    src: str
    dst: str
    out: Direction
    back: Direction
    state: LinkState

    @property
    def worst_loss(self) -> float:
        return max(self.out.loss or 0.0, self.back.loss or 0.0)

    @property
    def medium(self) -> str:
        return medium_of(self.out, self.back)


def medium_of(*directions: Direction) -> str:
    """What a link runs over (wifi, veth, tap...) as the first end that reports it says."""
    for d in directions:
        if d.entry is not None:
            return d.entry.medium
    return "other"


@dataclass(frozen=True)
class Cause:
    """One reason a hop is bad, with the figures its wording needs.

    `worse` -> `better` is the direction (or node) the reason is about; `value` is its loss
    share, signal in dBm or RTT in ms; `other` is the smaller loss of a one-way loss; `medium`
    what the link runs over.
    """

    reason: Reason
    worse: str
    better: str
    value: float = 0.0
    other: float = 0.0
    medium: str = "other"


def _loss(h: Hop) -> Iterator[Cause]:
    lo, lb = h.out.loss, h.back.loss
    if lo is not None and lb is not None and abs(lo - lb) >= ONE_WAY_GAP:
        worse, better = (h.src, h.dst) if lo > lb else (h.dst, h.src)
        yield Cause(Reason.ONE_WAY_LOSS, worse, better, max(lo, lb), min(lo, lb))
    elif h.worst_loss >= LOSSY:
        yield Cause(Reason.LOSS_BOTH_WAYS, h.src, h.dst, h.worst_loss, medium=h.medium)


def _signal(h: Hop) -> Iterator[Cause]:
    for d in (h.out, h.back):
        if d.signal_dbm is not None and d.signal_dbm <= LOW_SIGNAL_DBM:
            yield Cause(Reason.LOW_SIGNAL, d.src, d.dst, d.signal_dbm)


def _congested(h: Hop) -> Iterator[Cause]:
    rtt = h.out.rtt_ms
    if rtt is not None and rtt >= SLOW_RTT_MS and h.worst_loss < LOSSY:
        yield Cause(Reason.CONGESTED, h.src, h.dst, rtt)


def _state(state: LinkState, reason: Reason) -> Callable[[Hop], Iterator[Cause]]:
    def rule(h: Hop) -> Iterator[Cause]:
        if h.state is state:
            yield Cause(reason, h.src, h.dst)

    return rule


def _tunnel(h: Hop) -> Iterator[Cause]:
    if h.out.entry is not None and h.out.entry.medium == "tap":
        yield Cause(Reason.TUNNEL, h.src, h.dst)


#: The rules in the order their causes are told.
RULES: tuple[Callable[[Hop], Iterator[Cause]], ...] = (
    _loss,
    _signal,
    _congested,
    _state(LinkState.FLAPPING, Reason.FLAPPING),
    _state(LinkState.ONE_SIDED, Reason.ONE_SIDED),
    _tunnel,
    _state(LinkState.DOWN, Reason.DOWN),
)


def causes(hop: Hop) -> list[Cause]:
    """Every reason `hop` is bad, in the order `RULES` tells them."""
    return [c for rule in RULES for c in rule(hop)]


#: One side's wording: a cause and the node-naming function in, a sentence out.
Words = dict[Reason, Callable[[Cause, Callable[[str], str]], str] | None]


def worded(found: list[Cause], words: Words, name: Callable[[str], str]) -> list[str]:
    """The causes in one side's words, leaving out reasons that side does not mention."""
    out = []
    for c in found:
        say = words[c.reason]
        if say is not None:
            out.append(say(c, name))
    return out
