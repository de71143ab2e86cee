"""RSS and CPU of one meshd with 8 neighbours and 200 nodes' records in its store.

Next to it, in the same run: a bare `python -c "import asyncio"` (the floor any asyncio agent
pays) under the same interpreter. Runs on loopback: a local broker, and one "neighbour" broker
that holds the 200 nodes' retained records which the agent pulls in over its 8 relay connections
(one per neighbour). The agent reads the JSON community file, as on a router; `--router` also
makes `ssl` and `yaml` unimportable (an OpenWrt without python3-openssl and python3-yaml) and
prints both rows. `--python` runs agent and baseline under another interpreter, e.g. a 32-bit
one (a router's word size). Targets: <= 20 MB RSS, <= 2 % of one core in steady state.

    .venv/bin/python bench/agent_footprint.py [--seconds 30] [--router] [--python /tmp/py32]

A 32-bit CPython from Debian only: `dpkg --add-architecture i386; apt-get install python3:i386
python3-nacl:i386` (it replaces the amd64 python3 and what depends on it: copy the i386 files
out with `dpkg -L` into a folder, then reinstall the amd64 packages); aiomqtt, paho-mqtt,
typing-extensions are pure Python (unpack their wheels into a folder on PYTHONPATH); run it as
`ld-linux.so.2 --library-path DIR/usr/lib/i386-linux-gnu DIR/usr/bin/python3.11` with
PYTHONHOME=DIR/usr. Measured (15 s, 2026-12-01, main with the members' page merged), RSS:
32-bit 26.6 MB, 23.3 MB with --router; 64-bit 31.3 MB, 26.9 MB; baselines 17.2 and 19.9 MB
(the baseline imports ssl via asyncio).
"Private" is not comparable across the two: the unpacked 32-bit libraries are mapped by no other
process, so only the agent and its baseline share them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.loopback import Broker, argv, free_port, provision
from meshd.encoding import canonical_json

ROOT = Path(__file__).resolve().parent.parent

NODES = 200
NEIGHBOURS = 8
HZ = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def private_kb(pid: int) -> int:
    """Memory only this process holds (shared libraries' pages excluded): what one more
    process costs a router."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def seed_records(tmp: Path, port: int) -> None:
    """200 enrolled nodes' node/links/traffic records, retained on the neighbour broker."""
    import paho.mqtt.client as mqtt
    import yaml

    from meshd.codec import sign_record
    from meshd.ids import SigningKey
    from meshd.records import LinkEntry, LinksBody, NeighbourCounters, NodeBody, TrafficBody
    from meshd.topics import record_topic
    from meshd.trust import Enrollment
    from provisioning.keys import load_private_key

    admin = load_private_key(tmp / "admin.key")
    community = yaml.safe_load((tmp / "community.yaml").read_text())["name"]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    now = int(time.time())
    keys = [SigningKey.generate() for _ in range(NODES)]
    for i, key in enumerate(keys):
        name = f"node{i}"
        cert = Enrollment.issue(
            admin, community=community, hostname=name, key=key.public, expires=now + 86400
        )
        peers = [keys[(i + d) % NODES].node_id for d in (1, 2, 3)]
        bodies = [
            NodeBody(name, "bench", "meshd 0.1.0", (f"10.88.{i // 250}.{i % 250 + 1}",)),
            LinksBody(
                tuple(
                    LinkEntry(p, "mesh0", "wifi", True, 256, 256, 1.5, 0.98, 0.97, 0.05, 1.05)
                    for p in peers
                )
            ),
            TrafficBody(
                "b" * 36,
                1000,
                now - 1000,
                tuple(NeighbourCounters(p, "mesh0", 10**6, 10**6, 1000, 1000) for p in peers),
            ),
        ]
        for seq, body in enumerate(bodies, 1):
            env = sign_record(key, cert, body, seq=seq, issued_at=now, ttl_s=86400)
            client.publish(
                record_topic(community, key.node_id, body.kind), env.raw, qos=1, retain=True
            ).wait_for_publish()
    client.loop_stop()
    client.disconnect()


# Run the agent with the named top-level modules unimportable (as if not installed).
BLOCKED_RUN = """
import sys
BLOCKED = set(sys.argv[1].split(",")) - {""}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Blocker())
from node_agent.__main__ import main
sys.exit(main(sys.argv[2:]))
"""
ROUTER_ABSENT = "ssl,_ssl,_hashlib,yaml,_yaml"  # python3-openssl holds _ssl and _hashlib


@dataclass
class Sample:
    rss_kb: int
    private_kb: int
    peak_kb: int
    cpu: float
    held: int
    neighbours: int


def measure(
    python: list[str], cmd: list[str], blocked: str, status_file: Path, seconds: float
) -> Sample:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    agent = subprocess.Popen(
        [*python, "-c", BLOCKED_RUN, blocked, *cmd], stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                held = json.loads(status_file.read_text())["records_held"]
            except (OSError, ValueError, KeyError):
                held = 0
            if held >= 3 * NODES:
                break
            time.sleep(0.5)
        time.sleep(5)  # settle after the initial replay
        t0, c0 = time.monotonic(), cpu_ticks(agent.pid)
        peak = 0
        while time.monotonic() - t0 < seconds:
            peak = max(peak, rss_kb(agent.pid))
            time.sleep(0.5)
        cpu = (cpu_ticks(agent.pid) - c0) / HZ / (time.monotonic() - t0)
        status = json.loads(status_file.read_text())
        return Sample(
            rss_kb(agent.pid),
            private_kb(agent.pid),
            peak,
            cpu,
            status["records_held"],
            len(status["neighbours"]),
        )
    finally:
        agent.terminate()
        agent.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--router", action="store_true", help="also run without ssl and yaml")
    ap.add_argument("--python", help="interpreter command for agent and baseline")
    args = ap.parse_args()
    python = [args.python] if args.python else [sys.executable]
    bits = subprocess.run(
        [*python, "-c", "import struct; print(struct.calcsize('P') * 8)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        admin, keys = provision(tmp, ["bench"] + [f"nb{i}" for i in range(NEIGHBOURS)])
        from provisioning.keys import write_private_key

        write_private_key(tmp / "admin.key", admin)
        community = yaml.safe_load((tmp / "community.yaml").read_text())
        (tmp / "community.json").write_bytes(canonical_json(community))
        local, remote = Broker(tmp, "local"), Broker(tmp, "remote")
        seed_records(tmp, remote.port)
        neighbours = [
            f"{keys[f'nb{i}'].node_id}@127.0.0.1:{remote.port}/{free_port(socket.SOCK_DGRAM)}"
            for i in range(NEIGHBOURS)
        ]
        cmd = argv(tmp, "bench", local, free_port(socket.SOCK_DGRAM), neighbours)
        cmd[cmd.index("--community-file") + 1] = str(tmp / "community.json")
        cmd[cmd.index("--publish-interval") + 1] = "60"
        cmd[cmd.index("--probe-interval") + 1] = "1"
        cmd[cmd.index("--lost-after") + 1] = "3600"
        status_file = tmp / "bench" / "status.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        baseline = subprocess.Popen(
            [*python, "-c", "import asyncio, time; time.sleep(900)"], env=env
        )
        try:
            runs = {"meshd": measure(python, cmd, "", status_file, args.seconds)}
            if args.router:
                status_file.unlink()
                runs["meshd, no ssl/yaml (router)"] = measure(
                    python, cmd, ROUTER_ABSENT, status_file, args.seconds
                )
            base_rss, base_priv = rss_kb(baseline.pid), private_kb(baseline.pid)
        finally:
            baseline.kill()
            baseline.wait()
            local.stop()
            remote.stop()
    mb = 1024.0
    print(f"interpreter: {' '.join(python)} ({bits}-bit)")
    print(f"{'':34}{'RSS':>9}{'private':>10}{'peak':>9}{'CPU':>8}  records/neighbours")
    print(f"{'baseline python -c import asyncio':34}{base_rss / mb:7.1f}MB{base_priv / mb:8.1f}MB")
    for name, r in runs.items():
        print(
            f"{name:34}{r.rss_kb / mb:7.1f}MB{r.private_kb / mb:8.1f}MB{r.peak_kb / mb:7.1f}MB"
            f"{r.cpu * 100:7.2f}%  {r.held}/{r.neighbours}"
        )
        print(
            f"{'  - baseline':34}{(r.rss_kb - base_rss) / mb:7.1f}MB"
            f"{(r.private_kb - base_priv) / mb:8.1f}MB"
        )
        print(f"{'  / baseline':34}{r.rss_kb / base_rss:8.2f}x{r.private_kb / base_priv:9.2f}x")
    first = next(iter(runs.values()))
    print(
        f"targets: RSS <= 20 MB -> {'met' if first.rss_kb <= 20 * 1024 else 'NOT met'} "
        f"(the asyncio baseline alone is {base_rss / mb:.1f} MB, so the agent's own share is the "
        f"increment above it); CPU <= 2 % over {args.seconds:g} s -> "
        f"{'met' if first.cpu <= 0.02 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
