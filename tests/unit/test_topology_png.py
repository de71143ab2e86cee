"""`topology --format png|dot|prometheus-sd`: a picture a member can read, targets Prometheus
can use."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cli.analysis import export
from meshd.topology import MeshView
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh


def mesh() -> SyntheticMesh:
    m = SyntheticMesh.ring(4)
    m.add_node("a-very-long-hostname-indeed")
    m.link("n4", "a-very-long-hostname-indeed", medium="wifi", loss=0.2)
    m.add_node("harbour")
    m.link("n1", "harbour", medium="tap")
    m.nodes["n1"].gateway_kbit = 10_000
    m.flow("n3", "n1", 50_000_000, via_gateway=True)
    return m


def node_lines(dot: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r'xlabel="([^"]+)"[^\n]*', dot)}


def test_circles_are_sized_by_contribution_not_by_name():
    m = mesh()
    view = MeshView.build(m.store(), m.now)
    scores = {m.nodes["n2"].node_id: 0.9, m.nodes["a-very-long-hostname-indeed"].node_id: 0.0}
    dot = export.dot(view, scores, label="riverside")
    assert "fixedsize=true" in dot
    assert "fixedsize=false" not in dot
    lines = node_lines(dot)
    width = {k: float(re.search(r"width=([0-9.]+)", v).group(1)) for k, v in lines.items()}
    assert width["n2"] > width["a-very-long-hostname-indeed"]
    assert width["a-very-long-hostname-indeed"] == width["n3"]  # both contribute nothing


def test_title_with_time_legend_loss_media_and_offline_grey():
    m = mesh()
    m.nodes["n3"].publish_links = False
    view = MeshView.build(m.store(), m.now, statuses={m.nodes["n3"].node_id: "offline"})
    dot = export.dot(view, {}, label="riverside")
    assert "riverside · 20" in dot
    assert " UTC" in dot
    assert "bigger circle = contributes more" in dot
    assert 'label="20% loss"' in dot
    assert f'fillcolor="{export.OFFLINE_FILL}"' in node_lines(dot)["n3 (offline)"]
    edges = [ln for ln in dot.splitlines() if " -- " in ln]
    harbour = m.nodes["harbour"].node_id
    tap = next(e for e in edges if harbour in e)
    assert "style=dotted" in tap
    wifi = next(e for e in edges if "20% loss" in e)
    assert "penwidth=2.0" in wifi
    assert any("penwidth=4.0" in e for e in edges)  # cables drawn thick


@pytest.mark.skipif(shutil.which("neato") is None, reason="graphviz missing")
def test_png_renders(tmp_path: Path):
    m = mesh()
    c, s = m.write_community(tmp_path / "c.yaml"), m.write_snapshot(tmp_path / "s.json")
    out = tmp_path / "mesh.png"
    r = invoke(
        "topology", "--format", "png", "-o", str(out), "--community", str(c), "--snapshot", str(s)
    )
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prometheus_sd(tmp_path: Path):
    m = mesh()
    m.nodes["n2"].addresses = ("fd42::2",)
    c, s = m.write_community(tmp_path / "c.yaml"), m.write_snapshot(tmp_path / "s.json")
    r = invoke("topology", "--format", "prometheus-sd", "--community", str(c), "--snapshot", str(s))
    assert r.exit_code == 0, r.output
    targets = json.loads(r.output)
    by = {t["labels"]["hostname"]: t for t in targets}
    assert len(by) == 6
    assert by["n2"]["targets"] == ["[fd42::2]:9105"]
    assert by["n1"]["labels"]["gateway"] == "true"
    assert all(set(t) == {"targets", "labels"} for t in targets)
