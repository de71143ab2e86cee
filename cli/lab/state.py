"""Lab state: names, the error users see, the state file (JSON round trip) and its lock.

Every node is a namespace `mm<lab>-<node>`. What the lab builds is written to `state.json` in
its run directory *before* it is built, so `down` can remove it even after the CLI was killed
with SIGKILL half-way through. `LabState` is the base of `cli.lab.lab.Lab`: it knows the lab's
names and what was done to it, and builds or runs nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from cli.errors import BadInput, ToolFailed
from cli.lab import agent, netns, procs
from cli.lab.impair import Impairment
from cli.lab.procs import ProcRecord
from cli.lab.topology import (
    INTERNET,
    INTERNET_V4,
    OUT_OF_RANGE,
    Link,
    Node,
    Segment,
    Topology,
    pair_key,
)
from node_agent.fsutil import atomic_write

RUN_BASE = Path(os.environ.get("MUTUALMESH_LAB_RUN", "/run/mutualmesh-lab"))
LAB_NAME_RE = re.compile(r"^[a-z0-9]{1,8}$")
REQUIRED_TOOLS = ("ip", "nft", "tc", "babeld", "mosquitto", "iperf3", "ping", "ss", "sysctl")
STATE_VERSION = 1
OWNER_ENV = "MUTUALMESH_LAB_OWNER"
Echo = Callable[[str], None]


class LabError(ToolFailed):
    """Something asked of the lab cannot be done here and now (exit status 1); `fix` says what
    to do instead. `cli.errors` prints it and picks the exit status, like every fixable error."""

    def __init__(self, what: str, fix: str | None = None, *, where: str | None = None) -> None:
        super().__init__(what, where, fix)


class LabUsageError(BadInput, LabError):
    """The user asked for something that cannot exist (no such node or link): exit status 2."""


def missing_requirements() -> list[str]:
    """What this machine lacks to run a lab (empty when it can)."""
    missing = []
    if not sys.platform.startswith("linux"):
        missing.append(f"Linux (this is {sys.platform}); the lab uses network namespaces")
        return missing
    if os.geteuid() != 0:
        missing.append("root privileges (network namespaces, veths and nftables need them)")
    tools = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if tools:
        missing.append(f"tools: {', '.join(tools)} (install with scripts/setup)")
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun (the delay relay needs TUN/TAP)")
    return missing


def check_name(name: str) -> str:
    if not LAB_NAME_RE.match(name):
        raise LabUsageError(
            f"lab name {name!r} is not usable",
            "use 1-8 lowercase letters or digits, e.g. --name lab2",
        )
    return name


def ns_prefix(lab: str) -> str:
    return f"mm{lab}-"


def run_dir_of(lab: str, base: Path = RUN_BASE) -> Path:
    return base / lab


def list_labs(base: Path = RUN_BASE) -> list[str]:
    """Labs with a run directory or leftover namespaces."""
    names = {p.name for p in base.iterdir() if p.is_dir()} if base.exists() else set()
    for ns in netns.list_netns():
        m = re.match(r"^mm([a-z0-9]{1,8})-", ns)
        if m:
            names.add(m.group(1))
    return sorted(names)


def lock_held(run_dir: Path) -> bool:
    """True while some process holds the lab's lock (building it, changing it, removing it)."""
    try:
        fd = os.open(run_dir / ".lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we got
    return False


def topology_to_json(topo: Topology) -> dict[str, Any]:
    return {
        "spec": topo.spec,
        "nodes": [{"name": n.name, "index": n.index, "gateway": n.gateway} for n in topo.nodes],
        "links": [{"index": k.index, "a": k.a, "b": k.b, "kind": k.kind} for k in topo.links],
        "segments": [
            {"name": g.name, "index": g.index, "nodes": list(g.nodes), "loss": dict(g.loss)}
            for g in topo.segments
        ],
    }


def topology_from_json(data: dict[str, Any]) -> Topology:
    nodes = tuple(Node(str(n["name"]), int(n["index"]), bool(n["gateway"])) for n in data["nodes"])
    links = tuple(
        Link(int(k["index"]), str(k["a"]), str(k["b"]), str(k["kind"])) for k in data["links"]
    )
    segments = tuple(
        Segment(
            str(g["name"]),
            int(g["index"]),
            tuple(str(m) for m in g["nodes"]),
            tuple(sorted((str(k), float(v)) for k, v in g.get("loss", {}).items())),
        )
        for g in data.get("segments", [])
    )
    return Topology(str(data["spec"]), nodes, links, segments)


@dataclass
class LinkState:
    """What was done to a link: its impairment (oriented from `sender`) and whether it is cut."""

    impairment: Impairment
    sender: str
    cut: bool = False

    @property
    def delayed(self) -> bool:
        return self.impairment.delay_ms > 0

    def to_json(self) -> dict[str, Any]:
        return {**self.impairment.to_json(), "from": self.sender, "cut": self.cut}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinkState:
        return cls(Impairment.from_json(data), str(data["from"]), bool(data["cut"]))


@dataclass
class PairState:
    """What was done to one pair of a shared segment (loss oriented from `sender`)."""

    loss: float
    one_way: bool = False
    sender: str = ""
    cut: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"loss": self.loss, "one_way": self.one_way, "from": self.sender, "cut": self.cut}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairState:
        return cls(float(data["loss"]), bool(data["one_way"]), str(data["from"]), bool(data["cut"]))

    def describe(self) -> str:
        if self.loss >= OUT_OF_RANGE:
            return "out of range"
        text = f"loss {self.loss:g}%" if self.loss else "none"
        return text + (" one-way" if self.one_way and self.loss else "")


