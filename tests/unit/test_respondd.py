"""respondd answers checked by a decoder written from the respondd format (yanic's structs),
and a real exchange over a UDP socket."""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from typing import Any

import pytest

from meshd.records import LinkEntry, LinksBody, Location, NeighbourCounters, NodeBody, TrafficBody
from node_agent import respondd

NODE = NodeBody(
    "bakery",
    "GL.iNet GL-MT6000",
    "mutualmesh 0.1.0",
    ("10.42.0.2", "fd42::2"),
    gateway_kbit=50_000,
    location=Location(52.5, 13.4),
)
LINKS = LinksBody(
    (
        LinkEntry("nb1", "wlan0", "wifi", True, rxcost=256, txcost=288, loss=0.05),
        LinkEntry("nb2", "tap0", "tap", True, rxcost=96, txcost=96),
        LinkEntry("nb3", "eth1", "ethernet", False, rxcost=96, txcost=96),
    )
)
TRAFFIC = TrafficBody(
    "boot",
    3600,
    1_700_000_000,
    (NeighbourCounters("nb1", "wlan0", 12_345_678_901, 7, 9, 3),),
    forwarded_bytes=5_000,
    forwarded_packets=4,
)
ME = respondd.Self(
    "abcdef",
    NODE,
    LINKS,
    TRAFFIC,
    community="riverside",
    clients=4,
    babeld_version="babeld-1.12.1",
    firmware_base="OpenWrt 23.05.3",
    own_link_local={"wlan0": "fe80::1%wlan0", "tap0": "fe80::2", "eth1": "fe80::3"},
    neighbour_address={"nb1": "fe80::a1%wlan0", "nb2": "fe80::a2", "nb3": "fe80::a3"},
)


# -- a decoder written from the format: yanic's data.ResponseData field names and Go types ----


def _is(value: Any, kind: str, where: str) -> None:
    ok = {
        "string": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "object": isinstance(value, dict),
        "list": isinstance(value, list),
    }[kind]
    assert ok, f"{where}: expected {kind}, got {value!r}"


def decode(datagram: bytes) -> dict[str, Any]:
    """Inflate like yanic (`flate.NewReader`: raw deflate) and type-check every field it reads."""
    data = json.loads(zlib.decompress(datagram, -15))
    _is(data, "object", "answer")
    ni = data["nodeinfo"]
    _is(ni["node_id"], "string", "nodeinfo.node_id")
    _is(ni["hostname"], "string", "nodeinfo.hostname")
    for a in ni["network"]["addresses"]:
        _is(a, "string", "nodeinfo.network.addresses[]")
    for name, mesh in ni["network"]["mesh"].items():
        for kind, addrs in mesh["interfaces"].items():
            assert kind in ("wireless", "tunnel", "other"), kind
            for a in addrs:
                _is(a, "string", f"nodeinfo.network.mesh.{name}.interfaces.{kind}[]")
    _is(ni["software"]["firmware"]["base"], "string", "firmware.base")
    _is(ni["software"]["firmware"]["release"], "string", "firmware.release")
    _is(ni["hardware"]["model"], "string", "hardware.model")
    if "location" in ni:
        _is(ni["location"]["latitude"], "number", "location.latitude")
        _is(ni["location"]["longitude"], "number", "location.longitude")
    st = data["statistics"]
    _is(st["node_id"], "string", "statistics.node_id")
    _is(st["uptime"], "number", "statistics.uptime")
    for d in ("rx", "tx", "forward"):
        _is(st["traffic"][d]["bytes"], "number", f"traffic.{d}.bytes")
        _is(st["traffic"][d]["packets"], "number", f"traffic.{d}.packets")
    if "clients" in st:  # a struct in yanic: absent reads as zero
        _is(st["clients"]["total"], "int", "clients.total")
    nb = data["neighbours"]
    _is(nb["node_id"], "string", "neighbours.node_id")
    for iface, b in nb["babel"].items():
        _is(b["protocol"], "string", f"babel.{iface}.protocol")
        _is(b["ll-addr"], "string", f"babel.{iface}.ll-addr")
        for addr, link in b["neighbours"].items():
            assert "%" not in addr
            for k in ("rxcost", "txcost", "cost", "reachability"):
                _is(link[k], "int", f"babel.{iface}.neighbours.{addr}.{k}")
                assert 0 <= link[k] <= 65535
    return data


