"""`mutualmesh report`: one self-contained HTML file, with history from the archive."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cli.commands import report as rep
from meshd.records import TrafficBody
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh


def _mesh() -> SyntheticMesh:
    mesh = SyntheticMesh.chain(4)
    mesh.nodes["n1"].gateway_kbit = 50_000
    return mesh


def test_report_is_self_contained_and_has_every_part(tmp_path: Path):
    mesh = _mesh()
    community = mesh.write_community(tmp_path / "c.yaml")
    archive = tmp_path / "arch"
    for step in range(3):  # three meetings' worth of snapshots in the archive
        mesh.flow("n4", "n1", 5_000_000 * (step + 1), via_gateway=True)
        snap = mesh.write_snapshot(tmp_path / f"s{step}.json")
        r = invoke(
            "nodes",
            "--community",
            str(community),
            "--snapshot",
            str(snap),
            "--archive",
            str(archive),
        )
        assert r.exit_code == 0, r.output
        mesh.advance(3600)
    snap = mesh.write_snapshot(tmp_path / "now.json")
    out = tmp_path / "report.html"
    r = invoke(
        "report",
        "-o",
        str(out),
        "--cost-share",
        "120",
        "--community",
        str(community),
        "--snapshot",
        str(snap),
        "--archive",
        str(archive),
    )
    assert r.exit_code == 0, r.output
    text = out.read_text()
    # nothing to fetch: no external src/href, the page's script and style inlined
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert 'src="app.js"' not in text
    assert "<style>" in text
    assert "Links that need attention" in text  # the page's template was adapted, not stale
    assert '<a href="#history">' in text
    assert "This file needs nothing else to open." in text
    data = json.loads(re.search(r"window\.MM_DATA = (\{.*?\});</script>", text).group(1))
    assert {n["name"] for n in data["nodes"]["nodes"]} == {"n1", "n2", "n3", "n4"}
    assert data["audit"]["power"]["uplinks"][0]["name"] == "n1"
    assert 'aria-label="contribution over time"' in text
    assert "<polyline" in text
    assert 'aria-label="cost share"' in text
    assert "120" in r.output or "report" in r.output


def test_report_without_archive_says_how_to_get_history(tmp_path: Path):
    mesh = _mesh()
    community = mesh.write_community(tmp_path / "c.yaml")
    snap = mesh.write_snapshot(tmp_path / "s.json")
    out = tmp_path / "r.html"
    r = invoke("report", "-o", str(out), "--community", str(community), "--snapshot", str(snap))
    assert r.exit_code == 0, r.output
    assert "--archive DIR" in out.read_text()


def test_report_bad_output_folder_is_a_clear_error(tmp_path: Path):
    mesh = _mesh()
    community = mesh.write_community(tmp_path / "c.yaml")
    snap = mesh.write_snapshot(tmp_path / "s.json")
    r = invoke(
        "report",
        "-o",
        str(tmp_path / "no" / "r.html"),
        "--community",
        str(community),
        "--snapshot",
        str(snap),
    )
    assert r.exit_code == 2
    assert "no such folder" in r.output
    assert not (tmp_path / "no").exists()


def _t(since: int, forwarded: int) -> TrafficBody:
    return TrafficBody("b", 10, since, forwarded_bytes=forwarded)


def test_history_survives_a_counter_reset():
    series = rep.history_series(
        [(1.0, {"a": _t(0, 100)}), (2.0, {"a": _t(0, 300)}), (3.0, {"a": _t(5, 50)})]
    )
    assert series["a"] == [(1.0, 0), (2.0, 200), (3.0, 250)]


def test_hostile_hostname_cannot_break_out_of_the_script():
    text = rep.render({"x": "</script><script>alert(1)</script>"}, "")
    assert "</script><script>alert(1)" not in text
