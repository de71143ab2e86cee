"""Real agents against real mosquitto brokers on loopback, shared by tests and bench/.

Not a test module (bench/ imports no test module): provisioning a community with enrolled
nodes, starting a broker, building a meshd argument list.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import yaml

from meshd.community import parse_community
from meshd.ids import SigningKey
from meshd.trust import Enrollment, admin_signature, community_message
from provisioning.keys import write_certificate, write_private_key

COMMUNITY = "looptest"


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provision(tmp: Path, names: list[str]) -> tuple[SigningKey, dict[str, SigningKey]]:
    admin = SigningKey.generate()
    data = {
        "name": COMMUNITY,
        "mesh_id": COMMUNITY,
        "radio": {"country": "DE", "sae_passphrase": "loop-test-pass", "bands": {}},
        "ipv4": {"prefix": "10.88.0.0/16"},
        "ipv6": {"prefix": "fd88::/48"},
        "routing": {"protocol": "babel"},
        "admins": [{"name": "a", "key": admin.public.text}],
        "threshold": 1,
    }
    data["radio"]["bands"] = {"5g": {"channel": 36, "htmode": "VHT80"}}
    data["signatures"] = [admin_signature(admin, community_message(data))]
    (tmp / "community.yaml").write_text(yaml.safe_dump(data))
    parse_community(data)
    keys = {}
    for name in names:
        key = SigningKey.generate()
        write_private_key(tmp / name / "node.key", key)
        cert = Enrollment.issue(
            admin,
            community=COMMUNITY,
            hostname=name,
            key=key.public,
            expires=int(time.time()) + 86400,
        )
        write_certificate(tmp / name / "cert.json", cert)
        keys[name] = key
    return admin, keys


class Broker:
    def __init__(self, tmp: Path, name: str) -> None:
        self.port = free_port()
        self.conf = conf = tmp / f"mosquitto-{name}.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {tmp / f'mosquitto-{name}.log'}\n"
        )
        self.start()

    def start(self) -> None:
        """(Re)start on the same port, empty: no persistence, like a router's broker."""
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def argv(tmp: Path, name: str, broker: Broker, probe: int, neighbours: list[str]) -> list[str]:
    out = [
        "--key", str(tmp / name / "node.key"),
        "--cert", str(tmp / name / "cert.json"),
        "--community-file", str(tmp / "community.yaml"),
        "--state-dir", str(tmp / name / "state"),
        "--status-file", str(tmp / name / "status.json"),
        "--mesh-iface", "lo",
        "--address", "127.0.0.1",
        "--hostname", name,
        "--broker-port", str(broker.port),
        "--babel-port", str(free_port()),
        "--metrics-port", "0",
        "--probe-port", str(probe),
        "--publish-interval", "1",
        "--probe-interval", "0.2",
        "--lost-after", "3",
        "--no-nft",
        "--no-mdns",
    ]  # fmt: skip
    for n in neighbours:
        out += ["--static-neighbour", n]
    return out
