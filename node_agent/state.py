"""The agent's persisted state: seq reservation, counters, shared links, revocations.

One JSON file, written with `fsutil.atomic_write` (a full disk keeps the old good file, so seq
never restarts at 1). The seq reservation is written before any number in it is handed out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshd.accounting import Ledger, LinkMeters, SeqReservation
from meshd.trust import Revocation
from node_agent import system
from node_agent.fsutil import atomic_write
from node_agent.runtime import Clock

log = logging.getLogger("meshd")
STATE_FILE = "state.json"
MAX_REVOCATIONS = 10_000  # bounds the file against a flood of (valid) revocations


@dataclass
class Loaded:
    """What a previous run left; every field falls back to a fresh start on its own."""

    seq_reserved: int = 0
    ledger: Ledger | None = None
    links: LinkMeters | None = None
    shared: set[str] = field(default_factory=set)
    since: int | None = None
    revocations: list[Revocation] = field(default_factory=list)


def parse(data: dict[str, Any], mesh_ifaces: Iterable[str], where: Path) -> Loaded:
    out = Loaded()
    try:
        out.seq_reserved = int(data.get("seq_reserved", 0))
    except (ValueError, TypeError) as exc:
        log.error("%s: seq_reserved unreadable (%s)", where, exc)
    try:
        ledger = Ledger.from_json(data.get("ledger", {}))
        links = LinkMeters.from_json(ledger, data.get("links", {}))
        shared = data.get("shared", [])
        if not isinstance(shared, list) or not all(isinstance(i, str) for i in shared):
            raise ValueError("shared must be a list of interface names")
        out.ledger, out.links = ledger, links
        out.shared = set(shared) & set(mesh_ifaces)
        out.since = int(data["since"]) if "since" in data else None
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("%s: bad state (%s); seq resumes, counters restart", where, exc)
    raw = data.get("revocations", [])
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            out.revocations.append(Revocation.from_json(item, f"revocations[{i}]"))
        except Exception as exc:  # one bad entry must not lose the others
            log.warning("%s: revocation %d unreadable (%s)", where, i, exc)
    return out


class StateFile:
    """Reads and writes the state file; counts writes for the status."""

    def __init__(self, path: Path, clock: Clock, seq_block: int) -> None:
        self.path = path
        self.clock = clock
        self.seq = SeqReservation(block=seq_block)
        self.last_save = 0.0
        self.writes = 0

    def read(self, mesh_ifaces: Iterable[str]) -> Loaded | None:
        data = system.read_json(self.path)
        if data is None:
            return None
        loaded = parse(data, mesh_ifaces, self.path)
        self.seq = SeqReservation.resume(loaded.seq_reserved, self.seq.block)
        return loaded

    def write(self, reserved: int, fields: dict[str, Any]) -> None:
        data = {"v": 1, "seq_reserved": reserved, "saved_at": int(self.clock.now()), **fields}
        atomic_write(self.path, json.dumps(data, sort_keys=True).encode())
        self.last_save = self.clock.monotonic()
        self.writes += 1

    def reserve(self, fields: dict[str, Any]) -> None:
        """Persist a new block before handing out numbers from it."""
        if self.seq.needs_reservation():
            proposed = self.seq.proposed()
            self.write(proposed, fields)
            self.seq.commit(proposed)

    def revocations_json(self, revoked: Iterable[Revocation]) -> list[dict[str, Any]]:
        return [r.to_json() for r in list(revoked)[-MAX_REVOCATIONS:]]
