"""Reading a live broker: a real mosquitto on loopback holding retained records, one of them
forged; the CLI verifies each record itself and refuses the forgery."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from meshd.ids import SigningKey
from meshd.records import Kind
from meshd.topics import record_topic, status_topic
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broker(tmp_path: Path):
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("mosquitto did not start")
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


async def publish_retained(port: int, messages: dict[str, bytes]) -> None:
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages.items():
            await client.publish(topic, payload, qos=1, retain=True)


def test_nodes_from_a_broker_verifies_every_record(broker: int, tmp_path: Path):
    mesh = SyntheticMesh.chain(3, now=int(time.time()))  # the CLI checks expiry at its clock
    community = mesh.write_community(tmp_path / "community.yaml")
    envs = mesh.envelopes()
    messages = {record_topic(mesh.name, e.node_id, e.kind): e.raw for e in envs}
    n3 = mesh.nodes["n3"].node_id
    # tamper with n3's traffic record on the broker: the signature no longer matches
    traffic = messages[record_topic(mesh.name, n3, Kind.TRAFFIC)]
    messages[record_topic(mesh.name, n3, Kind.TRAFFIC)] = traffic.replace(
        b'"client_bytes":0', b'"client_bytes":1'
    )
    messages[status_topic(mesh.name, n3)] = b"offline"
    asyncio.run(publish_retained(broker, messages))

    args = ["--broker", f"127.0.0.1:{broker}", "--community", str(community)]
    r = invoke("nodes", *args, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["source"] == f"broker 127.0.0.1:{broker}"
    by = {n["name"]: n for n in data["nodes"]}
    assert set(by) == {"n1", "n2", "n3"}
    assert by["n3"]["state"] == "offline"
    assert "traffic" not in by["n3"]["records"]  # the tampered record was refused
    assert by["n2"]["records"]["traffic"]["seq"] == 3

    out = tmp_path / "snap.json"
    r = invoke("snapshot", "save", out, *args, "--json")
    assert json.loads(r.output)["rejected"] == {"bad_signature": 1}
    assert len(json.loads(out.read_text())["records"]) == 8


def test_a_real_broker_keeps_oversized_messages_from_the_cli(broker: int, tmp_path: Path):
    """The CLI asks for MQTT v5 Maximum Packet Size: mosquitto then never sends it the 200 kB
    message someone retained, and the honest records still arrive."""
    from cli.read.source import read_broker

    mesh = SyntheticMesh.chain(2, now=int(time.time()))
    envs = mesh.envelopes()
    messages = {record_topic(mesh.name, e.node_id, e.kind): e.raw for e in envs}
    stranger = SigningKey.generate().public.node_id
    messages[record_topic(mesh.name, stranger, Kind.NODE)] = b"{" + b" " * 200_000 + b"}"
    asyncio.run(publish_retained(broker, messages))
    raw = read_broker("127.0.0.1", broker, mesh.name)
    assert sorted(raw.records) == sorted(e.raw for e in envs)
