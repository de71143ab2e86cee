"""Per-MAC counters on shared media: the nftables ruleset, its JSON, and the agent's switch from
interface counters to per-MAC ones when a second neighbour shows up on an interface."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from node_agent.system import ETHER_HEADER, MacCounters, mac_nft_script, parse_mac_sets

DATA = Path(__file__).parent.parent / "data"
PEER = "02:00:00:bb:00:02"  # the fixture: 5 pings of 1000 bytes from mmva to this MAC


def test_ruleset_counts_both_directions_per_interface():
    script = mac_nft_script("meshd_acct", ["sg-s1", "eth0.7"])
    assert script.splitlines()[0] == "add table netdev meshd_acct"
    for i, iface in enumerate(["sg-s1", "eth0.7"]):
        assert f'hook ingress device "{iface}"' in script
        assert f'hook egress device "{iface}"' in script
        assert f"add rule netdev meshd_acct in{i} update @rx{i} {{ ether saddr }}" in script
        assert f"add rule netdev meshd_acct out{i} update @tx{i} {{ ether daddr }}" in script
    assert script.count("flags dynamic; counter;") == 4
    ingress_only = mac_nft_script("meshd_acct", ["sg-s1"], egress=False)
    assert "egress" not in ingress_only
    assert "@tx0" not in ingress_only


@pytest.mark.skipif(
    shutil.which("nft") is None or os.geteuid() != 0, reason="needs nft and root (check mode)"
)
def test_ruleset_is_accepted_by_nft():
    proc = subprocess.run(
        ["nft", "-c", "-f", "-"],
        input=mac_nft_script("meshd_check", ["lo"]),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_set_json_from_a_real_table():
    got = parse_mac_sets((DATA / "nft_mac_sets.json").read_text(), ["mmva"])
    peer = got["mmva"][PEER]
    assert peer["tx_packets"] == 5
    assert peer["tx_bytes"] == 5 * (1000 + 14)  # egress frames carry the Ethernet header
    assert peer["rx_packets"] == 7  # 5 echo replies + neighbour discovery
    assert peer["rx_bytes"] == 5104 + 7 * ETHER_HEADER  # ingress frames do not: added back
    assert got["mmva"]["ff:ff:ff:ff:ff:ff"]["tx_packets"] == 1


def test_set_json_garbage_and_foreign_sets_are_ignored():
    assert parse_mac_sets("not json", ["a"]) == {"a": {}}
    foreign = {"nftables": [{"set": {"name": "rx7", "elem": []}}, {"set": {"name": "blocked"}}]}
    assert parse_mac_sets(json.dumps(foreign), ["a"]) == {"a": {}}
    broken = {"nftables": [{"set": {"name": "rx0", "elem": [{"elem": {"val": "x"}}]}}]}
    assert parse_mac_sets(json.dumps(broken), ["a"]) == {"a": {}}


def _table(rows: dict[str, tuple[int, int]]) -> str:
    """nft -j output with rx counters per MAC (tx mirrors rx)."""
    elems = [
        {"elem": {"val": m, "counter": {"bytes": b, "packets": p}}} for m, (b, p) in rows.items()
    ]
    return json.dumps(
        {
            "nftables": [
                {"table": {"family": "netdev", "name": "t", "handle": 9}},
                {"set": {"name": "rx0", "elem": elems}},
                {"set": {"name": "tx0", "elem": elems}},
            ]
        }
    )


X_MAC, Y_MAC = "02:11:c5:4a:10:3e", "02:11:c5:4a:22:f1"
X_LL, Y_LL = "fe80::11:c5ff:fe4a:103e", "fe80::11:c5ff:fe4a:22f1"


@pytest.mark.asyncio
async def test_second_neighbour_switches_the_link_to_per_mac_counters_without_double_counting(
    tmp_path,
):
    from node_agent.__main__ import _load_identity
    from node_agent.agent import Agent
    from node_agent.config import load
    from tests.agentkit import provision

    _, keys = provision(tmp_path, ["m", "x", "y"])
    x, y = keys["x"].node_id, keys["y"].node_id
    config = load(
        [
            "--key", str(tmp_path / "m" / "node.key"),
            "--cert", str(tmp_path / "m" / "cert.json"),
            "--community-file", str(tmp_path / "community.yaml"),
            "--state-dir", str(tmp_path / "m" / "state"),
            "--mesh-iface", "lo", "--no-nft", "--no-mdns",
        ]
    )  # fmt: skip
    key, cert, community = _load_identity(config)
    agent = Agent(config, key, cert, community)  # type: ignore[arg-type]
    table = {"rows": {X_MAC: (0, 0)}}
    calls: list[tuple[str, ...]] = []

    async def fake_run(*argv: str, stdin: bytes | None = None) -> tuple[int, str]:
        calls.append(argv)
        if argv[:2] == ("nft", "-j"):
            return 0, _table(table["rows"])
        if argv[:2] == ("nft", "-f"):
            assert stdin is not None
            assert b'device "lo"' in stdin
            return 0, ""
        return 1, "no such tool here"  # ip neigh: EUI-64 link-locals suffice

    agent.run = fake_run
    agent.macs = MacCounters("t", ["lo"], fake_run)
    assert await agent.macs.setup()
    assert agent.macs.handle == 9

    def total(node: str, stat: str = "rx_bytes") -> int:
        return agent.ledger.total(f"nb/{node}/lo/{stat}")

    await agent._read_counters()  # start: nobody known
    agent.neighbours.seen(x, "lo", f"{X_LL}%lo", 1883, time.monotonic())
    table["rows"] = {X_MAC: (1_000, 10), Y_MAC: (500, 5)}  # Y's MAC shows up on the wire
    await agent._read_counters()  # one neighbour: lo's own counters are x's
    assert "lo" not in agent.shared_ifaces
    x_before = total(x)
    assert total(y) == 0

    agent.neighbours.seen(y, "lo", f"{Y_LL}%lo", 1883, time.monotonic())
    table["rows"] = {X_MAC: (4_000, 30), Y_MAC: (2_500, 25)}
    await agent._read_counters()  # two neighbours: per-MAC counters from here
    assert agent.shared_ifaces == {"lo"}
    assert total(x) - x_before == 3_000 + 20 * ETHER_HEADER  # since the last read, once
    assert total(y) == 2_000 + 20 * ETHER_HEADER  # since the last read: before, lo was x's
    assert total(y, "tx_bytes") == 2_000
    table["rows"] = {X_MAC: (4_100, 31), Y_MAC: (2_600, 26)}
    x_mid, y_mid = total(x), total(y)
    await agent._read_counters()
    assert (total(x) - x_mid, total(y) - y_mid) == (100 + ETHER_HEADER, 100 + ETHER_HEADER)
    await agent.macs.remove()
    assert calls[-1] == ("nft", "delete", "table", "netdev", "t")
