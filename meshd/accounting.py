"""Cumulative byte and packet accounting from raw kernel counters (pure, no files or clock).

Raw counters wrap (32-bit on older drivers and iw, 64-bit in sysfs and nftables) and restart from
zero (reboot, interface or nftables table recreated). Each raw source therefore carries an
*epoch* string (boot id plus whatever identifies the counter's lifetime); a saved baseline is only
reused when its epoch matches. That is what makes a restart after kill -9 count every byte once:
totals and baselines are saved together, so bytes since the last save are counted again from the
old baseline — exactly once — instead of being lost or doubled. It also means the saved state
must be rewritten whenever a baseline stops describing its meter's lineage (a new meter, a new
epoch, a link passing to another neighbour): `Ledger.changes` counts those moments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WIDTH_32 = 32
WIDTH_64 = 64


def counter_delta(previous: int, current: int, width: int = WIDTH_64) -> int:
    """Increase of a raw counter from `previous` to `current`.

    A decrease is either a wrap (the wrapped distance is less than half the range: counters do
    not move that much between two reads) or a restart from zero (then `current` is all new).
    """
    if previous < 0 or current < 0:
        raise ValueError("raw counters are never negative")
    if current >= previous:
        return current - previous
    modulus = 1 << width
    if previous < modulus:
        wrapped = modulus - previous + current
        if wrapped < modulus // 2:
            return wrapped
    return current


@dataclass(slots=True)
class Meter:
    """One cumulative total fed by one raw counter."""

    total: int = 0
    baseline: int | None = None  # last raw value seen, None until the first read
    epoch: str = ""
    width: int = WIDTH_64

    def update(self, raw: int, epoch: str) -> int:
        """Add the increase since the last read; a new epoch means the raw counter began at 0.

        The very first read only sets the baseline: bytes from before the meter existed (a
        router up for weeks before the agent was installed) are not ours to claim.
        """
        if self.baseline is None:
            self.epoch, self.baseline = epoch, raw
            return 0
        if epoch != self.epoch:
            self.epoch, self.baseline = epoch, 0
        delta = counter_delta(self.baseline or 0, raw, self.width)
        self.total += delta
        self.baseline = raw
        return delta

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "baseline": self.baseline, "epoch": self.epoch}

    @classmethod
    def from_json(cls, value: Any, width: int = WIDTH_64) -> Meter:
        if not isinstance(value, dict):
            raise ValueError("meter must be an object")
        total, baseline, epoch = value.get("total"), value.get("baseline"), value.get("epoch")
        if not isinstance(total, int) or total < 0:
            raise ValueError("meter total must be a non-negative integer")
        if baseline is not None and (not isinstance(baseline, int) or baseline < 0):
            raise ValueError("meter baseline must be a non-negative integer")
        if not isinstance(epoch, str):
            raise ValueError("meter epoch must be a string")
        return cls(total, baseline, epoch, width)


@dataclass(slots=True)
class Ledger:
    """All meters of a node by name, saved and restored as one unit."""

    meters: dict[str, Meter] = field(default_factory=dict)
    changes: int = 0  # new meters and re-anchored baselines: each needs a save (not saved itself)

    def update(self, name: str, raw: int, epoch: str, width: int = WIDTH_64) -> int:
        meter = self.meters.get(name)
        if meter is None:
            meter = self.meters[name] = Meter(width=width)
        if meter.baseline is None or meter.epoch != epoch:
            self.changes += 1
        return meter.update(raw, epoch)

    def total(self, name: str) -> int:
        meter = self.meters.get(name)
        return 0 if meter is None else meter.total

    def to_json(self) -> dict[str, Any]:
        return {name: meter.to_json() for name, meter in sorted(self.meters.items())}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Ledger:
        return cls({str(name): Meter.from_json(m) for name, m in value.items()})


class SeqExhausted(Exception):
    """The reserved block is used up; persist a new reservation before taking more."""


@dataclass(slots=True)
class SeqReservation:
    """Record sequence numbers that never go backwards, even across kill -9.

    Numbers are handed out only below `reserved`, and `reserved` is persisted before it is raised,
    so after a crash the next run starts above anything that could have been published. Blocks
    make that a write per `block` records instead of one per record (flash wear).
    """

    next_seq: int = 1
    reserved: int = 0
    block: int = 10_000

    @classmethod
    def resume(cls, saved_reserved: int, block: int = 10_000) -> SeqReservation:
        """After a restart, skip everything the previous run may have used."""
        return cls(next_seq=saved_reserved + 1, reserved=saved_reserved, block=block)

    def needs_reservation(self) -> bool:
        return self.next_seq > self.reserved

    def proposed(self) -> int:
        """The `reserved` value to persist before calling `commit`."""
        return self.next_seq + self.block - 1

    def commit(self, reserved: int) -> None:
        """Call after `reserved` reached stable storage."""
        if reserved < self.next_seq:
            raise ValueError("a reservation must cover the next sequence number")
        self.reserved = reserved

    def take(self) -> int:
        if self.needs_reservation():
            raise SeqExhausted(f"seq {self.next_seq} is above the reserved {self.reserved}")
        seq = self.next_seq
        self.next_seq += 1
        return seq


STATS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")


def neighbour_meter(node_id: str, iface: str, stat: str) -> str:
    """Ledger name of one per-neighbour counter (what `TrafficBody.neighbours` is built from)."""
    return f"nb/{node_id}/{iface}/{stat}"


@dataclass(slots=True)
class _Mark:
    """Raw interface counters up to which bytes are already credited to someone (or unclaimed)."""

    epoch: str
    raw: dict[str, int]


@dataclass(slots=True)
class LinkMeters:
    """Point-to-point interface counters credited to the neighbour at the other end.

    The interface is watched from the moment the agent first reads it (agent start, or the
    interface appearing later), not from when the neighbour is discovered: mDNS takes a second
    or more, and traffic that flows meanwhile is that neighbour's all the same. Bytes seen while
    no neighbour is known are held as unclaimed and go to the first neighbour found there. When
    a different node appears on the interface (cable moved, router replaced) it gets a fresh
    meter starting where the previous neighbour's stopped, so no byte is credited twice.

    `owners` (who held each counter source last) is saved with the ledger: after a restart the
    last holder keeps its link until another node shows up, so its restored meter catches up at
    the first read instead of publishing its older saved total until mDNS finds it again.
    """

    ledger: Ledger
    marks: dict[str, _Mark] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    fed_by: dict[str, str] = field(default_factory=dict)  # meter name -> source feeding it

    def to_json(self) -> dict[str, Any]:
        return {"owners": dict(sorted(self.owners.items()))}

    @classmethod
    def from_json(cls, ledger: Ledger, value: Any) -> LinkMeters:
        if not isinstance(value, dict) or not isinstance(value.get("owners", {}), dict):
            raise ValueError("links must be an object with an owners object")
        owners = value.get("owners", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in owners.items()):
            raise ValueError("link owners must map counter sources to node ids")
        return cls(ledger, owners=dict(owners))

    def gone(self, iface: str) -> None:
        """The interface does not exist (yet): when it appears, all its bytes are ours to count."""
        self.absent.add(iface)
        self.marks.pop(iface, None)

    def fold(
        self,
        iface: str,
        raw: Mapping[str, int],
        epoch: str,
        owner: str | None,
        *,
        source: str | None = None,
        new: bool = False,
        counted_elsewhere: bool = False,
    ) -> None:
        """One read of a raw counter set; `owner` is the neighbour at its other end, None if
        unknown. `source` names the counter set when it is not the interface itself (a wifi
        station, keyed by MAC); `new` says it appeared after the agent began watching (a
        station absent from an earlier dump), so it counted from zero while we watched.
        `counted_elsewhere`: these bytes are credited through another source right now (a
        per-MAC counter while the interface's own counters serve), so they are never unclaimed.
        """
        key = iface if source is None else source
        mark = self.marks.get(key)
        if mark is None:
            # Appeared while we watched: the kernel counted from zero at creation.
            fresh = new or key in self.absent
            mark = self.marks[key] = _Mark(epoch, dict.fromkeys(raw, 0) if fresh else dict(raw))
            self.absent.discard(key)
        elif mark.epoch != epoch:  # recreated between two reads
            mark.epoch, mark.raw = epoch, dict.fromkeys(raw, 0)
        if owner is None:
            if counted_elsewhere:
                mark.raw = dict(raw)
            return
        previous = self.owners.get(key)
        self.owners[key] = owner
        if previous != owner:
            self.ledger.changes += 1
        for stat, value in raw.items():
            name = neighbour_meter(owner, iface, stat)
            meter = self.ledger.meters.get(name)
            fed_by = self.fed_by.get(name)
            self.fed_by[name] = key
            if meter is None:
                meter = self.ledger.meters[name] = Meter(epoch=epoch, baseline=mark.raw.get(stat))
                self.ledger.changes += 1
            elif (previous is not None and previous != owner) or fed_by not in (None, key):
                # Back after another node held the link, or fed from another source until now
                # (interface counters, then per-MAC ones): start from this source's mark. (A meter
                # restored from saved state keeps its own baseline when it is the interface's
                # first owner of this run: bytes while the agent was down were that neighbour's.)
                meter.epoch, meter.baseline = epoch, mark.raw.get(stat)
                self.ledger.changes += 1
            elif meter.epoch != epoch:
                self.ledger.changes += 1
            meter.update(value, epoch)
        mark.raw = dict(raw)
