"""Past snapshots in SQLite, opened once per run and passed along on the `Mesh`.

`contrib --since` compares counters against a baseline snapshot and the audit looks for counter
regressions and flapping links. The archive is a file anyone with access could edit, so every
record read back is verified again, flap counts included; snapshots are told apart by their id,
so the run's own snapshot is never its own baseline.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from cli.errors import UserError
from cli.read.verify import verify
from meshd.records import Kind, LinksBody, TrafficBody
from meshd.store import RecordStore
from meshd.trust import Trust


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: int
    taken_at: float


class Archive:
    """One row per (snapshot, record); records are re-verified on every read."""

    def __init__(self, directory: str) -> None:
        path = Path(directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path / "archive.sqlite")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS snapshots (id INTEGER PRIMARY KEY, taken_at REAL, "
                "community TEXT)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS records (snapshot INTEGER, node_id TEXT, kind TEXT, "
                "raw BLOB)"
            )
            self.db.execute("CREATE INDEX IF NOT EXISTS records_snap ON records(snapshot)")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the archive: {exc}", where=directory) from None

    def close(self) -> None:
        self.db.close()

    def save(self, community: str, taken_at: float, store: RecordStore) -> int:
        """Add a snapshot; returns its id."""
        with self.db:
            cur = self.db.execute(
                "INSERT INTO snapshots (taken_at, community) VALUES (?, ?)", (taken_at, community)
            )
            snap = int(cur.lastrowid or 0)
            self.db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?)",
                [(snap, e.node_id, e.kind.value, e.raw) for e in store],
            )
        return snap

    def snapshots(self, community: str) -> list[Snapshot]:
        rows = self.db.execute(
            "SELECT id, taken_at FROM snapshots WHERE community = ? ORDER BY taken_at, id",
            (community,),
        )
        return [Snapshot(int(a), float(b)) for a, b in rows]

    def baseline(self, community: str, *, before: Snapshot, at_or_before: float) -> Snapshot | None:
        """The newest earlier snapshot taken at or before a moment, else the oldest earlier one.

        Earlier means taken before `before` and never `before`'s own row (matched by id: the
        run's snapshot is saved first, so it must not become its own baseline).
        """
        older = [
            s
            for s in self.snapshots(community)
            if s.id != before.id and s.taken_at < before.taken_at
        ]
        fitting = [s for s in older if s.taken_at <= at_or_before]
        if fitting:
            return fitting[-1]
        return older[0] if older else None

    def _rows(self, snap: Snapshot, kind: Kind | None = None) -> list[bytes]:
        if kind is None:
            rows = self.db.execute("SELECT raw FROM records WHERE snapshot = ?", (snap.id,))
        else:
            rows = self.db.execute(
                "SELECT raw FROM records WHERE snapshot = ? AND kind = ?", (snap.id, kind.value)
            )
        return [bytes(r[0]) for r in rows]

    def load(self, snap: Snapshot, trust: Trust) -> RecordStore:
        return verify(trust, self._rows(snap), snap.taken_at)

    def traffic(self, snap: Snapshot, trust: Trust) -> dict[str, TrafficBody]:
        store = verify(trust, self._rows(snap, Kind.TRAFFIC), snap.taken_at)
        return {
            e.node_id: b
            for e in store
            if e.kind is Kind.TRAFFIC and isinstance(b := e.body, TrafficBody)
        }

    def link_flaps(
        self, community: str, trust: Trust, limit: int = 50
    ) -> dict[tuple[str, str], int]:
        """How often each link's reported up/down state changed across recent snapshots,
        counted from the link records that verify (a forged row cannot invent a flap)."""
        last: dict[tuple[str, str], bool] = {}
        changes: Counter[tuple[str, str]] = Counter()
        for snap in self.snapshots(community)[-limit:]:
            store = verify(trust, self._rows(snap, Kind.LINKS), snap.taken_at)
            state: dict[tuple[str, str], bool] = {}
            for env in store:
                if not isinstance(env.body, LinksBody):
                    continue
                for entry in env.body.links:
                    a, b = sorted((env.node_id, entry.neighbour))
                    state[(a, b)] = state.get((a, b), True) and entry.up
            for key, up in state.items():
                if key in last and last[key] != up:
                    changes[key] += 1
                last[key] = up
        return dict(changes)
