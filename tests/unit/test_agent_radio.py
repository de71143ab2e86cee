"""Radio and batman-adv link data matched to neighbours, from recorded command output."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshd.records import LinksBody
from node_agent import build
from node_agent.neighbours import Neighbour
from node_agent.parsers import (
    BabelTable,
    parse_batctl_neighbours,
    parse_batctl_originators,
    parse_station_dump,
)
from node_agent.radio import (
    RadioReader,
    mac_from_link_local,
    match_batman,
    match_stations,
    parse_ip_neigh,
)

DATA = Path(__file__).parent.parent / "data"
GOOD, WEAK, THIRD = "02:11:c5:4a:10:3e", "02:11:c5:4a:22:f1", "02:11:c5:4a:37:90"
GOOD_LL = "fe80::11:c5ff:fe4a:103e"  # EUI-64 of GOOD
WEAK_LL = "fe80::8a1c:4f0e:9d2b:77a1"  # stable-privacy: only `ip neigh` knows WEAK's MAC
A, B, C = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"


def read(name: str) -> str:
    return (DATA / name).read_text()


def nb(node_id: str, iface: str, address: str, *advertised: str) -> Neighbour:
    return Neighbour(node_id, iface, address, 1883, advertised=advertised, up=True)


def test_mac_from_eui64_link_local():
    assert mac_from_link_local(GOOD_LL) == GOOD
    assert mac_from_link_local(f"{GOOD_LL}%mesh0") == GOOD
    assert mac_from_link_local("fe80::c:ff:fe00:1") == "02:0c:00:00:00:01"
    assert mac_from_link_local(WEAK_LL) is None
    assert mac_from_link_local("10.0.0.1") is None
    assert mac_from_link_local("not an address") is None


def test_ip_neigh_json_keeps_entries_with_a_mac():
    arp = parse_ip_neigh(read("ip_neigh_mesh0.json"))
    assert arp == {WEAK_LL: WEAK, "10.88.0.9": THIRD}
    assert parse_ip_neigh("") == {}
    assert parse_ip_neigh("{broken") == {}
    assert parse_ip_neigh('{"dst": "x"}') == {}


def test_stations_matched_by_eui64_and_by_neighbour_table():
    stations = parse_station_dump(read("iw_station_dump_mesh.txt"))
    arp = {"mesh0": parse_ip_neigh(read("ip_neigh_mesh0.json"))}
    ours = [
        nb(A, "mesh0", f"{GOOD_LL}%mesh0"),
        nb(B, "mesh0", f"{WEAK_LL}%mesh0"),
        nb(C, "mesh1", "fe80::11:c5ff:fe4a:2f1%mesh1"),  # another radio: no station there
    ]
    got = match_stations(stations, ours, arp)
    assert sorted(got) == [(A, "mesh0"), (B, "mesh0")]
    assert got[(A, "mesh0")].mac == GOOD
    assert got[(A, "mesh0")].rx_bytes == 48213907
    assert got[(B, "mesh0")].mac == WEAK
    # without the neighbour table, B's stable-privacy address says nothing
    assert sorted(match_stations(stations, ours, {})) == [(A, "mesh0")]


def test_batman_v_throughput_and_iv_tq_per_neighbour():
    ours = [nb(A, "bat0", f"{GOOD_LL}%bat0"), nb(B, "bat0", "10.88.0.9")]
    arp = {"bat0": {"10.88.0.9": THIRD}}
    v = match_batman(
        parse_batctl_neighbours(read("batctl_n_v.txt")),
        parse_batctl_originators(read("batctl_o_v.txt")),
        ours,
        arp,
    )
    assert v[A].throughput_mbit == 61.0
    assert v[A].hard_iface == "mesh0"
    assert v[A].tq is None
    assert B not in v  # THIRD is two hops away (via GOOD): not a direct neighbour
    iv = match_batman(
        parse_batctl_neighbours(read("batctl_n_iv.txt")),
        parse_batctl_originators(read("batctl_o_iv.txt")),
        ours,
        arp,
    )
    assert iv[A].tq == 251
    assert iv[A].throughput_mbit is None


class FakeRunner:
    """Answers commands from recorded output; counts the calls."""

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    async def __call__(self, *argv: str) -> tuple[int, str]:
        self.calls.append(argv)
        return self.answers.get(argv, (127, f"{argv[0]}: not found"))


@pytest.mark.asyncio
async def test_reader_runs_the_tools_and_survives_their_absence(caplog):
    runner = FakeRunner(
        {
            ("ip", "-j", "neigh", "show", "dev", "mesh0"): (0, read("ip_neigh_mesh0.json")),
            ("iw", "dev", "mesh0", "station", "dump"): (0, read("iw_station_dump_mesh.txt")),
        }
    )
    ours = [nb(A, "mesh0", f"{GOOD_LL}%mesh0"), nb(B, "mesh0", f"{WEAK_LL}%mesh0")]
    view = await RadioReader(runner, ["mesh0"], None).read(ours)
    assert sorted(view.stations) == [(A, "mesh0"), (B, "mesh0")]
    assert view.batman == {}

    reader = RadioReader(FakeRunner({}), ["mesh0"], "bat0")  # no iw, ip or batctl at all
    for _ in range(3):
        view = await reader.read(ours)
    assert view.stations == {}
    assert view.batman == {}
    assert sum("failed" in r.message for r in caplog.records) == 3  # once per tool


def test_links_record_carries_signal_rate_and_throughput():
    stations = parse_station_dump(read("iw_station_dump_mesh.txt"))
    ours = [nb(A, "mesh0", f"{GOOD_LL}%mesh0"), nb(B, "mesh0", f"{WEAK_LL}%mesh0")]
    from node_agent.radio import RadioView

    view = RadioView(match_stations(stations, ours, {}))
    body = build.links_body(ours, {}, BabelTable(), lambda _: "wifi", view)
    again = LinksBody.from_json(body.to_json())  # every field passes the record checks
    by = {e.neighbour: e for e in again.links}
    assert (by[A].signal_dbm, by[A].tx_bitrate_mbit, by[A].expected_throughput_mbit) == (
        -60,
        144.4,
        61.035,
    )
    assert by[B].signal_dbm is None
    assert by[B].medium == "wifi"


@pytest.mark.asyncio
async def test_agent_counts_station_bytes_from_before_discovery(tmp_path):
    """The running agent's path: `--wifi-iface`, recorded `iw` output that changes over time."""
    from node_agent.__main__ import _load_identity
    from node_agent.agent import Agent
    from node_agent.config import load
    from tests.agentkit import provision

    provision(tmp_path, ["m"])
    config = load(
        [
            "--key", str(tmp_path / "m" / "node.key"),
            "--cert", str(tmp_path / "m" / "cert.json"),
            "--community-file", str(tmp_path / "community.yaml"),
            "--state-dir", str(tmp_path / "m" / "state"),
            "--mesh-iface", "lo", "--wifi-iface", "lo", "--no-nft", "--no-mdns",
        ]
    )  # fmt: skip
    key, cert, community = _load_identity(config)
    agent = Agent(config, key, cert, community)  # type: ignore[arg-type]
    agent.radio = agent.radio_reader()
    dump = read("iw_station_dump_mesh.txt").replace("(on mesh0)", "(on lo)")

    def answers(extra_rx: int, third: bool) -> dict[tuple[str, ...], tuple[int, str]]:
        text = dump.replace("48213907", str(48213907 + extra_rx))
        if third:
            text += f"Station {THIRD} (on lo)\n\trx bytes:\t5000\n\ttx bytes:\t700\n"
        return {("iw", "dev", "lo", "station", "dump"): (0, text)}

    agent.run = agent.radio.run = FakeRunner(answers(0, False))
    await agent._read_counters()  # agent start: stations present, no neighbour known
    agent.radio.run = FakeRunner(answers(250_000, True))
    agent.neighbours.seen(A, "lo", f"{GOOD_LL}%lo", 1883, time.monotonic())
    agent.neighbours.seen(C, "lo", "fe80::11:c5ff:fe4a:3790%lo", 1883, time.monotonic())
    await agent._read_counters()
    assert agent.ledger.total(f"nb/{A}/lo/rx_bytes") == 250_000  # sent before discovery
    assert agent.ledger.total(f"nb/{C}/lo/rx_bytes") == 5000  # a station new since start
    assert agent.ledger.total(f"nb/{C}/lo/tx_bytes") == 700
    status = {n["node_id"]: n for n in agent.status()["neighbours"]}
    assert status[A]["signal_dbm"] == -60
    assert status[A]["expected_throughput_mbit"] == 61.035
