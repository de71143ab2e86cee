"""node_agent.flows: the nftables endpoint counters, parsed and folded into the record's list."""

from __future__ import annotations

import asyncio
import json

import pytest

from meshd.accounting import Ledger
from meshd.records import MAX_ENDPOINTS, OTHER_PEER, TrafficBody
from node_agent import flows

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


def test_script_without_clients_counts_nothing():
    script = flows.flows_nft_script({PEER_A: ["10.42.0.3/32"]}, ["mesh0"], [])
    assert "add rule" not in script


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
