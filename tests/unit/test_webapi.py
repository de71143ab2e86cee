"""The members' page API, the served exports (meshviewer.json per yanic's field list, NetJSON)
and the HTTP routes, on records signed by the real core."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import netdiff
import pytest

from meshd.community import parse_community
from meshd.records import Location
from node_agent import exports, webapi
from node_agent.site import Site
from tests.meshgen import LinkSpec, SyntheticMesh

SCHEMA = Path(__file__).parent.parent / "data" / "netjson-networkgraph.schema.json"


def street() -> SyntheticMesh:
    """A ring of five, a lossy radio spur to `library`, a tunnel to `harbour`, a gateway."""
    mesh = SyntheticMesh.ring(5)
    mesh.add_node("library")
    mesh.link(
        "n5",
        "library",
        ab=LinkSpec(loss=0.25, medium="wifi", signal_dbm=-84),
        ba=LinkSpec(loss=0.02, medium="wifi", signal_dbm=-70),
    )
    mesh.add_node("harbour")
    mesh.link("n1", "harbour", medium="tap")
    mesh.nodes["n1"].gateway_kbit = 100_000
    mesh.nodes["n2"].location = Location(52.52, 13.40)
    mesh.flow("library", "n1", 80_000_000, via_gateway=True)
    mesh.flow("n3", "n1", 2_000_000, via_gateway=True)
    return mesh


def site(mesh: SyntheticMesh, me: str = "n5") -> Site:
    store = mesh.store()
    community = parse_community(mesh.community_data())
    return Site(
        lambda: list(store),
        mesh.nodes[me].node_id,
        community,
        status=lambda: {"node_id": "x"},
        metrics=lambda: "# HELP a b\n",
        clients=lambda: {mesh.nodes["n1"].node_id: 3},
        routing_version=lambda: "babeld-1.12.1",
    )


def get(s: Site, path: str, now: float, method: str = "GET") -> Any:
    r = s.respond(method, path, now)
    assert r.code == 200, (path, r.body)
    return json.loads(r.body)


def test_node_api_words_colours_and_advice():
    mesh = street()
    data = get(site(mesh), "/api/node", mesh.now)
    assert data["hostname"] == "n5"
    first = data["links"][0]  # worst first
    assert first["to"] == "library"
    assert first["quality"] == "weak"  # 25 % loss and -84 dBm
    assert first["colour"] == webapi.QUALITY_COLOUR["weak"]
    assert first["out"]["loss"] == 0.25
    assert first["out"]["signal_dbm"] == -84
    text = " ".join(first["try"])
    assert "one way" in text
    assert "Low signal" in text
    good = [lk for lk in data["links"] if lk["to"] != "library"]
    assert good
    assert all(lk["quality"] == "good" and lk["try"] == [] for lk in good)


def test_nodes_contrib_map_audit():
    mesh = street()
    mesh.nodes["harbour"].publish_traffic = False
    s = site(mesh)
    nodes = get(s, "/api/nodes", mesh.now)
    assert {n["name"] for n in nodes["nodes"]} == {
        "n1",
        "n2",
        "n3",
        "n4",
        "n5",
        "library",
        "harbour",
    }
    assert nodes["counts"]["online"] == 7
    contrib = get(s, "/api/contrib", mesh.now)
    checks = {r["relayed_bytes"]["check"] for r in contrib["rows"]}
    assert checks <= {lg["check"] for lg in contrib["legend"]}
    assert all(lg["means"] for lg in contrib["legend"])
    n1 = next(r for r in contrib["rows"] if r["name"] == "n1")
    assert n1["gateway_bytes"]["mark"] == "✔"
    m = get(s, "/api/map", mesh.now)
    assert m["layout"] == "geo"
    assert [n for n in m["nodes"] if "lat" in n] == [
        {
            "id": mesh.nodes["n2"].node_id,
            "name": "n2",
            "state": "online",
            "gateway": False,
            "lat": 52.52,
            "lon": 13.4,
        }
    ]
    assert {lk["medium"] for lk in m["links"]} == {"veth", "wifi", "tap"}
    audit = get(s, "/api/audit", mesh.now)
    assert audit["power"]["uplinks"] == [{"name": "n1", "kbit": 100_000, "share": 1.0}]
    assert audit["power"]["paths"][0]["share"] > 0
    assert all(f["summary"] and f["fix"] for f in audit["findings"])


def test_contradicted_claim_gets_its_mark():
    mesh = street()
    mesh.claim("n4", forwarded_bytes=500_000_000)
    rows = get(site(mesh), "/api/contrib", mesh.now)["rows"]
    liar = next(r for r in rows if r["name"] == "n4")
    assert liar["relayed_bytes"]["check"] == "contradicted"
    assert liar["relayed_bytes"]["mark"] == "✘"


# -- meshviewer.json: yanic output/meshviewer-ffrgb struct.go, field by field -------------------

TIME = "%Y-%m-%dT%H:%M:%S%z"
NODE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "node_id": str,
    "hostname": str,
    "is_online": bool,
    "is_gateway": bool,
    "clients": int,
    "clients_wifi24": int,
    "clients_wifi5": int,
    "clients_other": int,
    "firstseen": str,
    "lastseen": str,
    "addresses": list,
}
OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "uptime": str,
    "model": str,
    "firmware": dict,
    "location": dict,
    "gateway": str,
    "gateway_nexthop": str,
    "owner": str,
}
LINK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "type": str,
    "source": str,
    "target": str,
    "source_tq": (int, float),
    "target_tq": (int, float),
    "source_addr": str,
    "target_addr": str,
}


def check_meshviewer(data: dict[str, Any]) -> None:
    dt.datetime.strptime(data["timestamp"], TIME)
    for node in data["nodes"]:
        for key, kind in NODE_FIELDS.items():
            assert isinstance(node[key], kind), (key, node[key])
        for key, value in node.items():
            assert key in NODE_FIELDS or key in OPTIONAL, key
            if key in OPTIONAL:
                assert isinstance(value, OPTIONAL[key]), (key, value)
        for key in ("firstseen", "lastseen", "uptime"):
            if key in node:
                dt.datetime.strptime(node[key], TIME)
        if "firmware" in node:
            assert set(node["firmware"]) == {"base", "release"}
        if "location" in node:
            assert set(node["location"]) == {"latitude", "longitude"}
    for link in data["links"]:
        for key, kind in LINK_FIELDS.items():
            assert isinstance(link[key], kind), (key, link[key])
        assert link["type"] in ("wifi", "vpn", "other")
        assert 0 <= link["source_tq"] <= 1


def test_meshviewer_matches_yanic_and_fixes_the_known_gaps():
    mesh = street()
    mesh.nodes["harbour"].publish_traffic = False
    data = get(site(mesh), "/meshviewer.json", mesh.now)
    check_meshviewer(data)
    by = {n["hostname"]: n for n in data["nodes"]}
    n1 = by["n1"]
    assert n1["firstseen"] != n1["lastseen"]  # from `since`, not = lastseen
    assert n1["clients"] == 3
    assert n1["firmware"] == {"base": "mutualmesh", "release": "0.1.0"}
    assert by["library"]["gateway"] == mesh.nodes["n1"].node_id
    assert not by["harbour"]["uptime"].startswith("1970")  # no "20833 d"
    types = {(lk["source"], lk["target"]): lk["type"] for lk in data["links"]}
    ids = {h: mesh.nodes[h].node_id for h in mesh.nodes}
    assert types[tuple(sorted((ids["n1"], ids["harbour"])))] == "vpn"
    assert types[tuple(sorted((ids["n5"], ids["library"])))] == "wifi"
    assert types[tuple(sorted((ids["n1"], ids["n2"])))] == "other"


def test_meshviewer_drops_links_of_offline_nodes():
    mesh = street()
    mesh.nodes["library"].publish_links = False
    view_now = mesh.now
    store = mesh.store()
    from meshd.topology import MeshView

    view = MeshView.build(store, view_now, statuses={mesh.nodes["library"].node_id: "offline"})
    data = exports.meshviewer(view)
    check_meshviewer(data)
    lib = mesh.nodes["library"].node_id
    assert all(lib not in (lk["source"], lk["target"]) for lk in data["links"])
    assert next(n for n in data["nodes"] if n["node_id"] == lib)["is_online"] is False


def test_netjson_served_valid_rounded_and_parsed_by_netdiff():
    mesh = street()
    data = get(site(mesh), "/netjson", mesh.now)
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert data["version"] == "babeld-1.12.1"
    assert data["revision"].startswith("mutualmesh ")
    for link in data["links"]:
        assert link["cost_text"].startswith(str(int(link["cost"])))
        for v in link["properties"].values():
            if isinstance(v, float):
                assert v == round(v, 4)
    graph = netdiff.NetJsonParser(data=data).graph
    assert graph.number_of_nodes() == 7
    assert graph.number_of_edges() == 7


def test_routes_query_strings_methods_and_static_page():
    mesh = street()
    s = site(mesh)
    assert s.respond("GET", "/metrics?target=x", mesh.now).code == 200
    assert s.respond("POST", "/metrics", mesh.now).code == 405
    assert s.respond("GET", "/nope", mesh.now).code == 404
    page = s.respond("GET", "/", mesh.now)
    assert page.ctype.startswith("text/html")
    assert b'src="app.js"' in page.body
    js = s.respond("GET", "/app.js", mesh.now).body
    assert b"http://" not in js.replace(b"http://www.w3.org/2000/svg", b"")  # nothing from outside
    assert b"https://" not in js
    assert "/api/node" in get(s, "/api/", mesh.now)["endpoints"]


def test_view_is_cached_between_requests():
    mesh = street()
    calls = []
    store = mesh.store()

    def records():
        calls.append(1)
        return list(store)

    s = Site(
        records,
        mesh.nodes["n5"].node_id,
        parse_community(mesh.community_data()),
        status=dict,
        metrics=str,
    )
    for path in ("/api/node", "/api/nodes", "/api/map"):
        get(s, path, mesh.now)
    assert len(calls) == 1
    get(s, "/api/node", mesh.now + 10)
    assert len(calls) == 2


@pytest.mark.parametrize("software", ["mutualmesh 0.1.0", "solo"])
def test_firmware_split(software):
    fw = exports.firmware(software)
    assert fw["release"]
    assert fw["base"] != fw["release"] or software == "solo"


# -- wiring into an agent -------------------------------------------------------------------


def test_count_clients_from_leases_and_stations():
    from node_agent.members import count_clients

    leases = (
        "1700000100 AA:BB:CC:00:00:01 192.168.1.10 phone *\n"
        "1600000000 aa:bb:cc:00:00:02 192.168.1.11 expired *\n"
        "0 aa:bb:cc:00:00:03 192.168.1.12 forever *\n"
        "garbage line\n"
    )
    assert count_clients(leases, 1_700_000_000) == 2
    assert count_clients(leases, 1_700_000_000, ["aa:bb:cc:00:00:01", "aa:bb:cc:00:00:09"]) == 3


def test_install_routes_on_an_agent_like_object(tmp_path):
    from types import SimpleNamespace

    from node_agent import members
    from node_agent.neighbours import Neighbour

    mesh = street()
    store = mesh.store()
    me = mesh.nodes["n5"].node_id
    lib = mesh.nodes["library"].node_id
    agent = SimpleNamespace(
        node_id=me,
        community=parse_community(mesh.community_data()),
        config=SimpleNamespace(mesh_ifaces=[], respondd_port=0),
        neighbours=SimpleNamespace(
            entries={lib: Neighbour(lib, "to-library", "fe80::9%to-library", 1883, "fp")}
        ),
        store=store,
        status=lambda: {"node_id": me, "hostname": "n5", "neighbours": []},
    )
    routes: dict = {}
    members.install_routes(agent, routes)
    assert {"/", "/app.js", "/api/node", "/meshviewer.json", "/netjson", "/metrics"} <= set(routes)
    body, ctype = routes["/metrics"]()
    assert ctype.startswith("text/plain")
    assert b"meshd_build_info" in body
    body, _ = routes["/api/node"]()
    assert json.loads(body)["hostname"] == "n5"
    ll = members.LinkLocal([])
    me_r = members.respondd_self(agent, ll, members.Clients(tmp_path / "none"))
    assert me_r.neighbour_address == {lib: "fe80::9%to-library"}
    assert me_r.node is not None
    assert me_r.node.hostname == "n5"
