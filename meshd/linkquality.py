"""Link quality from probes: delivery windows, ETX and the probe wire format (pure, no clock).

ETX as De Couto et al. (MobiCom 2003) define it: each node sends a small probe to each neighbour
once per interval; the receiver counts which sequence numbers arrived over the last `size` probes
(the *reverse* delivery ratio seen from the receiver) and reports that count back in its echo, so
the sender learns its *forward* ratio. ETX = 1 / (df · dr). Callers pass the time in; nothing here
reads a clock, so every number is reproducible in tests.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass

DEFAULT_WINDOW = 64
MAGIC = b"MMP1"
PROBE = 1
ECHO = 2
# magic, type, session, seq, sent-at (sender's clock, echoed back untouched), rx count, span, id
_FORMAT = struct.Struct("!4sBIId HH16s")
PACKET_SIZE = _FORMAT.size


def etx(df: float | None, dr: float | None) -> float | None:
    """Expected transmissions for one delivered and acknowledged frame; None when unusable."""
    if df is None or dr is None or df <= 0 or dr <= 0:
        return None
    return 1.0 / (df * dr)


def loss(df: float | None, dr: float | None) -> float | None:
    """Round-trip loss 1 - df·dr: the share of probes that never come back, what ping reports."""
    if df is None or dr is None:
        return None
    return 1.0 - max(0.0, df) * max(0.0, dr)


@dataclass(frozen=True, slots=True)
class Packet:
    """A probe (kind PROBE) or its echo (kind ECHO; carries the responder's receive count)."""

    kind: int
    session: int
    seq: int
    sent_at: float
    rx_count: int = 0
    span: int = 0
    node_id: str = ""

    def encode(self) -> bytes:
        return _FORMAT.pack(
            MAGIC,
            self.kind,
            self.session,
            self.seq,
            self.sent_at,
            self.rx_count,
            self.span,
            self.node_id.encode("ascii"),
        )

    @classmethod
    def decode(cls, data: bytes) -> Packet | None:
        """None for anything that is not exactly one of our packets (never raises on input)."""
        if len(data) != PACKET_SIZE:
            return None
        magic, kind, session, seq, sent_at, rx_count, span, raw_id = _FORMAT.unpack(data)
        if magic != MAGIC or kind not in (PROBE, ECHO) or not math.isfinite(sent_at):
            return None
        try:
            node_id = raw_id.decode("ascii")
        except UnicodeDecodeError:
            return None
        if rx_count > span or span > 0xFFFF:
            return None
        return cls(kind, session, seq, sent_at, rx_count, span, node_id)


class SeqWindow:
    """Which of one sender's last `size` sequence numbers arrived.

    A new `session` (the sender restarted) starts a fresh window, so a restart never reads as
    loss. `expected_upto` lets the caller count probes that should have arrived by now but did
    not, so a silent neighbour's ratio falls instead of freezing at its last value.
    """

    __slots__ = ("bits", "first", "highest", "session", "size")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValueError("window size must be at least 1")
        self.size = size
        self.session: int | None = None
        self.first: int | None = None
        self.highest: int | None = None
        self.bits = 0  # bit i set = seq (highest - i) arrived

    def add(self, session: int, seq: int) -> bool:
        """Record an arrival; False for a duplicate or a probe older than the window."""
        if session != self.session or self.highest is None or self.first is None:
            self.session, self.first, self.highest, self.bits = session, seq, seq, 1
            return True
        if seq > self.highest:
            shift = seq - self.highest
            mask = (1 << self.size) - 1
            self.bits = ((self.bits << shift) | 1) & mask if shift < self.size else 1
            self.highest = seq
            return True
        offset = self.highest - seq
        if offset >= self.size or seq < self.first or self.bits >> offset & 1:
            return False
        self.bits |= 1 << offset
        return True

    def count(self, upto: int | None = None) -> tuple[int, int]:
        """(received, expected) over the `size` seqs ending at `upto` (default: the highest)."""
        if self.highest is None or self.first is None:
            return 0, 0
        end = self.highest if upto is None else max(upto, self.highest)
        span = min(self.size, end - self.first + 1)
        shift = end - self.highest
        if shift >= self.size:
            return 0, span
        visible = self.bits & ((1 << (self.size - shift)) - 1)
        return visible.bit_count(), span

    def ratio(self, upto: int | None = None) -> float | None:
        got, span = self.count(upto)
        return None if span == 0 else got / span


@dataclass(frozen=True, slots=True)
class LinkSample:
    """What the estimator knows about one neighbour at one instant."""

    delivery_rx: float | None  # neighbour -> us, from the neighbour's probes we received
    delivery_tx: float | None  # us -> neighbour, from the count the neighbour echoed back
    rtt_ms: float | None
    etx: float | None
    loss: float | None
    heard_at: float | None  # last time anything (probe or echo) came from the neighbour


class LinkEstimator:
    """Per-neighbour probe bookkeeping; feed it events with their times, read `sample(now)`."""

    def __init__(self, interval: float = 1.0, window: int = DEFAULT_WINDOW) -> None:
        self.interval = interval
        self.window = window
        self.rx = SeqWindow(window)
        self.rx_at: float | None = None
        self.echo_ratio: float | None = None
        self.echo_at: float | None = None
        self.heard_at: float | None = None
        self.rtts: deque[float] = deque(maxlen=16)

    def on_probe(self, session: int, seq: int, now: float) -> tuple[int, int]:
        """A probe from the neighbour arrived; returns (rx_count, span) to put in the echo."""
        self.rx.add(session, seq)
        self.rx_at = self.heard_at = now
        return self.rx.count(seq)

    def on_echo(self, packet: Packet, now: float) -> None:
        """The neighbour echoed one of our probes, with its receive count of our probes."""
        self.heard_at = now
        if packet.span > 0:
            self.echo_ratio = packet.rx_count / packet.span
            self.echo_at = now
        rtt = (now - packet.sent_at) * 1000.0
        if 0 <= rtt < 60_000:
            self.rtts.append(rtt)

    def _missed_since(self, at: float | None, now: float) -> int:
        """Probes that should have arrived since `at`, allowing one interval of slack."""
        if at is None:
            return 0
        return max(0, math.floor((now - at) / self.interval) - 1)

    def sample(self, now: float) -> LinkSample:
        dr: float | None = None
        if self.rx.highest is not None:
            dr = self.rx.ratio(self.rx.highest + self._missed_since(self.rx_at, now))
        df = self.echo_ratio
        if df is not None and self.echo_at is not None:
            # Echo counts go stale when echoes stop; decay like the rx window would.
            missed = self._missed_since(self.echo_at, now)
            df = max(0.0, df - missed / self.window) if missed < self.window else 0.0
        rtt = sorted(self.rtts)[len(self.rtts) // 2] if self.rtts else None
        return LinkSample(
            delivery_rx=dr,
            delivery_tx=df,
            rtt_ms=rtt,
            etx=etx(df, dr),
            loss=loss(df, dr),
            heard_at=self.heard_at,
        )
