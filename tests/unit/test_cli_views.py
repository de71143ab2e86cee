"""Every reading command on snapshots produced by the real core, as text and as --json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import netdiff
import pytest

from meshd.records import Location
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh

SCHEMA = Path(__file__).parent.parent / "data" / "netjson-networkgraph.schema.json"


@pytest.fixture
def street(tmp_path: Path) -> tuple[SyntheticMesh, list[str]]:
    """Six nodes: a ring of five plus a pendant, a gateway, traffic, a liar, an opt-in location."""
    mesh = SyntheticMesh.ring(5)
    mesh.add_node("n6")
    mesh.link("n5", "n6")
    mesh.nodes["n1"].gateway_kbit = 100_000
    mesh.nodes["n2"].location = Location(52.52, 13.40)
    mesh.flow("n6", "n1", 8_000_000, via_gateway=True)
    mesh.flow("n3", "n1", 2_000_000, via_gateway=True)
    mesh.claim("n4", forwarded_bytes=500_000_000)
    community = mesh.write_community(tmp_path / "community.yaml")
    snap = mesh.write_snapshot(tmp_path / "snap.json")
    return mesh, ["--community", str(community), "--snapshot", str(snap)]


def test_nodes_table_and_json(street):
    mesh, src = street
    r = invoke("nodes", *src)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].split() == [
        "name",
        "id",
        "age",
        "software",
        "gateway",
        "neighbours",
        "uptime",
        "state",
    ]
    n5 = next(line for line in lines if line.startswith("n5 "))
    assert mesh.nodes["n5"].node_id in n5
    assert " 3 " in n5
    assert "online" in n5
    assert "\x1b[" not in r.output  # plain text when piped
    data = json.loads(invoke("nodes", *src, "--json").output)
    by_name = {n["name"]: n for n in data["nodes"]}
    assert set(by_name) == {f"n{i}" for i in range(1, 7)}
    assert by_name["n1"]["gateway_kbit"] == 100_000
    assert sorted(by_name["n5"]["neighbours"]) == ["n1", "n4", "n6"]


def test_nodes_show(street):
    mesh, src = street
    r = invoke("nodes", "show", "n2", *src)
    assert r.exit_code == 0, r.output
    assert mesh.nodes["n2"].node_id in r.output
    assert "52.52" in r.output
    data = json.loads(invoke("nodes", *src, "show", mesh.nodes["n6"].node_id[:6], "--json").output)
    assert data["name"] == "n6"
    assert [x["neighbour"] for x in data["links"]] == ["n5"]
    bad = invoke("nodes", "show", "nosuch", *src)
    assert bad.exit_code == 2
    assert "no node named" in bad.output
    assert "Traceback" not in bad.output


def test_links_both_directions(street):
    _, src = street
    r = invoke("links", *src)
    assert r.exit_code == 0
    assert "n5 → n6" in r.output
    assert "n6 → n5" in r.output
    data = json.loads(invoke("links", *src, "--json").output)
    assert len(data["links"]) == 6
    assert all(len(x["directions"]) == 2 for x in data["links"])
    only = json.loads(invoke("links", *src, "--node", "n6", "--json").output)
    assert [(x["a"], x["b"]) for x in only["links"]] in ([("n5", "n6")], [("n6", "n5")])
    worst = json.loads(invoke("links", *src, "--worst", "2", "--json").output)
    assert len(worst["links"]) == 2


def test_contrib_marks_the_liar(street):
    mesh, src = street
    r = invoke("contrib", *src)
    assert r.exit_code == 0
    assert "✗ n4 relayed: claims 500,000,000 B" in r.output
    data = json.loads(invoke("contrib", *src, "--json").output)
    by = {n["name"]: n for n in data["nodes"]}
    assert by["n4"]["relayed_bytes"]["check"] == "contradicted"
    assert by["n4"]["share"]["relayed"] == 0.0
    fig = by["n5"]["relayed_bytes"]
    assert (fig["value"], fig["check"]) == (mesh.nodes["n5"].forwarded, "verified")
    assert fig["value"] <= fig["bounds"][0]["limit"] + fig["bounds"][0]["tolerance"]
    assert fig["disputes"] == []
    assert by["n1"]["gateway_bytes"]["value"] == 10_000_000
    assert by["n1"]["gateway_bytes"]["check"] == "verified"
    csv_out = invoke("contrib", *src, "--csv", "--by", "relay").output.splitlines()
    assert csv_out[0].startswith("name,id,relayed_bytes")
    assert csv_out[1].startswith("n4,")  # sorted by claimed relay; still marked contradicted
    assert ",contradicted," in csv_out[1]


def test_contrib_cost_share(street):
    _, src = street
    data = json.loads(invoke("contrib", *src, "--cost-share", "120", "--json").output)
    totals = [m["total"] for m in data["members"]]
    assert sum(totals) == pytest.approx(120, abs=0.05)
    assert {m["base"] for m in data["members"]} == {10.0}
    r = invoke("contrib", *src, "--cost-share", "120")
    assert "cost share of 120.00" in r.output


def test_contrib_window_from_archive(tmp_path, street):
    mesh, _ = street
    community = str(tmp_path / "community.yaml")
    archive = str(tmp_path / "archive")
    first = mesh.write_snapshot(tmp_path / "t0.json")
    assert (
        invoke(
            "contrib", "--community", community, "--snapshot", str(first), "--archive", archive
        ).exit_code
        == 0
    )
    mesh.advance(3600)
    mesh.flow("n3", "n1", 1_000_000, via_gateway=True)
    later = mesh.write_snapshot(tmp_path / "t1.json")
    args = ["--community", community, "--snapshot", str(later), "--archive", archive]
    data = json.loads(invoke("contrib", *args, "--since", "1h", "--json").output)
    by = {n["name"]: n for n in data["nodes"]}
    assert by["n1"]["gateway_bytes"]["value"] == 1_000_000  # only the last hour
    assert by["n2"]["relayed_bytes"]["value"] == 1_000_000
    assert data["baseline_at"] == mesh.now - 3600
    bad = invoke("contrib", *args, "--since", "yesterday")
    assert bad.exit_code == 2


def test_audit_exit_codes_and_json(street, tmp_path):
    mesh, src = street
    r = invoke("audit", *src)
    assert r.exit_code == 3
    assert "unverified-relayed" in r.output
    assert "500,000,000" in r.output
    data = json.loads(invoke("audit", *src, "--json").output)
    assert data["clean"] is False
    codes = {f["code"] for f in data["findings"]}
    assert {"unverified-relayed", "articulation-point", "bridge"} <= codes
    ap = [f for f in data["findings"] if f["code"] == "articulation-point"]
    assert [f["subject"] for f in ap] == ["n5"]
    # a clean mesh exits 0
    clean = SyntheticMesh.ring(4, admin=mesh.admin)
    clean.nodes["n1"].gateway_kbit = clean.nodes["n3"].gateway_kbit = 1000
    snap = clean.write_snapshot(tmp_path / "clean.json")
    ok = invoke("audit", "--community", src[1], "--snapshot", str(snap))
    assert ok.exit_code == 0, ok.output
    assert "clean" in ok.output


def test_diagnose_path(street):
    _, src = street
    data = json.loads(invoke("diagnose", "n6", "n3", *src, "--json").output)
    assert data["path"][0] == "n6"
    assert data["path"][-1] == "n3"
    assert len(data["hops"]) == len(data["path"]) - 1
    gw = json.loads(invoke("diagnose", "n6", *src, "--json").output)
    assert gw["path"] == ["n6", "n5", "n1"]
    r = invoke("diagnose", "n6", "n3", *src)
    assert r.exit_code == 0
    assert "path n6 →" in r.output


def test_diagnose_explains_one_way_loss(tmp_path):
    from tests.meshgen import LinkSpec

    mesh = SyntheticMesh.chain(3)
    mesh.link("n2", "n3", ab=LinkSpec(loss=0.4, signal_dbm=-88), ba=LinkSpec(loss=0.0))
    community = mesh.write_community(tmp_path / "c.yaml")
    snap = mesh.write_snapshot(tmp_path / "s.json")
    data = json.loads(
        invoke(
            "diagnose", "n1", "n3", "--community", str(community), "--snapshot", str(snap), "--json"
        ).output
    )
    assert data["weakest"] == ["n2", "n3"]
    text = " ".join(data["causes"])
    assert "loss only one way" in text
    assert "low signal" in text


def test_topology_netjson_is_valid_and_loads_in_netdiff(street):
    mesh, src = street
    r = invoke("topology", "--format", "netjson", *src)
    assert r.exit_code == 0
    data = json.loads(r.output)
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    graph = netdiff.NetJsonParser(data=data).graph
    assert graph.number_of_nodes() == 6
    assert graph.number_of_edges() == 6
    n5, n6 = mesh.nodes["n5"].node_id, mesh.nodes["n6"].node_id
    assert graph[n5][n6]["weight"] == 256.0
    # the schema is not a rubber stamp
    broken = dict(data, links=[{"source": n5, "target": n6}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(SCHEMA.read_text()))


def test_topology_meshviewer_location_only_when_opted_in(street):
    _, src = street
    data = json.loads(invoke("topology", "--format", "meshviewer", *src).output)
    assert {"timestamp", "nodes", "links"} <= set(data)
    by = {n["hostname"]: n for n in data["nodes"]}
    assert by["n2"]["location"] == {"latitude": 52.52, "longitude": 13.40}
    assert all("location" not in n for name, n in by.items() if name != "n2")
    assert by["n1"]["is_gateway"] is True
    assert by["n1"]["is_online"] is True
    link = data["links"][0]
    assert {"source", "target", "source_tq", "target_tq", "type"} <= set(link)


def test_topology_dot_and_png(street, tmp_path):
    _, src = street
    dot = invoke("topology", "--format", "dot", *src).output
    assert dot.startswith('graph "testmesh"')
    assert dot.count(" -- ") == 6
    out = tmp_path / "mesh.png"
    r = invoke("topology", "--format", "png", "-o", str(out), *src)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_save_round_trip(street, tmp_path):
    _, src = street
    out = tmp_path / "copy.json"
    r = invoke("snapshot", "save", str(out), *src, "--json")
    assert r.exit_code == 0
    assert json.loads(r.output)["records"] == 18
    again = json.loads(
        invoke("nodes", "--community", src[1], "--snapshot", str(out), "--json").output
    )
    assert len(again["nodes"]) == 6


def test_tampered_snapshot_records_are_refused(street, tmp_path):
    _mesh, src = street
    doc = json.loads(Path(src[3]).read_text())
    doc["records"] = [
        r.replace('"forwarded_bytes":', '"forwarded_bytes":9') if '"traffic"' in r else r
        for r in doc["records"]
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    data = json.loads(
        invoke(
            "snapshot",
            "save",
            str(tmp_path / "x.json"),
            "--community",
            src[1],
            "--snapshot",
            str(bad),
            "--json",
        ).output
    )
    assert data["records"] == 12  # every traffic record failed its signature
    assert data["rejected"] == {"bad_signature": 6}


def test_bad_inputs_are_clear(tmp_path, street):
    _, src = street
    missing = invoke("nodes", "--snapshot", src[3], env={"MUTUALMESH_COMMUNITY": ""})
    assert missing.exit_code == 2
    assert "--community" in missing.output
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    r = invoke("nodes", "--community", src[1], "--snapshot", str(junk))
    assert r.exit_code == 2
    assert "not a mutualmesh snapshot" in r.output
    other = SyntheticMesh(name="elsewhere")
    c2 = other.write_community(tmp_path / "other.yaml")
    r = invoke("nodes", "--community", str(c2), "--snapshot", src[3])
    assert r.exit_code == 2
    assert "community 'testmesh'" in r.output
    r = invoke("nodes", "--community", src[1], "--broker", "127.0.0.1:1")
    assert r.exit_code == 4
    assert "cannot read the broker" in r.output


def test_environment_community_and_no_color(street, monkeypatch):
    _, src = street
    r = invoke("links", "--snapshot", src[3], env={"MUTUALMESH_COMMUNITY": src[1], "NO_COLOR": "1"})
    assert r.exit_code == 0
    assert "\x1b[" not in r.output


def test_terminal_gets_a_rich_table_and_colour_obeys_no_color(street, monkeypatch):
    import cli.output

    _, src = street
    monkeypatch.setattr(cli.output, "is_terminal", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    r = invoke("links", *src)
    assert "┃" in r.output or "│" in r.output  # a drawn table, not plain columns
    assert "\x1b[3" not in r.output  # no colour codes
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(cli.output, "colour_allowed", lambda: True)
    r = invoke("links", *src)
    assert "good" in r.output
