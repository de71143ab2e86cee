"""Lab test helpers: skip reasons, unique lab names, snapshots of what a lab leaves behind, and
meshes of real agents whose brokers are watched (for the fault suite)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.lab import agent as lab_agent
from cli.lab import broker, netns
from cli.lab.lab import Lab, missing_requirements
from cli.lab.state import wait_until
from cli.lab.topology import Topology
from meshd.records import Kind
from meshd.topics import record_topic


def skip_reason() -> str | None:
    missing = missing_requirements()
    return "lab needs " + "; ".join(missing) if missing else None


# Labs the tests name (`lab_name`); the only ones the suite's stale-lab reaper may remove.
TEST_LAB_RE = re.compile(r"^t\d")


def lab_name(suffix: str) -> str:
    """Short and unique per test process, so parallel runs and a user's own lab never clash."""
    return f"t{os.getpid() % 100000}{suffix}"[:8]


@contextmanager
def running_lab(name: str, topo: Topology) -> Iterator[Lab]:
    """A built lab that is removed afterwards, whatever happens in between."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(name, topo, agents=False, echo=print)
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        lab.down()


def live_processes() -> dict[int, str]:
    """pid -> command line of every process that is not a zombie."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2] in "ZX":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry.name)] = cmd.strip()
    return out


def netns_inodes(prefix: str) -> set[int]:
    """Kernel identities of our namespaces: a process still inside one shows `net:[INODE]`."""
    inodes = set()
    for ns in netns.list_netns():
        if ns.startswith(prefix):
            with suppress(OSError):
                inodes.add((netns.NETNS_DIR / ns).stat().st_ino)
    return inodes


def processes_in(inodes: set[int]) -> dict[int, str]:
    """Live processes whose network namespace is one of `inodes` (even if it was unmounted)."""
    found = {}
    for pid, cmd in live_processes().items():
        try:
            link = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if link.startswith("net:[") and int(link[5:-1]) in inodes:
            found[pid] = cmd
    return found


def nft_tables() -> list[str]:
    proc = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return sorted(proc.stdout.splitlines())


@dataclass
class Snapshot:
    """What the host looks like before a lab, to compare with after it is gone."""

    namespaces: set[str]
    pids: set[int]
    nft: list[str]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(set(netns.list_netns()), set(live_processes()), nft_tables())

    def leftovers(self, prefix: str, run_dir: Path, inodes: set[int]) -> list[str]:
        """Everything a lab with this prefix left behind; empty when teardown was complete."""
        problems = []
        now = set(netns.list_netns())
        ours = sorted(ns for ns in now - self.namespaces if ns.startswith(prefix))
        if ours:
            problems.append(f"namespaces left: {ours}")
        new = {p: c for p, c in live_processes().items() if p not in self.pids}
        mentioning = {p: c for p, c in new.items() if str(run_dir) in c or prefix in c}
        if mentioning:
            problems.append(f"processes left: {mentioning}")
        inside = processes_in(inodes)
        if inside:
            problems.append(f"processes still in our namespaces: {inside}")
        if nft_tables() != self.nft:
            problems.append(f"nft tables changed: {self.nft} -> {nft_tables()}")
        if run_dir.exists():
            problems.append(f"run dir left: {run_dir}")
        return problems


# -- agents, and what every broker holds -----------------------------------------------------

# Fast timers so fault tests stay short: publish every 2 s, probes every 25 ms, a neighbour is
# lost after 5 s without probe replies, mDNS answers without the RFC's random delays.
#: which replication the lab agents run (node_agent --replication): the agent's default, push;
#: MUTUALMESH_LAB_REPLICATION=flood runs the suite on v1 flooding
REPLICATION = os.environ.get("MUTUALMESH_LAB_REPLICATION", "push")
FAST_AGENT = (
    "--replication", REPLICATION,
    "--publish-interval", "2",
    "--probe-interval", "0.025",
    "--probe-window", "800",
    "--lost-after", "5",
    "--mdns-fast",
    "--log-level", "info",
)  # fmt: skip

# Runs inside a node: one JSON line per message on the node's broker (retained or live), and an
# empty-topic line at each (re)connect. It reconnects by itself when the broker restarts.
BROKER_WATCH = r"""
import json, sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
def line(*row):
    sys.stdout.write(json.dumps(row) + "\n"); sys.stdout.flush()
def on_message(c, u, m):
    seq = None
    if 0 < len(m.payload) <= 65536:
        try:
            seq = json.loads(m.payload).get("seq")
        except Exception:
            pass
    line(time.time(), m.topic, seq if isinstance(seq, int) else None, len(m.payload))
def on_connect(c, u, f, rc, p):
    c.subscribe("mesh/v1/#", qos=1)
    line(time.time(), "", None, 0)
c = mqtt.Client(CallbackAPIVersion.VERSION2)
c.on_message = on_message
c.on_connect = on_connect
c.reconnect_delay_set(0.1, 0.5)
while True:
    try:
        c.connect("127.0.0.1", int(sys.argv[1])); break
    except OSError:
        time.sleep(0.05)
c.loop_forever(retry_first_connection=True)
"""