def now() -> float:
    return time.monotonic()


def wait_until(ready: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll `ready` until it holds or `timeout` seconds pass; True when it held.

    The one way the lab waits: for a condition, with a deadline, never for a fixed time.
    """
    deadline = now() + timeout
    while True:
        if ready():
            return True
        if now() > deadline:
            return False
        time.sleep(step)


def owner_from_env() -> tuple[int, int] | None:
    """(pid, start time) of the process whose life a lab is bound to, from MUTUALMESH_LAB_OWNER.

    The test suite sets it to the pytest process, so labs it leaves behind after a crash (the
    daemons run in their own sessions and survive) are recognised as stale by the next run.
    The value is `PID` or `PID:START_TIME` (clock ticks since boot, /proc/PID/stat field 22).
    """
    raw = os.environ.get(OWNER_ENV, "").strip()
    pid_text, _, start_text = raw.partition(":")
    if not pid_text.isdigit():
        return None
    pid = int(pid_text)
    start = int(start_text) if start_text.isdigit() else procs.start_time(pid)
    return (pid, start) if start else None


def proc_is(pid: int, start_time: int) -> bool:
    """True while the process `pid` that started at `start_time` still runs."""
    return procs.pid_alive(pid) and procs.start_time(pid) == start_time


class LabState:
    """One lab's names and state; `Lab` adds building, running, checking and changing it."""

    def __init__(
        self,
        name: str = "lab",
        topology: Topology | None = None,
        *,
        agents: bool | None = None,
        agent_args: Sequence[str] = (),
        echo: Echo | None = None,
        run_base: Path = RUN_BASE,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.name = check_name(name)
        # a lab bound to a process's life (tests) is stale once that process is gone
        self.owner = owner if owner is not None else owner_from_env()
        self._topology = topology
        self.agents = agent.agent_available() if agents is None else agents
        self.agent_args = list(agent_args)  # appended to every agent's argv (e.g. fast timers)
        self.agent_timeout = 60.0  # how long `up` waits for agents to see their neighbours
        self.echo: Echo = echo or (lambda _line: None)
        self.run_dir = run_dir_of(name, run_base)
        self.state_file = self.run_dir / "state.json"
        self.prefix = ns_prefix(name)
        self.phase = "new"
        self.namespaces: list[str] = []
        self.procs: dict[str, ProcRecord] = {}
        self.links: dict[int, LinkState] = {}
        # shared segments: segment name -> pair key ("n1-n3") -> what is done to that pair
        self.pairs: dict[str, dict[str, PairState]] = {}
        self.timings: dict[str, float] = {}
        self._t0 = now()

    def ns(self, node: str) -> str:
        """Namespace of a node (or of the internet namespace)."""
        return f"{self.prefix}{node}"

    @property
    def topology(self) -> Topology:
        """The lab's topology (a lab loaded from a state file without one has none)."""
        if self._topology is None:
            raise LabError(f"lab {self.name!r} has no topology", "run `mutualmesh lab up` first")
        return self._topology

    def node_names(self, with_internet: bool = False) -> list[str]:
        names = self.topology.names
        if with_internet and self.topology.gateways:
            names.append(INTERNET)
        return names

    def check_node(self, node: str, allow_internet: bool = False) -> str:
        if node in self.topology.names or (
            allow_internet and node == INTERNET and self.topology.gateways
        ):
            return node
        raise LabUsageError(
            f"lab {self.name!r} has no node {node!r}",
            f"use one of: {', '.join(self.node_names(allow_internet))}",
        )

    def segment_ifaces(self, node: str) -> dict[str, str]:
        """Shared segments `node` is on: segment name -> its interface there (e.g. `sg-s1`)."""
        self.check_node(node)
        return {seg.name: seg.iface for seg in self.topology.segments_of(node)}

    def mesh_ifaces(self, node: str) -> list[str]:
        """Every mesh interface of `node` as the agent should be told (links, then segments)."""
        self.check_node(node)
        return self.topology.mesh_ifaces(node)

    def segment_addr(self, segment: str, node: str) -> str:
        """IPv4 address of `node` on shared segment `segment`."""
        return self.topology.segment(segment).addr(self.topology.node(node))

    def _pair(self, a: str, b: str) -> Link | Segment:
        """The point-to-point link between a and b, else the shared segment they are both on."""
        self.check_node(a)
        self.check_node(b)
        try:
            return self.link(a, b)
        except LabError:
            try:
                return self.topology.shared_segment(a, b)
            except KeyError:
                near = ", ".join(self.topology.neighbours(a)) or "nothing"
                raise LabUsageError(
                    f"{a} and {b} share no link and no segment",
                    f"{a} can reach directly: {near}",
                ) from None

    def pair_state(self, segment: str, a: str, b: str) -> PairState:
        """Current range/loss between a and b on `segment` (what the radio rules enforce)."""
        seg = self.topology.segment(segment)
        got = self.pairs.get(seg.name, {}).get(pair_key(a, b))
        return got if got is not None else PairState(seg.loss_of(a, b), False, a)

    def hears(self, segment: str, a: str, b: str) -> bool:
        """True when a and b are in range of each other on `segment` right now."""
        st = self.pair_state(segment, a, b)
        return not st.cut and st.loss < OUT_OF_RANGE

    def link(self, a: str, b: str) -> Link:
        self.check_node(a)
        self.check_node(b)
        try:
            link = self.topology.link_between(a, b)
        except KeyError:
            raise LabUsageError(
                f"there is no link between {a} and {b}",
                f"{a} is linked to: {', '.join(self.topology.neighbours(a)) or 'nothing'}",
            ) from None
        if link.kind != "mesh":
            raise LabUsageError(f"{a}-{b} is an uplink, not a mesh link")
        return link

    def addr(self, node: str) -> str:
        return INTERNET_V4 if node == INTERNET else self.topology.node(node).v4

    def _active_iface(self, link: Link, node: str) -> str:
        state = self.links.get(link.index)
        iface, tap, _ = link.side(node)
        return tap if state is not None and state.delayed else iface

    def save(self) -> None:
        """Write the state atomically; called before each step that creates something."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "version": STATE_VERSION,
            "name": self.name,
            "phase": self.phase,
            "agents": self.agents,
            "agent_args": self.agent_args,
            "created": time.time(),
            "prefix": self.prefix,
            "topology": topology_to_json(self.topology) if self._topology else None,
            "namespaces": self.namespaces,
            "procs": {k: r.to_json() for k, r in self.procs.items()},
            "links": {str(i): s.to_json() for i, s in self.links.items()},
            "timings": self.timings,
            "pairs": {
                seg: {k: st.to_json() for k, st in pairs.items()}
                for seg, pairs in self.pairs.items()
            },
            "owner": list(self.owner) if self.owner else None,
            "writer": [os.getpid(), procs.start_time(os.getpid())],
        }
        atomic_write(self.state_file, json.dumps(data, indent=1, sort_keys=True).encode(), 0o644)

    @classmethod
    def load(cls, name: str, *, echo: Echo | None = None, run_base: Path = RUN_BASE) -> Self:
        """The lab called `name` as a previous `lab up` left it."""
        lab = cls(check_name(name), None, agents=False, echo=echo, run_base=run_base)
        try:
            data = json.loads(lab.state_file.read_text())
        except FileNotFoundError:
            others = [n for n in list_labs(run_base) if n != name]
            raise LabError(
                f"no lab called {name!r} is up",
                f"start one with `mutualmesh lab up --name {name}`"
                + (f" (labs here: {', '.join(others)})" if others else ""),
            ) from None
        except (OSError, ValueError) as exc:
            raise LabError(
                f"the state of lab {name!r} cannot be read ({exc})",
                f"remove it with `mutualmesh lab down --name {name}`",
            ) from None
        lab.phase = str(data.get("phase", "unknown"))
        lab.agents = bool(data.get("agents", False))
        lab.agent_args = [str(a) for a in data.get("agent_args", [])]
        lab.namespaces = [str(n) for n in data.get("namespaces", [])]
        lab.procs = {k: ProcRecord.from_json(v) for k, v in data.get("procs", {}).items()}
        lab.timings = {str(k): float(v) for k, v in data.get("timings", {}).items()}
        owner = data.get("owner")
        lab.owner = (int(owner[0]), int(owner[1])) if owner else None
        for seg, pairs in (data.get("pairs") or {}).items():
            lab.pairs[str(seg)] = {str(k): PairState.from_json(v) for k, v in pairs.items()}
        if data.get("topology"):
            lab._topology = topology_from_json(data["topology"])
        lab.links = {int(k): LinkState.from_json(v) for k, v in data.get("links", {}).items()}
        return lab

    @contextlib.contextmanager
    def locked(self, wait: float = 30.0) -> Iterator[None]:
        """Serialise commands that change the same lab (a crashed holder releases it)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = now() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if now() > deadline:
                        break  # proceed: a stuck holder must not make the lab unmanageable
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def require_up(self) -> None:
        if self.phase != "up":
            raise LabError(
                f"lab {self.name!r} is not fully up (state: {self.phase})",
                f"run `mutualmesh lab down --name {self.name}` and then `lab up` again",
            )

    def _step(self, what: str) -> None:
        self.echo(f"[{now() - self._t0:6.2f}s] {what}")
