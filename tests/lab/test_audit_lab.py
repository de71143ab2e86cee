"""`audit` on a real chain: a partition appears when the only link to a node is cut and clears
when it is restored; a node that publishes a validly signed but inflated relay claim is flagged.

Real babeld, mosquitto and meshd agents in namespaces; the CLI reads n1's broker and verifies
every record itself. Without --broker the CLI finds one itself: the node's own, else (its broker
stopped) a neighbour announcing `_mutualmesh._tcp` over mDNS, else it says nothing is reachable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.lab import agent as lab_agent
from cli.lab import broker
from cli.lab.lab import Lab
from cli.lab.topology import chain
from meshd.codec import decode, sign_record
from meshd.records import Kind, TrafficBody
from meshd.topics import record_topic
from provisioning.keys import load_certificate, load_private_key
from tests.lab.cliview import MUTUALMESH, agent_lab, cli, cli_json, wait_for

pytestmark = pytest.mark.lab

PUBLISH = r"""
import sys, paho.mqtt.client as mqtt
topic, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.connect("127.0.0.1", port)
c.loop_start()
c.publish(topic, open(path, "rb").read(), qos=1, retain=True).wait_for_publish(5)
c.loop_stop()
c.disconnect()
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with agent_lab("au", chain(5)) as the_lab:
        yield the_lab


def findings(lab: Lab, archive: Path) -> tuple[int, list[dict]]:
    code, data = cli_json(lab, "n1", "audit", "--archive", str(archive))
    return code, data["findings"]


def test_cut_only_link_reports_partition_and_restoring_clears_it(lab: Lab, tmp_path: Path):
    archive = tmp_path / "archive"

    def healthy():
        _code, found = findings(lab, archive)
        names = {f["subject"] for f in found if f["code"] == "articulation-point"}
        return found if names == {"n2", "n3", "n4"} else None

    before = wait_for("all five nodes seen, chain articulation points", healthy, 60)
    assert not [f for f in before if f["code"] == "partition"]

    lab.cut("n4", "n5")

    def partitioned():
        code, found = findings(lab, archive)
        part = [f for f in found if f["code"] == "partition"]
        return (code, part, found) if part else None

    code, part, _found = wait_for("partition reported", partitioned, 60)
    assert code == 3
    assert part[0]["figures"]["nodes"] == ["n5"]
    assert part[0]["figures"]["attached_through"] == ["n4"]  # the articulation point it hung on
    print(f"\nafter cut: {part[0]['summary']}")

    lab.restore("n4", "n5")

    def rejoined():
        _, found = findings(lab, archive)
        if any(f["code"] in ("partition", "one-sided-link") for f in found):
            return None
        ap = {
            f["subject"]: f["figures"]["cut_off"]
            for f in found
            if f["code"] == "articulation-point"
        }
        return ap if ap.get("n4") == 1 else None

    ap = wait_for("partition cleared", rejoined, 90)
    assert ap == {"n2": 1, "n3": 2, "n4": 1}


def test_inflated_relay_claim_is_flagged(lab: Lab, tmp_path: Path):
    files = {n: lab_agent.AgentFiles.of(lab.run_dir, n) for n in ("n2", "n3", "n4")}
    key = load_private_key(files["n3"].key)
    cert = load_certificate(files["n3"].cert)
    ids = {n: load_private_key(f.key).node_id for n, f in files.items()}

    def counted() -> tuple[dict, int] | None:
        """The held records once n3's neighbours publish what they saw it send."""
        snap = tmp_path / "snap.json"
        code, _ = cli(lab, "n1", "snapshot", "save", str(snap))
        assert code == 0
        records = [decode(r.encode()) for r in json.loads(snap.read_text())["records"]]
        by = {(e.node_id, e.kind): e for e in records}
        seen = 0
        for n in ("n2", "n4"):
            env = by.get((ids[n], Kind.TRAFFIC))
            if env is not None and isinstance(env.body, TrafficBody):
                seen += sum(c.rx_bytes for c in env.body.neighbours if c.neighbour == ids["n3"])
        return (by, seen) if seen > 0 and (ids["n3"], Kind.TRAFFIC) in by else None

    by, seen = wait_for("n3's neighbours count what it sent", counted, 60)
    real = by[(ids["n3"], Kind.TRAFFIC)]
    assert isinstance(real.body, TrafficBody)
    claim = 10 * seen

    lab.kill("n3", "agent")  # the liar's agent would otherwise publish its true counters again
    body = TrafficBody(
        real.body.boot_id,
        real.body.uptime_s,
        real.body.since,
        real.body.neighbours,
        forwarded_bytes=claim,
        forwarded_packets=real.body.forwarded_packets,
        gateway_bytes=real.body.gateway_bytes,
        client_bytes=real.body.client_bytes,
    )
    forged = sign_record(
        key, cert, body, seq=real.seq + 1000, issued_at=int(time.time()), ttl_s=600
    )
    payload = tmp_path / "forged.bin"
    payload.write_bytes(forged.raw)
    topic = record_topic(lab_agent.COMMUNITY, ids["n3"], Kind.TRAFFIC)
    # onto the CLI's broker: n3's own has no agent left to replicate the record from it
    proc = lab.popen(
        "n1", [sys.executable, "-c", PUBLISH, topic, str(payload), str(broker.BROKER_PORT)]
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out

    def flagged():
        code, data = cli_json(lab, "n1", "audit")
        hits = [
            f
            for f in data["findings"]
            if f["code"] == "unverified-relayed" and f["subject"] == "n3"
        ]
        return (code, hits[0]) if hits else None

    code, finding = wait_for("inflated claim flagged", flagged, 30)
    assert code == 3
    assert finding["figures"]["claimed"] == claim
    assert f"{claim:,}" in finding["summary"]
    code, text = cli(lab, "n1", "audit")
    assert code == 3
    assert "unverified-relayed" in text
    assert f"{claim:,}" in text
    code, data = cli_json(lab, "n1", "contrib")
    n3 = next(n for n in data["nodes"] if n["name"] == "n3")
    assert n3["relayed_bytes"]["check"] == "contradicted"


# -- finding a broker without --broker ----------------------------------------------------------


def cli_default(lab: Lab, node: str, *args: str) -> tuple[int, str]:
    """The CLI inside `node` with the lab's community but no --broker: it must find one."""
    argv = [MUTUALMESH, *args, "--community", str(lab.run_dir / "community.yaml")]
    proc = lab.popen(node, argv)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def test_default_broker_is_the_local_node(lab: Lab):
    code, out = cli_default(lab, "n1", "nodes", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["source"] == f"broker 127.0.0.1:{broker.BROKER_PORT}"
    assert {"n1", "n2", "n4", "n5"} <= {n["name"] for n in data["nodes"]}


def test_default_broker_falls_back_to_a_neighbour_over_mdns(lab: Lab):
    n4_side = lab.link("n4", "n5").side("n4")[2]  # n4's address on the n4-n5 link
    lab.kill("n5", "mosquitto")
    try:
        code, out = cli_default(lab, "n5", "nodes", "--json")
    finally:
        lab.start("n5")
    assert code == 0, out
    data = json.loads(out)
    assert data["source"] == f"broker {n4_side}:{broker.BROKER_PORT}"
    assert {"n1", "n4", "n5"} <= {n["name"] for n in data["nodes"]}


def test_no_broker_anywhere_is_unreachable(lab: Lab):
    ns = f"{lab.prefix}lone"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                MUTUALMESH,
                "nodes",
                "--community",
                str(lab.run_dir / "community.yaml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "no broker on this machine" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
