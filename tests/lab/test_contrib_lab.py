"""`contrib` and `audit` on a real chain: relayed bytes measured by the agents and checked by
the neighbours, under a parallel CPU load (publish skew), then two validly signed lies.

Real babeld, mosquitto and meshd agents in namespaces; real iperf3 traffic. A liar's forged
traffic record (signed with its own key) goes onto its own broker; its neighbours' agents
replicate it like any record. The CLI reads n2's broker throughout.

The agents count the routers' own mesh traffic (every iperf end here) as consumption and per
destination (`traffic.endpoints`), so an honest chain is verified throughout, the endpoints
attest what iperf moved, and a consumer whose record says it consumed nothing is flagged.
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
    """Honest figures are never contradicted nor disputed: consumption included, now that the
    agent counts the router's own traffic (every iperf end here) as consumption."""
    for name in honest:
        for fig in FIGURES:
            state = by[name][fig]["check"]
            assert state not in ("contradicted", "disputed"), (name, fig, by[name][fig])


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
    lie) and a seq far above its agent's. The liar's agent is stopped first: a running agent
    that sees a record of its own it did not sign continues above its seq (the agent's
    overtake), so the lie would last one publish round; a liar runs no such agent."""
    held = records(lab, tmp_path)
    lab.kill(name, "agent")
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
    # onto the reader's broker: the liar's own has no agent left to replicate from it
    proc = lab.popen(
        READER, [sys.executable, "-c", PUBLISH, str(broker.BROKER_PORT), topic, str(path)]
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


def endpoints(lab: Lab, tmp_path: Path, name: str) -> dict[str, tuple[int, int]]:
    """`name`'s attested flows as the CLI's broker holds them: {peer name: (sent, received)}."""
    names = {node_id(lab, n): n for n in lab.node_names()}
    body = records(lab, tmp_path)[(node_id(lab, name), Kind.TRAFFIC)].body
    assert isinstance(body, TrafficBody)
    return {names.get(e.peer, e.peer): (e.sent_bytes, e.received_bytes) for e in body.endpoints}


def test_endpoints_attest_what_was_sent_and_the_relays_stay_verified(lab: Lab, tmp_path: Path):
    wait_for(
        "both ends know each other's addresses (a first flow counter)",
        lambda: "n5" in endpoints(lab, tmp_path, "n1") or None,
        60,
    )
    before = {n: endpoints(lab, tmp_path, n) for n in ("n1", "n5")}
    run = lab.traffic("n1", "n5", seconds=3)
    # iperf's sender counts what it wrote, some of which the end of the test may discard: what
    # the receiver got is what crossed the mesh
    sent, arrived = run.sent_bytes, run.received_bytes
    assert arrived > 1_000_000

    seen: dict[str, object] = {}

    def attested() -> tuple[int, int, dict[str, dict[str, Any]]] | None:
        out = endpoints(lab, tmp_path, "n1").get("n5", (0, 0))[0] - before["n1"]["n5"][0]
        got = (
            endpoints(lab, tmp_path, "n5").get("n1", (0, 0))[1] - before["n5"].get("n1", (0, 0))[1]
        )
        by = contrib(lab)
        seen.update(sent=sent, arrived=arrived, out=out, got=got)
        if by is None or min(out, got) < arrived:  # records read before iperf ended: wait
            return None
        no_verdict_on_honest(by, tuple(by))
        seen["relays"] = {r: by[r]["relayed_bytes"] for r in RELAYS}
        relays_ok = all(by[r]["relayed_bytes"]["check"] == "verified" for r in RELAYS)
        return (out, got, by) if relays_ok else None

    try:
        out, got, by = wait_for("both endpoints attest the flow, relays verified", attested, 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None
    print(
        f"\niperf sent {sent:,} B n1->n5; n1 attests {out:,} B sent to n5 "
        f"({out / sent - 1:+.2%}), n5 attests {got:,} B received from n1 ({got / sent - 1:+.2%});"
        f" consumed: n1 {by['n1']['consumed_bytes']['check']}, "
        f"n5 {by['n5']['consumed_bytes']['check']}"
    )
    # iperf counts payload; the flow counters count whole packets (headers, acks' share aside)
    assert arrived <= out <= 1.06 * sent
    assert arrived <= got <= 1.06 * sent
    for r in RELAYS:
        assert by[r]["relayed_bytes"]["check"] == "verified", by[r]


def lower_bound(fig: dict[str, Any]) -> int:
    """The highest lower bound a consumption figure was checked against."""
    return max(b["limit"] - b["tolerance"] for b in fig["bounds"] if b["what"].startswith("lower"))


def test_under_reporting_consumer_is_flagged_by_audit(lab: Lab):
    """n1's agent keeps running and signing, but no longer counts the router's own traffic
    (its output and input rules flushed, as a tampered or broken agent would): real traffic
    from n1 then shows as a consumption claim below what its neighbour delivered and took from
    it, and `audit` flags n1 (exit 3)."""
    by = wait_for(
        "n1's consumption verified first",
        lambda: (b := contrib(lab)) and b["n1"]["consumed_bytes"]["check"] == "verified" and b,
        60,
    )
    before = by["n1"]["consumed_bytes"]["value"]
    for hook in ("own_out", "own_in"):
        proc = lab.popen("n1", ["nft", "flush", "chain", "inet", "meshd_acct", hook])
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    sent = lab.traffic("n1", "n2", seconds=3).sent_bytes
    assert sent > 1_000_000

    states: list[str] = []  # what n1's consumption was at each poll, for a failure message

    def flagged() -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        now = contrib(lab)
        if now is not None:
            states.append(f"{now['n1']['consumed_bytes']['check']}")
        if now is None or now["n1"]["consumed_bytes"]["check"] not in ("disputed", "contradicted"):
            return None
        fig = now["n1"]["consumed_bytes"]
        if lower_bound(fig) - fig["value"] < 0.5 * sent:
            return None  # flagged from its own counters; the neighbours' records not in yet
        code, data = cli_json(lab, READER, "audit")
        hits = [
            f
            for f in data["findings"]
            if f["subject"] == "n1" and f["code"] in ("disputed-claim", "unverified-consumed")
        ]
        return (code, hits[0], fig) if hits else None

    try:
        code, finding, fig = wait_for("the under-reporter flagged", flagged, 90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; n1's consumption at each poll: {states}") from None
    low = lower_bound(fig)
    print(
        f"\nn1 sent {sent:,} B to n2 uncounted; claims {fig['value']:,} B consumed "
        f"(+{fig['value'] - before:,} B since), lower bound {low:,} B: {fig['check']}; "
        f"audit: {finding['code']}: {finding['summary']}"
    )
    assert code == 3
    assert fig["value"] < low
    assert low - fig["value"] >= 0.5 * sent
    code, text = cli(lab, READER, "audit")
    assert code == 3
    assert "n1" in text


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
    # n5's agent is stopped, so n4 drops the link and routes to n5 are gone: the relays'
    # figures may be disputed (attested flows to n5 route nowhere), never contradicted. n1:
    # the under-reporter above; n4: the stopped neighbour's own relay.
    for name in ("n2", "n3"):
        for f in FIGURES:
            assert by[name][f]["check"] != "contradicted", (name, f, by[name][f])
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
        for name in ("n2", "n3"):  # n1 under-reports since the test above
            for fig in FIGURES:
                assert by[name][fig]["check"] != "contradicted", (name, fig, by[name][fig])
        return by if by["n3"]["relayed_bytes"]["check"] in ("disputed", "pending") else None

    by = wait_for("the framed relay is disputed or pending, never contradicted", judged, 30)
    print(f"\nn3 relayed: {by['n3']['relayed_bytes']}")
    for _ in range(3):  # and stays so over a few more CLI reads
        wait_for("contrib answers", judged, 30)


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
            uplink = by["n1"]["gateway_bytes"]
            # a record read while the uplink traffic still ran is verified too: wait for it all
            caught_up = uplink["value"] >= 0.9 * out
            return by if done and caught_up and uplink["check"] == "verified" else None

        by = wait_for("relays and the uplink verified", settled, 60)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    states = {n: (c["relayed_bytes"]["check"], c["gateway_bytes"]["check"]) for n, c in by.items()}
    print(f"\nacross {across:,} B, out {out:,} B; states {states}")
