"""`mutualmesh contrib` shows the five states with their legend, each figure's bounds in --json,
and what the cost share billed (verified figure or lower bound)."""

from __future__ import annotations

import json
from pathlib import Path

from meshd.contrib import LEGEND
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh


def source(tmp_path: Path, mesh: SyntheticMesh) -> list[str]:
    community = mesh.write_community(tmp_path / "community.yaml")
    snap = mesh.write_snapshot(tmp_path / "snap.json")
    return ["--community", str(community), "--snapshot", str(snap)]


def framed_street() -> SyntheticMesh:
    mesh = SyntheticMesh.chain(5)
    mesh.flow("n1", "n5", 300_000_000)
    mesh.flow("n5", "n1", 100_000_000)
    mesh.flow("n1", "n2", 3_000_000_000)  # over a week: well above the control allowance
    mesh.freeze("n3")  # the framed node published a second before the others (records of
    mesh.advance(1)  # one whole second are unordered: no verdict between them)
    mesh.claim_neighbour("n4", "n3", rx=0, tx=mesh.nodes["n4"].tx["n3"])
    mesh.claim("n1", client_bytes=0)
    return mesh


def test_table_prints_every_state_legend_and_the_disputes(tmp_path: Path):
    r = invoke("contrib", *source(tmp_path, framed_street()))
    assert r.exit_code == 0, r.output
    for state, sentence in LEGEND.items():
        assert f"{state.value}: {sentence}" in r.output
    assert "≠ n3 relayed: claims 400,000,000 B" in r.output
    assert "n3–n4" in r.output
    assert "✗" not in r.output.split("✓ verified:")[0]  # nobody contradicted in the table


def test_json_carries_state_bounds_and_disputes(tmp_path: Path):
    data = json.loads(invoke("contrib", *source(tmp_path, framed_street()), "--json").output)
    by = {n["name"]: n for n in data["nodes"]}
    n3 = by["n3"]["relayed_bytes"]
    assert n3["check"] == "disputed"
    assert n3["disputes"] == ["n3–n4"]
    assert {b["what"] for b in n3["bounds"]} >= {"flow conservation from its own counters"}
    assert by["n3"]["state"] == "disputed"
    assert by["n2"]["state"] == "verified"
    assert by["n1"]["consumed_bytes"]["check"] == "disputed"


def test_cost_share_says_what_it_billed(tmp_path: Path):
    src = source(tmp_path, framed_street())
    data = json.loads(invoke("contrib", *src, "--cost-share", "90", "--json").output)
    by = {m["name"]: m for m in data["members"]}
    assert by["n1"]["basis"]["kind"] == "lower bound"
    assert by["n1"]["basis"]["bytes"] > 1_000_000_000  # the lower bound, not the claimed 0
    assert by["n5"]["basis"] == {"bytes": 400_000_000, "kind": "verified"}
    assert by["n1"]["total"] > by["n3"]["total"]  # a relay that consumed nothing pays less


def test_help_says_what_each_state_means():
    out = invoke("contrib", "--help").output
    for word in ("verified", "pending", "disputed", "contradicted", "unchecked", "lower bound"):
        assert word in out
