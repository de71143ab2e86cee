"""The node agent (`meshd`) in the lab: its command line and the identity files it needs.

`agent_argv` is the single place where the lab's contract with meshd's flags lives; change it here
when the agent's command line changes.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.lab import babel, broker, netns
from cli.lab.topology import MESH_V4, MESH_V6, Topology
from meshd import defaults

METRICS_PORT = defaults.HTTP_PORT
GATEWAY_KBIT = 100_000  # the uplink capacity a lab gateway offers (the lab does not shape it)
COMMUNITY = "lablab"
CERT_DAYS = 30


def agent_available() -> bool:
    """Agents default to on only when the node agent package is importable."""
    try:
        return importlib.util.find_spec("node_agent.agent") is not None
    except (ImportError, ValueError):
        return False


def meshd_path() -> Path:
    """The `meshd` console script next to the running interpreter (the project's venv)."""
    return Path(sys.executable).parent / "meshd"


@dataclass(frozen=True)
class AgentFiles:
    """Where one node's agent keeps its key, certificate, state and status."""

    key: Path
    cert: Path
    community: Path
    state_dir: Path
    status: Path

    @classmethod
    def of(cls, run_dir: Path, node: str) -> AgentFiles:
        base = run_dir / "nodes" / node
        return cls(
            key=base / "node.key",
            cert=base / "cert.json",
            community=run_dir / "community.yaml",
            state_dir=base / "state",
            status=base / "status.json",
        )


def agent_argv(topo: Topology, run_dir: Path, node: str) -> list[str]:
    """The meshd command line of `node` (run inside its namespace)."""
    files = AgentFiles.of(run_dir, node)
    n = topo.node(node)
    argv = [
        str(meshd_path()),
        "--key", str(files.key),
        "--cert", str(files.cert),
        "--community-file", str(files.community),
        "--state-dir", str(files.state_dir),
        "--status-file", str(files.status),
    ]  # fmt: skip
    for iface in topo.mesh_ifaces(node):  # point-to-point links, then shared segments
        argv += ["--mesh-iface", iface]
    argv += ["--address", n.v4, "--address", n.v6]
    argv += [
        "--hostname", node,
        "--broker-port", str(broker.BROKER_PORT),
        "--babel-port", str(babel.CONTROL_PORT),
        "--metrics-port", str(METRICS_PORT),
    ]  # fmt: skip
    uplink = topo.uplink(node)
    if uplink is not None:
        argv += ["--gateway-iface", uplink.if_a, "--gateway-kbit", str(GATEWAY_KBIT)]
    return argv


def provision_identities(topo: Topology, run_dir: Path) -> None:
    """Create a lab community with one admin, and a key and enrollment certificate per node.

    This is the one function that talks to the core's identity API (meshd.ids / meshd.trust and
    provisioning.keys); if that API changes, only this function changes.
    """
    import yaml

    from meshd.ids import SigningKey
    from meshd.trust import Enrollment, admin_signature, community_message
    from provisioning.keys import write_certificate, write_private_key

    admin = SigningKey.generate()
    write_private_key(run_dir / "admin.key", admin, overwrite=True)
    community: dict[str, Any] = {
        "name": COMMUNITY,
        "mesh_id": COMMUNITY,
        "radio": {
            "country": "DE",
            "sae_passphrase": "lab-only-passphrase",
            "bands": {"5g": {"channel": 36, "htmode": "VHT80"}},
        },
        "ipv4": {"prefix": MESH_V4},
        "ipv6": {"prefix": MESH_V6},
        "routing": {"protocol": "babel"},
        "mqtt": {"port": broker.BROKER_PORT},
        "admins": [{"name": "lab-admin", "key": admin.public.text}],
        "threshold": 1,
    }
    community["signatures"] = [admin_signature(admin, community_message(community))]
    (run_dir / "community.yaml").write_text(yaml.safe_dump(community, sort_keys=True))
    expires = int(time.time()) + CERT_DAYS * 86400
    for n in topo.nodes:
        files = AgentFiles.of(run_dir, n.name)
        files.state_dir.mkdir(parents=True, exist_ok=True)
        key = SigningKey.generate()
        write_private_key(files.key, key, overwrite=True)
        cert = Enrollment.issue(
            admin, community=COMMUNITY, hostname=n.name, key=key.public, expires=expires
        )
        write_certificate(files.cert, cert)


def node_ids(topo: Topology, run_dir: Path) -> dict[str, str]:
    """node name -> node id, read from the keys `provision_identities` wrote."""
    from provisioning.keys import load_private_key

    return {
        n.name: load_private_key(AgentFiles.of(run_dir, n.name).key).node_id for n in topo.nodes
    }


def metrics_port(args: list[str]) -> int:
    """The agent's HTTP port, honouring a `--metrics-port` among the lab's extra agent flags."""
    port = METRICS_PORT
    for i, arg in enumerate(args):
        if arg == "--metrics-port" and i + 1 < len(args) and args[i + 1].isdigit():
            port = int(args[i + 1])
        elif arg.startswith("--metrics-port=") and arg.split("=", 1)[1].isdigit():
            port = int(arg.split("=", 1)[1])
    return port


def read_status(ns: str, status_file: Path, port: int, timeout: float = 1.0) -> dict[str, Any]:
    """An agent's live status from its HTTP `/status`, else the status file it writes; {} if none.

    The file is only rewritten every publish interval, so HTTP is what shows a fresh agent.
    """
    if port:
        try:
            sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            sock = None
        if sock is not None:
            with sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(b"GET /status HTTP/1.0\r\n\r\n")
                    raw = b""
                    while chunk := sock.recv(65536):
                        raw += chunk
                    head, _, body = raw.partition(b"\r\n\r\n")
                    if head.startswith(b"HTTP/1.0 200"):
                        data = json.loads(body)
                        if isinstance(data, dict):
                            return data
                except (OSError, ValueError):
                    pass
    try:
        data = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def neighbours_up(status: dict[str, Any]) -> set[str]:
    """Node ids an agent's status lists as current neighbours."""
    out = set()
    for entry in status.get("neighbours", []):
        if isinstance(entry, dict) and entry.get("up") and isinstance(entry.get("node_id"), str):
            out.add(str(entry["node_id"]))
    return out
