"""node_agent.flows: the nftables endpoint counters, parsed and folded into the record's list."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from meshd.accounting import Ledger
from meshd.defaults import BABEL_PORT, BROKER_PORT, MDNS_PORT, PROBE_PORT
from meshd.records import MAX_ENDPOINTS, OTHER_PEER, Kind, TrafficBody
from node_agent import flows, system
from provisioning.keys import load_certificate

PEER_A = "aaaabbbbccccdddd"
PEER_B = "eeeeffffgggghhhh"


def nft_counters(values: dict[str, int]) -> str:
    """What `nft -j list counters table inet T` printed in a namespace test of this table."""
    items: list[dict[str, object]] = [{"metainfo": {"version": "1.0.6"}}]
    for i, (name, nbytes) in enumerate(values.items()):
        counter = {"family": "inet", "name": name, "table": "t", "handle": i + 1}
        items.append({"counter": {**counter, "packets": nbytes // 84, "bytes": nbytes}})
    return json.dumps({"nftables": items})


def test_script_maps_each_peer_prefix_to_its_counters_and_the_rest_to_other():
    script = flows.flows_nft_script(
        {PEER_A: ["10.42.0.3/32", "fd42::3/128"], PEER_B: ["10.42.16.0/24"]},
        ["mesh0"],
        ["br-lan"],
    )
    assert f"add counter inet {flows.TABLE} o_{PEER_A}" in script
    assert f'10.42.16.0/24 : "t_{PEER_B}"' in script
    assert f'fd42::3/128 : "o_{PEER_A}"' in script
    assert 'ip daddr != @known4 counter name "o_other"' in script
    assert 'iifname { "br-lan" } oifname { "mesh0" }' in script
    # re-applying keeps the counters: only maps, sets and the chain are flushed
    assert "flush counter" not in script
    assert "flush chain" in script


def test_script_without_clients_counts_the_routers_own_traffic_only():
    script = flows.flows_nft_script({PEER_A: ["10.42.0.3/32"]}, ["mesh0"], [])
    rules = [line for line in script.splitlines() if line.startswith("add rule")]
    assert not [r for r in rules if " flows " in r]  # no clients: nothing forwarded for them
    counting = [r for r in rules if "counter" in r]
    assert counting
    assert all(" own_out " in r or " own_in " in r for r in counting)
    # the control plane is let through before anything is counted, in both chains
    for chain in ("own_out", "own_in"):
        mine = [r for r in rules if f" {chain} " in r]
        skips = [i for i, r in enumerate(mine) if r.endswith("return")]
        assert skips == [0, 1, 2, 3], mine
        assert len(mine) > 4
    assert f"udp dport {{ {PROBE_PORT}, {MDNS_PORT}, {BABEL_PORT} }} return" in script
    assert f"tcp sport {BROKER_PORT} return" in script
    assert "counter name" not in flows.flows_nft_script({PEER_A: ["10.42.0.3/32"]}, [], [])


def test_consumption_counts_the_routers_own_mesh_traffic_but_not_the_control_plane():
    script = system.nft_script("acct", ["mesh0"], None, [])
    out = script.index('own_out oifname { "mesh0" } counter name "client"')
    into = script.index('own_in iifname { "mesh0" } counter name "client"')
    for chain, at in (("own_out", out), ("own_in", into)):
        skip = script.index(f"add rule inet acct {chain} tcp dport {BROKER_PORT} return")
        assert skip < at


def test_parse_reads_sent_and_received_per_peer_and_drops_garbage():
    text = nft_counters({f"o_{PEER_A}": 252, f"t_{PEER_A}": 168, "o_other": 84, "forwarded": 9})
    assert flows.parse_flow_counters(text) == {PEER_A: (252, 168), OTHER_PEER: (84, 0)}
    assert flows.parse_flow_counters("not json") == {}
    assert flows.parse_flow_counters('{"nftables": [{"counter": {"name": "o_x"}}]}') == {}


def test_fold_survives_a_table_recreated_and_keeps_totals():
    ledger = Ledger()
    flows.fold(ledger, {PEER_A: (100, 10)}, "boot-1")  # first read: only a baseline
    assert flows.fold(ledger, {PEER_A: (600, 30)}, "boot-1") == {PEER_A: (500, 20)}
    # the table was recreated (new epoch): counting restarts from zero, totals keep growing
    assert flows.fold(ledger, {PEER_A: (50, 5)}, "boot-2") == {PEER_A: (550, 25)}


def test_record_keeps_the_top_destinations_and_folds_the_rest_into_other():
    totals = {f"{i:016d}".replace("0", "a"): (i * 10, i) for i in range(1, MAX_ENDPOINTS + 6)}
    totals[OTHER_PEER] = (7, 7)
    out = flows.endpoint_flows(totals)
    assert len(out) == MAX_ENDPOINTS + 1
    assert out[-1].peer == OTHER_PEER
    dropped = sorted(totals.items(), key=lambda kv: kv[1][0])[1:6]  # the five smallest named
    assert out[-1].sent_bytes == 7 + sum(v[0] for _, v in dropped)
    assert sum(e.sent_bytes for e in out) == sum(v[0] for v in totals.values())


def test_endpoints_round_trip_in_the_traffic_record_and_are_validated():
    ends = flows.endpoint_flows({PEER_A: (5, 6), OTHER_PEER: (1, 2)})
    body = TrafficBody("boot", 10, 1, endpoints=ends)
    assert TrafficBody.from_json(body.to_json()) == body
    assert "endpoints" not in TrafficBody("boot", 10, 1).to_json()  # old records unchanged
    bad = body.to_json()
    bad["endpoints"][0]["peer"] = "not a node id"
    with pytest.raises(ValueError, match=r"endpoints\[0\]\.peer"):
        TrafficBody.from_json(bad)


def test_read_and_apply_use_the_runner():
    calls: list[tuple[str, ...]] = []

    async def runner(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        calls.append(argv)
        if "counters" in argv:
            return 0, nft_counters({f"t_{PEER_B}": 42})
        if "list" in argv:
            return 0, json.dumps({"nftables": [{"table": {"name": flows.TABLE, "handle": 7}}]})
        return 0, ""

    async def main() -> tuple[int | None, flows.Flows]:
        return await flows.apply(runner, "add table inet x\n"), await flows.read(runner)

    handle, got = asyncio.run(main())
    assert handle == 7
    assert got == {PEER_B: (0, 42)}
    assert calls[0][:2] == ("nft", "-f")


def test_a_refused_table_reads_as_no_data():
    async def refuse(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        return 1, "Error: syntax error"

    async def main() -> tuple[int | None, flows.Flows]:
        return await flows.apply(refuse, "bad\n"), await flows.read(refuse)

    assert asyncio.run(main()) == (None, {})


class FakeNft:
    """nft as the agent's runner sees it: scripts accepted, counters as the test sets them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.scripts: list[str] = []
        self.counters: dict[str, int] = {}

    async def __call__(self, *argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        self.calls.append(argv)
        if argv[:2] == ("nft", "-f"):
            self.scripts.append((stdin or b"").decode())
            return 0, ""
        if "counters" in argv:
            return 0, nft_counters(self.counters)
        if "list" in argv:
            return 0, json.dumps({"nftables": [{"table": {"name": argv[-1], "handle": 3}}]})
        return 0, ""


def agent_with_peer(tmp_path: Path, *extra: str) -> tuple[Any, str, FakeNft]:
    """An agent (not started) whose store holds peer a's node record, on a fake nft."""
    from meshd.codec import sign_record
    from meshd.records import NodeBody
    from node_agent.__main__ import _load_identity
    from node_agent.agent import Agent
    from node_agent.config import load
    from tests.agentkit import provision

    _, keys = provision(tmp_path, ["m", "a"])
    config = load(
        [
            "--key", str(tmp_path / "m" / "node.key"),
            "--cert", str(tmp_path / "m" / "cert.json"),
            "--community-file", str(tmp_path / "community.yaml"),
            "--state-dir", str(tmp_path / "m" / "state"),
            "--mesh-iface", "eth1", "--no-mdns", *extra,
        ]
    )  # fmt: skip
    key, cert, community = _load_identity(config)
    agent = Agent(config, key, cert, community)  # type: ignore[arg-type]
    agent._load_state()
    agent._reserve()
    nft = agent.run = FakeNft()
    a = keys["a"]
    a_cert = load_certificate(tmp_path / "a" / "cert.json")
    node = NodeBody("a", "x", "meshd", ("10.88.0.2", "fd88::2"))
    env = sign_record(a, a_cert, node, seq=1, issued_at=int(time.time()), ttl_s=600)
    agent.store.offer(env.raw, time.time())
    return agent, a.node_id, nft


@pytest.mark.asyncio
async def test_agent_counts_flows_per_peer_and_publishes_them_as_endpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(system, "iface_stats", lambda iface: None)
    agent, a, nft = agent_with_peer(tmp_path)
    await agent._read_counters()  # start: the table for today's peers, a first baseline
    assert len(nft.scripts) == 1
    assert f'10.88.0.2/32 : "o_{a}"' in nft.scripts[0]
    assert f'fd88::2/128 : "t_{a}"' in nft.scripts[0]
    nft.counters = {f"o_{a}": 1_000, f"t_{a}": 100, "o_other": 10}
    await agent._read_counters()
    nft.counters = {f"o_{a}": 51_000, f"t_{a}": 2_100, "o_other": 10}
    await agent._read_counters()
    assert len(nft.scripts) == 1  # the peers' addresses did not change: no rebuild
    envs = [e for e in agent.own_records() if e.kind is Kind.TRAFFIC]
    assert len(envs) == 1
    assert isinstance(envs[0].body, TrafficBody)
    got = {e.peer: (e.sent_bytes, e.received_bytes) for e in envs[0].body.endpoints}
    assert got == {a: (50_000, 2_000)}
    await agent.counting.teardown()
    assert ("nft", "delete", "table", "inet", "meshd_acct_flows") in nft.calls


@pytest.mark.asyncio
async def test_a_peer_renumbering_rebuilds_the_table(tmp_path, monkeypatch):
    from meshd.codec import sign_record
    from meshd.records import NodeBody
    from provisioning.keys import load_private_key

    monkeypatch.setattr(system, "iface_stats", lambda iface: None)
    agent, a, nft = agent_with_peer(tmp_path)
    await agent._read_counters()
    key = load_private_key(tmp_path / "a" / "node.key")
    cert = load_certificate(tmp_path / "a" / "cert.json")
    node = NodeBody("a", "x", "meshd", ("10.88.0.9",))
    env = sign_record(key, cert, node, seq=2, issued_at=int(time.time()), ttl_s=600)
    agent.store.offer(env.raw, time.time())
    await agent._read_counters()
    assert len(nft.scripts) == 2
    assert f'10.88.0.9/32 : "o_{a}"' in nft.scripts[1]
    assert "10.88.0.2" not in nft.scripts[1]


@pytest.mark.asyncio
async def test_no_nft_switch_leaves_the_flow_table_out(tmp_path, monkeypatch):
    monkeypatch.setattr(system, "iface_stats", lambda iface: None)
    agent, _, nft = agent_with_peer(tmp_path, "--no-nft")
    await agent._read_counters()
    await agent.counting.teardown()
    assert nft.calls == []


@pytest.mark.asyncio
async def test_consumption_is_counted_like_the_links_count_it(tmp_path, monkeypatch):
    """The client counter (L3, as nftables sees packets) gets each packet's Ethernet header, so
    an honest claim meets what the neighbours' link counters delivered."""
    monkeypatch.setattr(system, "iface_stats", lambda iface: None)
    agent, _, _ = agent_with_peer(tmp_path)
    now = {"client": (0, 0), "forwarded": (0, 0)}

    async def nft_run(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        items = [
            {"counter": {"name": name, "bytes": b, "packets": p}} for name, (b, p) in now.items()
        ]
        return 0, json.dumps({"nftables": items})

    monkeypatch.setattr(system, "run", nft_run)
    agent.counting.nft = system.Nft("meshd_acct", ["eth1"], None, [])
    await agent._read_counters()  # baseline
    now.update(client=(150_000, 100), forwarded=(150_000, 100))
    await agent._read_counters()
    assert agent.ledger.total("nft/client/bytes") == 150_000 + 100 * system.ETHER_HEADER
    assert agent.ledger.total("nft/forwarded/bytes") == 150_000  # relay: as the flows count it


@pytest.mark.asyncio
async def test_transit_counters_are_read_before_the_links_and_the_client_counter_after(
    tmp_path, monkeypatch
):
    """Within one record, forwarded bytes never run ahead of the links that carried them and
    client bytes never lag behind them: under a burst, one nft call is megabytes."""
    events: list[str] = []
    clock = {"t": 0}

    def stats(iface: str) -> dict[str, int]:
        events.append(f"link {iface}")
        clock["t"] += 1
        return dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"), clock["t"])

    async def nft_run(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        if "counters" in argv:
            events.append(f"nft at {clock['t']}")
        b = 1000 * clock["t"]
        names = ("client", "forwarded")
        items = [{"counter": {"name": n, "bytes": b, "packets": 0}} for n in names]
        return 0, json.dumps({"nftables": items})

    monkeypatch.setattr(system, "iface_stats", stats)
    agent, _, _ = agent_with_peer(tmp_path)
    monkeypatch.setattr(system, "run", nft_run)
    agent.counting.nft = system.Nft("meshd_acct", ["eth1"], None, [])
    await agent._read_counters()  # baseline
    events.clear()
    await agent._read_counters()
    reads = [e for e in events if e.startswith(("nft", "link"))]
    assert reads == ["nft at 1", "link eth1", "nft at 2"]
    assert agent.ledger.total("nft/forwarded/bytes") == 1000  # read at t=1, before the link
    assert agent.ledger.total("nft/client/bytes") == 1000  # read at t=2, after it