@dataclass(frozen=True)
class Seen:
    """One message a broker delivered: when, on which topic, its record seq, its size."""

    t: float
    topic: str
    seq: int | None
    size: int


class BrokerWatch:
    """A subscriber on one node's broker, read in the background."""

    def __init__(self, lab: Lab, node: str) -> None:
        import sys
        import threading

        self.node = node
        argv = [sys.executable, "-u", "-c", BROKER_WATCH, str(broker.BROKER_PORT)]
        self.proc = lab.popen(node, argv)
        self.seen: list[Seen] = []
        self.connects: list[float] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        import json

        assert self.proc.stdout is not None
        with suppress(ValueError):  # reading a pipe closed by `stop`
            for text in self.proc.stdout:
                with suppress(ValueError):  # a line cut short when the watcher was killed
                    self._add(json.loads(text))

    def _add(self, row: list[Any]) -> None:
        t, topic, seq, size = row
        with self.lock:
            if topic:
                self.seen.append(Seen(t, topic, seq, size))
            else:
                self.connects.append(t)

    def messages(self, since: float = 0.0) -> list[Seen]:
        with self.lock:
            return [m for m in self.seen if m.t >= since]

    def newest(self, since: float = 0.0) -> dict[str, int]:
        """topic -> highest record seq delivered (since `since`)."""
        out: dict[str, int] = {}
        for m in self.messages(since):
            if m.seq is not None:
                out[m.topic] = max(out.get(m.topic, m.seq), m.seq)
        return out

    def rewinds(self) -> list[str]:
        """Every time a topic's record seq went down on this broker (a record replaced by an
        older one), as text; cleared topics and non-records are skipped."""
        last: dict[str, int] = {}
        out = []
        for m in self.messages():
            if m.seq is None or "/_push/" in m.topic:  # a push topic carries every record
                continue
            if m.seq < last.get(m.topic, m.seq):
                out.append(f"{self.node}: {m.topic} {last[m.topic]} -> {m.seq} at {m.t:.2f}")
            last[m.topic] = max(last.get(m.topic, m.seq), m.seq)
        return out

    def stop(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def wait_for(what: str, ready: Callable[[], object], limit_s: float, step: float = 0.1) -> float:
    """Poll `ready` until truthy; return the seconds it took, fail the test at the deadline."""
    t0 = time.monotonic()
    if not wait_until(lambda: bool(ready()), limit_s, step):
        raise AssertionError(f"{what}: not within {limit_s:g} s")
    return time.monotonic() - t0


class AgentMesh:
    """A built lab whose `honest` nodes run meshd (fast timers), each broker watched."""

    def __init__(self, lab: Lab, honest: list[str]) -> None:
        self.lab = lab
        self.honest = honest
        lab_agent.provision_identities(lab.topology, lab.run_dir)
        self.ids = lab_agent.node_ids(lab.topology, lab.run_dir)
        self.watch = {n: BrokerWatch(lab, n) for n in honest}
        wait_for("watchers connected", lambda: all(w.connects for w in self.watch.values()), 20)
        for n in honest:
            self.start(n)

    def start(self, node: str) -> None:
        self.lab.start_agent(node, extra_args=FAST_AGENT)

    def topic(self, origin: str, kind: Kind) -> str:
        return record_topic(lab_agent.COMMUNITY, self.ids[origin], kind)

    def topics(self) -> list[str]:
        return [self.topic(o, k) for o in self.honest for k in Kind]

    def status(self, node: str) -> dict[str, Any]:
        files = lab_agent.AgentFiles.of(self.lab.run_dir, node)
        return lab_agent.read_status(self.lab.ns(node), files.status, lab_agent.METRICS_PORT)

    def own_newest(self) -> dict[str, int]:
        """Each honest node's newest records, as its own broker holds them."""
        out = {}
        for o in self.honest:
            mine = self.watch[o].newest()
            out.update({t: mine[t] for t in (self.topic(o, k) for k in Kind) if t in mine})
        return out

    def lacking(self, target: dict[str, int], since: float = 0.0) -> dict[str, int]:
        """holder -> how many of the `target` seqs its broker has not delivered (since)."""
        out = {}
        for n in self.honest:
            have = self.watch[n].newest(since)
            short = sum(1 for t, s in target.items() if have.get(t, -1) < s)
            if short:
                out[n] = short
        return out

    def neighbours_missing(self) -> dict[str, list[str]]:
        """honest node -> honest mesh neighbours its agent does not list as up."""
        names = {v: k for k, v in self.ids.items()}
        out = {}
        for n in self.honest:
            up = {names.get(i) for i in lab_agent.neighbours_up(self.status(n))}
            want = [m for m in self.lab.topology.neighbours(n) if m in self.honest]
            cut = {i for i, st in self.lab.links.items() if st.cut}
            want = [m for m in want if self.lab.topology.link_between(n, m).index not in cut]
            if missing := [m for m in want if m not in up]:
                out[n] = missing
        return out

    def whole(self) -> bool:
        """Every honest broker holds every honest node's newest records, and agents see all
        their honest neighbours."""
        return (
            not self.lacking(self.own_newest())
            and len(self.own_newest()) == len(self.topics())
            and not self.neighbours_missing()
        )

    def stop(self) -> None:
        for w in self.watch.values():
            w.stop()


@dataclass(frozen=True)
class Healed:
    """How long a partition took to heal: babel's routes, then every newest record everywhere."""

    routed_s: float
    heal_s: float
    records: int


def partition_and_heal(
    mesh: AgentMesh, half_a: tuple[str, ...], partition: tuple[tuple[str, str], ...]
) -> Healed:
    """Cut `partition` (separating `half_a` from the rest), check no record crosses the cut while
    both halves keep publishing, restore it and time the heal."""
    lab = mesh.lab
    half_b = [n for n in mesh.honest if n not in half_a]
    for a, b in partition:
        lab.cut(a, b)
    try:
        wait_for(
            "babel has no route across the cut",
            lambda: all(
                f"{lab.addr(b)}/32" not in (d.installed() if (d := lab.dumps()[a]) else {})
                for a in half_a
                for b in half_b
            ),
            60,
        )
        cut_at = mesh.own_newest()
        # both halves keep publishing: each node's own broker gets two rounds of new records
        wait_for(
            "both halves publish during the cut",
            lambda: all(s >= cut_at[t] + 2 for t, s in mesh.own_newest().items()),
            30,
        )
        during = mesh.own_newest()
        apart = [
            (holder, origin)
            for holder, others in ((half_a[0], half_b), (half_b[0], list(half_a)))
            for origin in others
            if mesh.watch[holder].newest().get(mesh.topic(origin, Kind.NODE), -1)
            >= during[mesh.topic(origin, Kind.NODE)]
        ]
        assert apart == [], "records crossed a cut that babel does not route"
    finally:
        for a, b in partition:
            lab.restore(a, b, wait=False)
    routed = wait_for("babel routes again", lambda: not lab.missing_routes(), 60)
    target = mesh.own_newest()
    heal = wait_for("every newest record on every broker", lambda: not mesh.lacking(target), 60)
    return Healed(routed, heal, len(target))


@contextmanager
def agent_mesh(suffix: str, topo: Topology, honest: list[str] | None = None) -> Iterator[AgentMesh]:
    """A lab of `topo` with meshd on the `honest` nodes (default: all), removed afterwards."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(lab_name(suffix), topo, agents=False, echo=print)
    kit = None
    try:
        lab.up(timeout=60)
        kit = AgentMesh(lab, honest or topo.names)
        yield kit
    finally:
        if kit is not None:
            kit.stop()
        lab.down()


def broker_clients(lab: Lab, node: str) -> int:
    """How many MQTT connections `node`'s broker has accepted and holds right now."""
    argv = ["ss", "-Htn", "state", "established", f"( sport = :{broker.BROKER_PORT} )"]
    proc = netns.run(netns.nsexec(lab.ns(node), *argv), check=False)
    return len(proc.stdout.splitlines()) if proc.returncode == 0 else 0


def wait_subscribed(lab: Lab, nodes: list[str], limit_s: float = 20.0) -> None:
    """Until every node's broker holds a connection (the tests' own subscribers)."""
    wait_for("subscribers connected", lambda: all(broker_clients(lab, n) for n in nodes), limit_s)


def wait_listening(lab: Lab, node: str, port: int, limit_s: float = 10.0) -> None:
    """Until a server inside `node` listens on TCP `port` (e.g. iperf3 -s)."""
    wait_for(f"a listener on {node}:{port}", lambda: netns.listening(lab.ns(node), port), limit_s)
