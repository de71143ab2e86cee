"""`contrib` and `audit` on a real chain: relayed bytes measured by the agents and checked by
the neighbours, under a parallel CPU load (publish skew), then two validly signed lies.

Real babeld, mosquitto and meshd agents in namespaces; real iperf3 traffic. A liar's forged
traffic record (signed with its own key) goes onto its own broker; its neighbours' agents
replicate it like any record. The CLI reads n2's broker throughout.

No lab test of an under-reporting consumer: lab traffic comes from the routers themselves,
which the agent's client counter does not count, so an honest iperf end already shows a
consumption below its links' (flagged, disputed). tests/unit/test_contrib.py covers it on
crafted records until the agent counts router traffic.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from cli.lab import agent as lab_agent
from cli.lab import broker
from cli.lab.lab import Lab
from cli.lab.topology import chain, neighbourhood
from meshd.codec import Envelope, decode, sign_record
from meshd.records import Kind, NeighbourCounters, TrafficBody
from meshd.topics import record_topic
from provisioning.keys import load_certificate, load_private_key
from tests.lab.cliview import agent_lab, cli, cli_json, wait_for

pytestmark = pytest.mark.lab

RELAYS = ("n2", "n3", "n4")
READER = "n2"
FIGURES = ("relayed_bytes", "gateway_bytes", "consumed_bytes")
PUBLISH = r"""
import sys, paho.mqtt.client as mqtt
port = int(sys.argv[1])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.connect("127.0.0.1", port)
c.loop_start()
for topic, path in zip(sys.argv[2::2], sys.argv[3::2]):
    c.publish(topic, open(path, "rb").read(), qos=1, retain=True).wait_for_publish(5)
c.loop_stop()
c.disconnect()
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with agent_lab("ct", chain(5)) as the_lab:
        yield the_lab


def contrib(lab: Lab) -> dict[str, dict[str, Any]] | None:
    code, data = cli_json(lab, READER, "contrib")
    if code != 0:
        return None
    return {n["name"]: n for n in data["nodes"]}


def no_verdict_on_honest(by: dict[str, dict[str, Any]], honest: tuple[str, ...]) -> None:
    """Honest figures are never contradicted, and relayed and uplink never disputed. (Lab
    traffic is the routers' own, which the agent's client counter does not count, so an
    iperf end's consumption is rightly flagged as below what its links carried.)"""
    for name in honest:
        for fig in FIGURES:
            state = by[name][fig]["check"]
            assert state != "contradicted", (name, fig, by[name][fig])
            if fig != "consumed_bytes":
                assert state != "disputed", (name, fig, by[name][fig])


def records(lab: Lab, tmp_path: Path) -> dict[tuple[str, Kind], Envelope]:
    snap = tmp_path / "snap.json"
    code, out = cli(lab, READER, "snapshot", "save", str(snap))
    assert code == 0, out
    return {
        (e.node_id, e.kind): e
        for e in (decode(r.encode()) for r in json.loads(snap.read_text())["records"])
    }


def node_id(lab: Lab, name: str) -> str:
    return load_private_key(lab_agent.AgentFiles.of(lab.run_dir, name).key).node_id


def forge(lab: Lab, tmp_path: Path, name: str, **changes: Any) -> TrafficBody:
    """Publish, signed with `name`'s key, its traffic record with `changes` (a validly signed
    lie) and a seq far above its agent's: the agent keeps running (its links stay up) but every
    store keeps the forged record over the agent's later, lower-numbered ones."""
    held = records(lab, tmp_path)
    files = lab_agent.AgentFiles.of(lab.run_dir, name)
    key, cert = load_private_key(files.key), load_certificate(files.cert)
    real = held[(key.node_id, Kind.TRAFFIC)]
    assert isinstance(real.body, TrafficBody)
    body = replace(real.body, **changes)
    env = sign_record(
        key, cert, body, seq=real.seq + 1_000_000, issued_at=int(time.time()), ttl_s=600
    )
    path = tmp_path / f"{name}-traffic.bin"
    path.write_bytes(env.raw)
    topic = record_topic(lab_agent.COMMUNITY, key.node_id, Kind.TRAFFIC)
    proc = lab.popen(
        name, [sys.executable, "-c", PUBLISH, str(broker.BROKER_PORT), topic, str(path)]
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return body


def test_honest_chain_under_cpu_load_is_verified_and_never_contradicted(lab: Lab):
    before = wait_for(
        "every relay publishes counters",
        lambda: (by := contrib(lab)) and all(by[r]["uptime_s"]["value"] for r in RELAYS) and by,
        60,
    )
    start = {r: before[r]["relayed_bytes"]["value"] for r in RELAYS}
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)
    ]  # a busy machine: agents publish late, records arrive skewed
    try:
        sent = lab.traffic("n1", "n5", seconds=4).sent_bytes
        assert sent > 1_000_000
        seen: list[str] = []

        def caught_up() -> tuple[dict[str, dict[str, Any]], dict[str, int]] | None:
            now = contrib(lab)
            if now is None:
                return None
            no_verdict_on_honest(now, tuple(now))  # at every poll, pending or not
            seen.extend(now[r]["relayed_bytes"]["check"] for r in RELAYS)
            grown = {r: now[r]["relayed_bytes"]["value"] - start[r] for r in RELAYS}
            done = all(g >= 0.9 * sent for g in grown.values()) and all(
                now[r]["relayed_bytes"]["check"] == "verified" for r in RELAYS
            )
            return (now, grown) if done else None

        now, grown = wait_for("relayed counters catch up, verified", caught_up, 60)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    print(f"\nsent {sent:,} B; relayed by n2..n4: {grown}; states seen: {sorted(set(seen))}")
    for r in RELAYS:
        assert abs(grown[r] - sent) <= 0.10 * sent, (r, grown[r], sent)
        bound = now[r]["relayed_bytes"]["bounds"][0]
        assert now[r]["relayed_bytes"]["value"] <= bound["limit"] + bound["tolerance"]
    assert now["n1"]["relayed_bytes"]["value"] < 0.01 * sent
    assert now["n5"]["relayed_bytes"]["value"] < 0.01 * sent


