"""The CLI's read side against hostile or broken input: a forged community file, garbage in a
snapshot, live markup in record text, and a broker that sends what it should not."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml

from cli.read.mqttcap import MAX_PACKET_BYTES
from cli.read.source import read_broker
from meshd.ids import SigningKey
from meshd.topics import record_topic, revocation_topic
from meshd.trust import Revocation, admin_signature, community_message
from tests.clikit import invoke
from tests.meshgen import SyntheticMesh


@pytest.fixture
def chain(tmp_path: Path) -> tuple[SyntheticMesh, Path, Path]:
    mesh = SyntheticMesh.chain(3)
    folder = tmp_path / "c"
    folder.mkdir()
    community = mesh.write_community(folder / "community.yaml")
    return mesh, community, mesh.write_snapshot(tmp_path / "snap.json")


def nodes_json(community: Path, snap: Path) -> dict:
    r = invoke("nodes", "--community", community, "--snapshot", snap, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


# -- the community file -----------------------------------------------------------------------


def test_community_file_that_is_not_utf8_is_a_clear_error(chain, tmp_path):
    _, _, snap = chain
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: straße\n".encode("latin-1"))
    r = invoke("nodes", "--community", bad, "--snapshot", snap)
    assert r.exit_code == 2
    assert "not UTF-8" in r.output
    assert "offset 10" in r.output


def test_unsigned_community_file_is_refused(chain):
    mesh, community, snap = chain
    mesh.write_community(community, signed=False)
    r = invoke("nodes", "--community", community, "--snapshot", snap)
    assert r.exit_code == 2
    assert "0 distinct valid admin signature(s) of 0 present, 1 needed" in r.output


def test_an_added_admin_does_not_keep_the_old_signatures(chain):
    _, community, snap = chain
    data = yaml.safe_load(community.read_text())
    data["admins"].append({"name": "mallory", "key": SigningKey.generate().public.text})
    community.write_text(yaml.safe_dump(data))
    r = invoke("nodes", "--community", community, "--snapshot", snap)
    assert r.exit_code == 2
    assert "signatures" in r.output


def test_a_self_signed_rewrite_fails_the_trust_chain(comm, tmp_path):
    folder, _ = comm
    path = folder / "community.yaml"
    data = yaml.safe_load(path.read_text())
    mallory = SigningKey.generate()
    data["admins"] = [{"name": "mallory", "key": mallory.public.text}]
    data["threshold"] = 1
    data.pop("signatures", None)
    data["signatures"] = [admin_signature(mallory, community_message(data))]
    path.write_text(yaml.safe_dump(data))
    mesh = SyntheticMesh.chain(2, name=data["name"], admin=mallory)
    snap = mesh.write_snapshot(tmp_path / "snap.json")
    r = invoke("nodes", "--community", path, "--snapshot", snap)
    assert r.exit_code == 2, r.output  # its own signature is valid, but trust/ says otherwise
    assert "differs from trusted version 1" in r.output


def test_revocations_in_the_community_folder_are_applied(chain):
    mesh, community, snap = chain
    assert {n["name"] for n in nodes_json(community, snap)["nodes"]} == {"n1", "n2", "n3"}
    victim = mesh.nodes["n3"]
    revocation = Revocation.issue(
        [mesh.admin], community=mesh.name, key=victim.key.public, issued_at=mesh.now, reason="x"
    )
    (community.parent / "revocations").mkdir()
    (community.parent / "revocations" / "n3.json").write_bytes(revocation.encode())
    assert {n["name"] for n in nodes_json(community, snap)["nodes"]} == {"n1", "n2"}


# -- snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("garbage", ["not a record", '{"x": 1}', "[" * 3000])
def test_snapshot_with_garbage_records_exits_non_zero(chain, tmp_path, garbage):
    _, community, snap = chain
    doc = json.loads(snap.read_text())
    doc["records"].append(garbage)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = invoke("nodes", "--community", community, "--snapshot", bad)
    assert r.exit_code == 2
    assert f"1 of {len(doc['records'])} entries in the snapshot are not records" in r.output


@pytest.mark.parametrize("taken_at", [float("nan"), float("inf"), -1, True, "now"])
def test_snapshot_time_must_be_a_time(chain, tmp_path, taken_at):
    _, community, snap = chain
    doc = json.loads(snap.read_text())
    doc["taken_at"] = taken_at
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = invoke("nodes", "--community", community, "--snapshot", bad)
    assert r.exit_code == 2
    assert "taken_at" in r.output


def test_hostile_revocation_in_a_snapshot_is_counted_not_fatal(chain, tmp_path):
    _, community, snap = chain
    doc = json.loads(snap.read_text())
    doc["revocations"] = ["[" * 3000, '{"reason": "\\ud800"}']
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = invoke(
        "snapshot",
        "save",
        tmp_path / "out.json",
        "--community",
        community,
        "--snapshot",
        bad,
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rejected"] == {"malformed": 2}


# -- markup in tables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile", ["[bold]loud[/bold]", r"\[link=https://example.invalid]click", "\\", "a\x1b[31mb"]
)
def test_table_cells_never_open_markup(monkeypatch, capsys, hostile):
    import cli.output

    monkeypatch.setattr(cli.output, "is_terminal", lambda: True)
    monkeypatch.setattr(cli.output, "colour_allowed", lambda: True)
    cli.output.table(["value"], [[hostile]], title=hostile)
    out = capsys.readouterr().out
    shown = hostile.replace("\x1b", "?")
    assert out.count(shown) == 2  # the title and the cell, exactly as typed
    assert "\x1b]8;" not in out  # no OSC-8 hyperlink
    assert "\x1b[31m" not in out


# -- a broker that sends what it should not -------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: str, payload: bytes) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + b"\x00" + payload  # v5: no props
    return b"\x31" + _varint(len(body)) + body


class FakeBroker:
    """Answers CONNECT and SUBSCRIBE (MQTT v5), then sends `script` and keeps the line open."""

    def __init__(self, script: list[bytes]) -> None:
        self.script = script
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.done = threading.Event()
        self.thread.start()

    def _read_packet(self, conn: socket.socket) -> tuple[int, bytes]:
        first = conn.recv(1)
        if not first:
            raise ConnectionError
        length, mult = 0, 1
        while True:
            b = conn.recv(1)[0]
            length += (b & 127) * mult
            mult *= 128
            if not b & 128:
                break
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                raise ConnectionError
            body += chunk
        return first[0], body

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            try:
                self._read_packet(conn)  # CONNECT
                conn.sendall(b"\x20\x03\x00\x00\x00")  # CONNACK, success, no properties
                kind, body = self._read_packet(conn)
                assert kind >> 4 == 8  # SUBSCRIBE
                conn.sendall(b"\x90\x04" + body[:2] + b"\x00\x01")  # SUBACK, granted QoS 1
                for packet in self.script:
                    conn.sendall(packet)
                self.done.wait(10)
            except (ConnectionError, OSError, IndexError):
                pass

    def close(self) -> None:
        self.done.set()
        self.server.close()
        self.thread.join(5)


def test_collect_refuses_an_oversized_packet_before_buffering_it():
    mesh = SyntheticMesh.chain(2, now=int(time.time()))
    env = mesh.envelopes()[0]
    good = _publish(record_topic(mesh.name, env.node_id, env.kind), env.raw)
    huge_header = b"\x31" + _varint(150_000_000) + b"\x00\x05mesh/"  # claims 150 MB, sends 7 B
    broker = FakeBroker([good, huge_header])
    try:
        started = time.monotonic()
        raw = read_broker("127.0.0.1", broker.port, mesh.name, quiet_s=0.5)
        elapsed = time.monotonic() - started
    finally:
        broker.close()
    assert raw.records == [env.raw]  # what came before the oversized packet is kept
    assert raw.dropped["too_large"] == 1
    assert elapsed < 3.0  # refused at the header, not after waiting for 150 MB


def test_collect_counts_hostile_messages_and_keeps_reading():
    mesh = SyntheticMesh.chain(2, now=int(time.time()))
    envs = mesh.envelopes()
    script = [
        _publish(revocation_topic(mesh.name, envs[0].node_id), b"[" * 3000),
        _publish("mesh/v1/elsewhere/x/y/z/w", b"junk"),
        *(_publish(record_topic(mesh.name, e.node_id, e.kind), e.raw) for e in envs),
    ]
    broker = FakeBroker(script)
    try:
        raw = read_broker("127.0.0.1", broker.port, mesh.name, quiet_s=0.5)
    finally:
        broker.close()
    assert sorted(raw.records) == sorted(e.raw for e in envs)
    assert raw.revocations == [b"[" * 3000]  # kept for the verifier, which refuses it
    assert raw.dropped["not_a_record"] == 1


def test_packet_cap_is_asked_of_the_broker():
    from cli.read.mqttcap import connect_properties

    props = connect_properties()
    assert props.MaximumPacketSize == MAX_PACKET_BYTES


def test_a_rewrite_without_its_folder_is_checked_against_the_pin(comm, tmp_path):
    folder, _ = comm
    data = yaml.safe_load((folder / "community.yaml").read_text())
    mallory = SigningKey.generate()
    mesh = SyntheticMesh.chain(2, name=data["name"], admin=mallory)
    snap = mesh.write_snapshot(tmp_path / "snap.json")
    first = invoke("nodes", "--community", folder / "community.yaml", "--snapshot", snap)
    assert first.exit_code == 0, first.output  # genuine, verified through trust/: pinned now
    data["admins"] = [{"name": "mallory", "key": mallory.public.text}]
    data["signatures"] = []
    data["signatures"] = [admin_signature(mallory, community_message(data))]
    loose = tmp_path / "elsewhere" / "community.yaml"
    loose.parent.mkdir()
    loose.write_text(yaml.safe_dump(data))
    r = invoke("nodes", "--community", loose, "--snapshot", snap)
    assert r.exit_code == 2
    assert "differ from version 1" in r.output
