"""The archive: one per run, baselines by snapshot, flaps only from records that verify."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from meshd.records import Kind
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh


def _links_state(src: list, archive: Path) -> dict[tuple[str, str], str]:
    r = invoke("links", *src, "--archive", archive, "--json")
    assert r.exit_code == 0, r.output
    return {(x["a"], x["b"]): x["state"] for x in json.loads(r.output)["links"]}


def test_forged_archive_rows_cannot_make_a_link_flap(tmp_path: Path):
    mesh = SyntheticMesh.chain(3)
    community = mesh.write_community(tmp_path / "c.yaml")
    archive = tmp_path / "archive"
    for step in range(3):
        snap = mesh.write_snapshot(tmp_path / f"t{step}.json")
        states = _links_state(["--community", community, "--snapshot", snap], archive)
        mesh.advance(60)
    assert set(states.values()) == {"good"}
    # someone with access to the archive file writes link records saying n1's links went down
    db = sqlite3.connect(archive / "archive.sqlite")
    (last,) = db.execute("SELECT max(id) FROM snapshots").fetchone()
    rows = db.execute(
        "SELECT node_id, raw FROM records WHERE snapshot = ? AND kind = ?", (last, Kind.LINKS.value)
    ).fetchall()
    forged = [(n, bytes(r).replace(b'"up":true', b'"up":false')) for n, r in rows]
    assert any(f != bytes(r) for (_, f), (_, r) in zip(forged, rows, strict=True))
    with db:
        for i in range(4):
            cur = db.execute(
                "INSERT INTO snapshots (taken_at, community) VALUES (?, ?)",
                (mesh.now - 30 + i, mesh.name),
            )
            db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?)",
                [
                    (cur.lastrowid, n, Kind.LINKS.value, f if i % 2 == 0 else bytes(r))
                    for (n, f), (_, r) in zip(forged, rows, strict=True)
                ],
            )
    db.close()
    snap = mesh.write_snapshot(tmp_path / "t3.json")
    states = _links_state(["--community", community, "--snapshot", snap], archive)
    assert set(states.values()) == {"good"}  # the forged rows fail their signatures


def test_the_runs_own_snapshot_is_never_its_baseline(tmp_path: Path):
    mesh = SyntheticMesh.chain(2)
    mesh.flow("n1", "n2", 5_000_000)
    community = mesh.write_community(tmp_path / "c.yaml")
    snap = mesh.write_snapshot(tmp_path / "t0.json")
    args = ["--community", community, "--snapshot", snap, "--archive", tmp_path / "a"]
    data = json.loads(invoke("contrib", *args, "--since", "1h", "--json").output)
    assert data["baseline_at"] is None
    assert "no earlier snapshot" in data["window"]