def test_relay_claim_from_a_leaf_is_not_verified(lab: Lab, tmp_path: Path):
    claim = 4_400_000_000
    forge(lab, tmp_path, "n5", forwarded_bytes=claim)

    def judged() -> dict[str, dict[str, Any]] | None:
        by = contrib(lab)
        hit = by and by["n5"]["relayed_bytes"]["value"] == claim
        return by if hit else None

    by = wait_for("the leaf's claim arrives", judged, 30)
    fig = by["n5"]["relayed_bytes"]
    print(f"\nn5 relayed: {fig}")
    assert fig["check"] == "contradicted", fig
    assert by["n5"]["share"]["relayed"] == 0
    no_verdict_on_honest(by, ("n1", "n2", "n3", "n4"))
    code, out = cli(lab, READER, "audit")
    assert code == 3
    assert "n5" in out


def test_framing_report_does_not_make_the_framed_node_contradicted(lab: Lab, tmp_path: Path):
    n3 = node_id(lab, "n3")
    held = records(lab, tmp_path)[(node_id(lab, "n4"), Kind.TRAFFIC)].body
    assert isinstance(held, TrafficBody)
    framed = tuple(
        NeighbourCounters(c.neighbour, c.iface, 0, c.tx_bytes, 0, c.tx_packets)
        if c.neighbour == n3
        else c
        for c in held.neighbours
    )  # "n3 never sent me anything"
    forge(lab, tmp_path, "n4", neighbours=framed)

    def judged() -> dict[str, dict[str, Any]] | None:
        by = contrib(lab)
        if by is None:
            return None
        no_verdict_on_honest(by, ("n1", "n2"))
        assert by["n3"]["relayed_bytes"]["check"] != "contradicted", by["n3"]
        return by if by["n3"]["relayed_bytes"]["check"] in ("disputed", "pending") else None

    by = wait_for("the framed relay is disputed or pending, never contradicted", judged, 30)
    print(f"\nn3 relayed: {by['n3']['relayed_bytes']}")
    for _ in range(3):  # and stays so over a few more publish rounds
        time.sleep(2)
        judged()


@pytest.fixture(scope="module")
def street() -> Iterator[Lab]:
    with agent_lab("cs", neighbourhood()) as the_lab:
        yield the_lab


def test_honest_neighbourhood_under_cpu_load_is_never_contradicted(street: Lab):
    """A ring of six with a shortcut and a gateway: traffic across it and out to the internet,
    while the machine is busy. Every poll: nothing contradicted, relay and uplink never
    disputed; at the end every relay that carried the traffic is verified."""
    wait_for(
        "every node publishes counters",
        lambda: (by := contrib(street)) and all(n["uptime_s"]["value"] for n in by.values()),
        60,
    )
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        across = street.traffic("n2", "n5", seconds=3).sent_bytes
        out = street.traffic("n4", "internet", seconds=3).sent_bytes
        assert min(across, out) > 1_000_000

        def settled() -> dict[str, dict[str, Any]] | None:
            by = contrib(street)
            if by is None:
                return None
            no_verdict_on_honest(by, tuple(by))
            carried = [n for n, c in by.items() if c["relayed_bytes"]["value"] > across // 2]
            done = carried and all(by[n]["relayed_bytes"]["check"] == "verified" for n in carried)
            return by if done and by["n1"]["gateway_bytes"]["check"] == "verified" else None

        by = wait_for("relays and the uplink verified", settled, 60)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    states = {n: (c["relayed_bytes"]["check"], c["gateway_bytes"]["check"]) for n, c in by.items()}
    print(f"\nacross {across:,} B, out {out:,} B; states {states}")
    assert by["n1"]["gateway_bytes"]["value"] >= 0.9 * out