def test_full_answer_decodes_and_maps_links_like_yanic():
    data = decode(respondd.answer(ME, b"GET nodeinfo statistics neighbours") or b"")
    ni, st, nb = data["nodeinfo"], data["statistics"], data["neighbours"]
    assert ni["hostname"] == "bakery"
    assert ni["software"]["firmware"] == {"base": "OpenWrt 23.05.3", "release": "0.1.0"}
    # yanic's ifaceToLinkType: a tap link is a tunnel (vpn), not a cable or a radio
    ifs = ni["network"]["mesh"]["babel"]["interfaces"]
    assert ifs == {"wireless": ["fe80::1"], "tunnel": ["fe80::2"], "other": ["fe80::3"]}
    assert ni["vpn"] is True
    assert st["traffic"]["rx"]["bytes"] == 12_345_678_901
    assert st["clients"]["total"] == 4
    assert st["gateway"] == "abcdef"
    # the down eth1 link is not announced; babel costs come through as babeld reports them
    assert set(nb["babel"]) == {"wlan0", "tap0"}
    assert nb["babel"]["wlan0"]["ll-addr"] == "fe80::1"
    link = nb["babel"]["wlan0"]["neighbours"]["fe80::a1"]
    assert link == {"rxcost": 256, "txcost": 288, "cost": 288, "reachability": 62258}


def test_subset_and_legacy_requests():
    data = json.loads(zlib.decompress(respondd.answer(ME, b"GET statistics\n") or b"", -15))
    assert set(data) == {"statistics"}
    plain = json.loads(respondd.answer(ME, b"nodeinfo") or b"")
    assert plain["node_id"] == "abcdef"


@pytest.mark.parametrize(
    "junk", [b"", b"GET", b"GET passwd", b"\xff\xfe", b"GET nodeinfo " + b"x" * 300, b"hello"]
)
def test_junk_gets_silence(junk):
    assert respondd.answer(ME, junk) is None


def test_no_traffic_record_still_answers():
    me = respondd.Self("x1", None, None, None)
    data = json.loads(zlib.decompress(respondd.answer(me, b"GET nodeinfo statistics") or b"", -15))
    assert data["nodeinfo"]["hostname"] == "x1"
    assert "uptime" not in data["statistics"]  # unknown, not 0 (yanic would show "just booted")


def test_answer_fits_yanics_datagram_with_64_neighbours():
    entries = tuple(
        LinkEntry(f"n{i:02d}", "wlan0", "wifi", rxcost=256, txcost=256) for i in range(64)
    )
    addrs = {f"n{i:02d}": f"fe80::{i:x}:{i * 7919:x}:{i * 104729:x}" for i in range(64)}
    me = respondd.Self(
        "big",
        NODE,
        LinksBody(entries),
        TRAFFIC,
        neighbour_address=addrs,
        own_link_local={"wlan0": "fe80::1"},
    )
    out = respondd.answer(me, b"GET nodeinfo statistics neighbours") or b""
    assert 0 < len(out) <= respondd.MAX_ANSWER
    assert len(decode(out)["neighbours"]["babel"]["wlan0"]["neighbours"]) == 64


@pytest.mark.asyncio
async def test_real_exchange_over_udp_and_junk_is_counted():
    loop = asyncio.get_running_loop()
    lo = socket.if_nametoindex("lo")
    sock = respondd.open_socket(0, {"lo": lo}, ())
    port = sock.getsockname()[1]
    transport, proto = await loop.create_datagram_endpoint(
        lambda: respondd.RespondEndpoint(lambda: ME), sock=sock
    )
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client.settimeout(5)
    try:
        client.sendto(b"\x00junk", ("::1", port))
        client.sendto(b"GET nodeinfo statistics neighbours", ("::1", port))
        reply = await loop.run_in_executor(None, client.recv, 8192)
        assert decode(reply)["nodeinfo"]["hostname"] == "bakery"
        assert proto.counts["malformed"] == 1
        assert proto.counts["answered"] == 1
    finally:
        client.close()
        transport.close()


def test_rate_limit_drops_floods():
    t = [0.0]
    proto = respondd.RespondEndpoint(lambda: ME, rate_per_s=2, clock=lambda: t[0])
    sent: list[bytes] = []

    class Fake:
        def sendto(self, data: bytes, addr: Any) -> None:
            sent.append(data)

    proto.transport = Fake()  # type: ignore[assignment]
    for _ in range(5):
        proto.datagram_received(b"GET nodeinfo", ("::1", 1))
    assert len(sent) == 2
    assert proto.counts["rate_limited"] == 3
    t[0] = 1.0
    proto.datagram_received(b"GET nodeinfo", ("::1", 1))
    assert len(sent) == 3
