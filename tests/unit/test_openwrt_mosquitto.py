"""The rendered broker config, run by the real mosquitto: neighbours read and write nothing;
push replication's messages are written by the agent and read by the neighbour they name.

The node's mosquitto.conf and ACL files are used as rendered; only the listen addresses and
ports are moved to loopback (127.0.0.1 for the agent's listener, 127.0.0.2 standing in for the
node's mesh address) so the test needs no namespace.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.unit.test_provisioning_render import render

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="needs mosquitto")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def broker(tmp_path):
    files = render("ordinary")
    conf = files["etc/mosquitto/mosquitto.conf"].data.decode()
    local_port, mesh_port = _free_port("127.0.0.1"), _free_port("127.0.0.2")
    lines = []
    mesh_seen = False
    for line in conf.splitlines():
        if line.startswith("listener "):
            address = line.split()[2]
            if address == "127.0.0.1":
                line = f"listener {local_port} 127.0.0.1"
            elif not mesh_seen:
                line, mesh_seen = f"listener {mesh_port} 127.0.0.2", True
            else:
                line = "# (second mesh listener: same ACL, not needed here)"
                lines.append(line)
                continue
        lines.append(line.replace("/etc/mosquitto/", f"{tmp_path}/"))
    text = "\n".join(lines)
    # Drop the listener block we commented out (its allow_anonymous/acl_file lines follow it).
    head, _, _ = text.partition("# (second mesh listener")
    (tmp_path / "mosquitto.conf").write_text(head + "\nuser root\n")
    for name in ("meshd-local.acl", "meshd-mesh.acl"):
        (tmp_path / name).write_bytes(files[f"etc/mosquitto/{name}"].data)
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip

    def listening() -> bool:
        for host, port in (("127.0.0.1", local_port), ("127.0.0.2", mesh_port)):
            with socket.socket() as s:
                if s.connect_ex((host, port)) != 0:
                    return False
        return True

    try:
        _wait(listening, "mosquitto to listen")
        yield local_port, mesh_port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(host: str, port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
    client.connect(host, port)
    client.loop_start()
    return client


def test_neighbours_read_but_cannot_write(broker):
    local_port, mesh_port = broker
    topic = "mesh/v1/riverside/node/abc"
    got: list[tuple[str, bytes]] = []
    watcher = _client("127.0.0.1", local_port)  # the agent's own view
    neighbour = _client("127.0.0.2", mesh_port)
    agent = _client("127.0.0.1", local_port)
    subscribed: list[int] = []
    neighbour_got: list[bytes] = []
    try:
        watcher.on_message = lambda _c, _u, m: got.append((m.topic, m.payload))
        watcher.on_subscribe = lambda *_a: subscribed.append(1)
        watcher.subscribe("mesh/v1/#")
        neighbour.on_message = lambda _c, _u, m: neighbour_got.append(m.payload)
        neighbour.on_subscribe = lambda *_a: subscribed.append(2)
        neighbour.subscribe("mesh/v1/riverside/#")
        _wait(lambda: len(subscribed) == 2, "subscriptions")

        neighbour.publish(topic, b"forged by a neighbour", qos=1).wait_for_publish(5)
        agent.publish(topic, b"from the agent", qos=1).wait_for_publish(5)
        _wait(lambda: b"from the agent" in [p for _, p in got], "the agent's own record")
        _wait(lambda: b"from the agent" in neighbour_got, "the neighbour reading it")
        # The mesh listener's write was dropped: the broker delivers in order, and the agent's
        # later message arrived, so the forged one would have been here before it.
        assert b"forged by a neighbour" not in [p for _, p in got]
    finally:
        for c in (watcher, neighbour, agent):
            c.loop_stop()
            c.disconnect()


def test_neighbours_write_nothing_and_read_the_pushes_addressed_to_them(broker):
    """Push replication (docs/protocol.md §8.3): the agent writes `_push/<id>` on its own
    broker, the neighbour with that id reads it there; nothing a neighbour writes arrives."""
    local_port, mesh_port = broker
    c = "mesh/v1/riverside"
    me = "abcdefghijklmnop"
    forbidden = [
        f"{c}/{me}/links",
        f"{c}/{me}/status",
        f"{c}/_revocations/{me}",
        f"{c}/_push/{me}",
        f"{c}/_ctl/{me}",
        f"{c}/_push",
        "mesh/v1/other/_push/abcdefghijklmnop",
    ]
    got: list[str] = []
    neighbour_got: list[str] = []
    subscribed: list[int] = []
    watcher = _client("127.0.0.1", local_port)
    agent = _client("127.0.0.1", local_port)
    neighbour = _client("127.0.0.2", mesh_port)
    try:
        watcher.on_message = lambda _c, _u, m: got.append(m.topic)
        watcher.on_subscribe = lambda *_a: subscribed.append(1)
        watcher.subscribe("mesh/v1/#")
        neighbour.on_message = lambda _c, _u, m: neighbour_got.append(m.topic)
        neighbour.on_subscribe = lambda *_a: subscribed.append(2)
        neighbour.subscribe(f"{c}/_push/{me}")
        _wait(lambda: len(subscribed) == 2, "subscriptions")
        for topic in forbidden:  # one publisher: delivered in this order
            neighbour.publish(topic, b"x", qos=1).wait_for_publish(5)
        neighbour.publish(f"{c}/_push/sentinel", b"x", qos=1).wait_for_publish(5)
        agent.publish(f"{c}/_push/{me}", b"for you", qos=1).wait_for_publish(5)
        _wait(lambda: f"{c}/_push/{me}" in neighbour_got, "the neighbour reading its push")
        _wait(lambda: f"{c}/_push/{me}" in got, "the agent's push on its broker")
        assert [t for t in got if t in forbidden or t.endswith("sentinel")] == [f"{c}/_push/{me}"]
    finally:
        for client in (watcher, agent, neighbour):
            client.loop_stop()
            client.disconnect()
