"""The lab: a real mesh of network namespaces on this machine, and everything done to it.

Every node is a namespace `mm<lab>-<node>` running a real babeld and a real mosquitto (and the
node agent when asked). Links are veth pairs created directly inside the two namespaces, so no
interface ever appears on the host. What the lab builds is written to a state file in its run
directory *before* it is built, so `down` can remove it even after the CLI was killed with
SIGKILL half-way through; `down` also sweeps namespaces by prefix and processes by namespace, so
it does not depend on the state file being complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.lab import agent, babel, broker, impair, netns, procs
from cli.lab.impair import Impairment
from cli.lab.measure import PingResult, TrafficResult, parse_iperf3, parse_ping
from cli.lab.procs import ProcRecord
from cli.lab.topology import (
    INTERNET,
    INTERNET_V4,
    INTERNET_V6,
    OUT_OF_RANGE,
    Link,
    LinkImpairment,
    Node,
    Segment,
    Topology,
    pair_key,
)

RUN_BASE = Path(os.environ.get("MUTUALMESH_LAB_RUN", "/run/mutualmesh-lab"))
LAB_NAME_RE = re.compile(r"^[a-z0-9]{1,8}$")
REQUIRED_TOOLS = ("ip", "nft", "tc", "babeld", "mosquitto", "iperf3", "ping", "ss", "sysctl")
NAT_TABLE = "mutualmesh_lab_nat"
SINK_PORT = 5201
STATE_VERSION = 1
Echo = Callable[[str], None]


class LabError(RuntimeError):
    """Something the user asked of the lab cannot be done; `fix` says what to do instead."""

    def __init__(self, what: str, fix: str | None = None, *, usage: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix
        self.usage = usage  # the user asked for something that cannot exist (exit status 2)


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
        raise LabError(
            f"lab name {name!r} is not usable",
            "use 1-8 lowercase letters or digits, e.g. --name lab2",
            usage=True,
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


@dataclass
class LabInfo:
    """One lab on this machine as `lab list` shows it; `stale` says why it is left over."""

    name: str
    phase: str
    spec: str | None
    nodes: int
    namespaces: int
    owner: int | None
    stale: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "topology": self.spec,
            "nodes": self.nodes,
            "namespaces": self.namespaces,
            "owner_pid": self.owner,
            "stale": self.stale,
        }


def _lock_held(run_dir: Path) -> bool:
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


def lab_info(name: str, base: Path = RUN_BASE) -> LabInfo:
    """What is known about lab `name`, and whether it is stale.

    Stale means nobody will ever remove it but `lab down`: its owning process (a test run) is
    gone, the `lab up` that built it died half-way, none of its processes runs any more, or
    only namespaces are left without a state file. A lab whose lock is held is never stale.
    """
    run_dir = run_dir_of(name, base)
    namespaces = [ns for ns in netns.list_netns() if ns.startswith(ns_prefix(name))]
    try:
        data = json.loads((run_dir / "state.json").read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        data = None
    if data is None:
        young = run_dir.exists() and time.time() - run_dir.stat().st_mtime < 30
        orphan = None if young or _lock_held(run_dir) else "no state file (left by a crash)"
        return LabInfo(name, "unknown", None, 0, len(namespaces), None, orphan)
    phase = str(data.get("phase", "unknown"))
    topo = data.get("topology") or {}
    owner = data.get("owner")
    writer = data.get("writer")
    recs = [ProcRecord.from_json(v) for v in (data.get("procs") or {}).values()]
    stale: str | None = None
    if owner and not _proc_is(int(owner[0]), int(owner[1])):
        stale = f"its owner (pid {owner[0]}) is gone"
    elif phase != "up" and writer and not _proc_is(int(writer[0]), int(writer[1])):
        stale = f"the process that was building it (pid {writer[0]}) is gone"
    elif phase == "up" and recs and not any(procs.alive(r) for r in recs):
        stale = "none of its processes runs any more"
    if stale and _lock_held(run_dir):
        stale = None
    return LabInfo(
        name,
        phase,
        str(topo.get("spec")) if topo else None,
        len(topo.get("nodes", [])) if topo else 0,
        len(namespaces),
        int(owner[0]) if owner else None,
        stale,
    )


def list_lab_infos(base: Path = RUN_BASE) -> list[LabInfo]:
    return [lab_info(name, base) for name in list_labs(base)]


def reap_stale(
    match: Callable[[str], bool] = lambda _name: True,
    *,
    run_base: Path = RUN_BASE,
    echo: Echo | None = None,
) -> dict[str, str]:
    """Remove every stale lab whose name `match`es; returns name -> why it was stale."""
    reaped = {}
    for info in list_lab_infos(run_base):
        if info.stale and match(info.name):
            down_by_name(info.name, run_base=run_base, echo=echo)
            reaped[info.name] = info.stale
    return reaped


# -- topology <-> state JSON ----------------------------------------------------------------------


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


def impairment_to_json(imp: Impairment, sender: str) -> dict[str, Any]:
    return {
        "loss": imp.loss,
        "rate_bps": imp.rate_bps,
        "delay_ms": imp.delay_ms,
        "jitter_ms": imp.jitter_ms,
        "one_way": imp.one_way,
        "from": sender,
    }


@dataclass
class LinkState:
    """What was done to a link: its impairment (oriented from `sender`) and whether it is cut."""

    impairment: Impairment
    sender: str
    cut: bool = False

    @property
    def delayed(self) -> bool:
        return self.impairment.delay_ms > 0


@dataclass
class PairState:
    """What was done to one pair of a shared segment (loss oriented from `sender`)."""

    loss: float
    one_way: bool = False
    sender: str = ""
    cut: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"loss": self.loss, "one_way": self.one_way, "from": self.sender, "cut": self.cut}

    def describe(self) -> str:
        if self.loss >= OUT_OF_RANGE:
            return "out of range"
        text = f"loss {self.loss:g}%" if self.loss else "none"
        return text + (" one-way" if self.one_way and self.loss else "")


def _now() -> float:
    return time.monotonic()


OWNER_ENV = "MUTUALMESH_LAB_OWNER"


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


def _proc_is(pid: int, start_time: int) -> bool:
    """True while the process `pid` that started at `start_time` still runs."""
    return procs.pid_alive(pid) and procs.start_time(pid) == start_time


class Lab:
    """One lab: build it with `up`, change it, and remove everything with `down`."""

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
        self.topo = topology
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
        self._t0 = _now()

    # -- naming ----------------------------------------------------------------------------------

    def ns(self, node: str) -> str:
        """Namespace of a node (or of the internet namespace)."""
        return f"{self.prefix}{node}"

    @property
    def t(self) -> Topology:
        if self.topo is None:
            raise LabError(f"lab {self.name!r} has no topology", "run `mutualmesh lab up` first")
        return self.topo

    def node_names(self, with_internet: bool = False) -> list[str]:
        names = self.t.names
        if with_internet and self.t.gateways:
            names.append(INTERNET)
        return names

    def _check_node(self, node: str, allow_internet: bool = False) -> str:
        if node in self.t.names or (allow_internet and node == INTERNET and self.t.gateways):
            return node
        raise LabError(
            f"lab {self.name!r} has no node {node!r}",
            f"use one of: {', '.join(self.node_names(allow_internet))}",
            usage=True,
        )

    def segment_ifaces(self, node: str) -> dict[str, str]:
        """Shared segments `node` is on: segment name -> its interface there (e.g. `sg-s1`)."""
        self._check_node(node)
        return {seg.name: seg.iface for seg in self.t.segments_of(node)}

    def mesh_ifaces(self, node: str) -> list[str]:
        """Every mesh interface of `node` as the agent should be told (links, then segments)."""
        self._check_node(node)
        return self.t.mesh_ifaces(node)

    def segment_addr(self, segment: str, node: str) -> str:
        """IPv4 address of `node` on shared segment `segment`."""
        return self.t.segment(segment).addr(self.t.node(node))

    def _pair(self, a: str, b: str) -> Link | Segment:
        """The point-to-point link between a and b, else the shared segment they are both on."""
        self._check_node(a)
        self._check_node(b)
        try:
            return self.link(a, b)
        except LabError:
            try:
                return self.t.shared_segment(a, b)
            except KeyError:
                raise LabError(
                    f"{a} and {b} share no link and no segment",
                    f"{a} can reach directly: {', '.join(self.t.neighbours(a)) or 'nothing'}",
                    usage=True,
                ) from None

    def pair_state(self, segment: str, a: str, b: str) -> PairState:
        """Current range/loss between a and b on `segment` (what the radio rules enforce)."""
        seg = self.t.segment(segment)
        got = self.pairs.get(seg.name, {}).get(pair_key(a, b))
        return got if got is not None else PairState(seg.loss_of(a, b), False, a)

    def hears(self, segment: str, a: str, b: str) -> bool:
        """True when a and b are in range of each other on `segment` right now."""
        st = self.pair_state(segment, a, b)
        return not st.cut and st.loss < OUT_OF_RANGE

    def link(self, a: str, b: str) -> Link:
        self._check_node(a)
        self._check_node(b)
        try:
            link = self.t.link_between(a, b)
        except KeyError:
            raise LabError(
                f"there is no link between {a} and {b}",
                f"{a} is linked to: {', '.join(self.t.neighbours(a)) or 'nothing'}",
                usage=True,
            ) from None
        if link.kind != "mesh":
            raise LabError(f"{a}-{b} is an uplink, not a mesh link", usage=True)
        return link

    def addr(self, node: str) -> str:
        return INTERNET_V4 if node == INTERNET else self.t.node(node).v4

    def addr6(self, node: str) -> str:
        return INTERNET_V6 if node == INTERNET else self.t.node(node).v6

    # -- state file ------------------------------------------------------------------------------

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
            "topology": topology_to_json(self.t) if self.topo else None,
            "namespaces": self.namespaces,
            "procs": {k: r.to_json() for k, r in self.procs.items()},
            "links": {
                str(i): {**impairment_to_json(s.impairment, s.sender), "cut": s.cut}
                for i, s in self.links.items()
            },
            "timings": self.timings,
            "pairs": {
                seg: {k: st.to_json() for k, st in pairs.items()}
                for seg, pairs in self.pairs.items()
            },
            "owner": list(self.owner) if self.owner else None,
            "writer": [os.getpid(), procs.start_time(os.getpid())],
        }
        tmp = self.state_file.with_name(f".state.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, name: str, *, echo: Echo | None = None, run_base: Path = RUN_BASE) -> Lab:
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
            lab.pairs[str(seg)] = {
                str(k): PairState(
                    float(v["loss"]), bool(v["one_way"]), str(v["from"]), bool(v["cut"])
                )
                for k, v in pairs.items()
            }
        if data.get("topology"):
            lab.topo = topology_from_json(data["topology"])
        for key, s in data.get("links", {}).items():
            imp = Impairment(
                float(s["loss"]),
                int(s["rate_bps"]),
                float(s["delay_ms"]),
                bool(s["one_way"]),
                float(s.get("jitter_ms", 0.0)),
            )
            lab.links[int(key)] = LinkState(imp, str(s["from"]), bool(s["cut"]))
        return lab

    @contextlib.contextmanager
    def locked(self, wait: float = 30.0) -> Iterator[None]:
        """Serialise commands that change the same lab (a crashed holder releases it)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = _now() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if _now() > deadline:
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

    # -- progress --------------------------------------------------------------------------------

    def _step(self, what: str) -> None:
        self.echo(f"[{_now() - self._t0:6.2f}s] {what}")

    # -- up --------------------------------------------------------------------------------------

    def up(self, timeout: float = 60.0) -> None:
        """Build the whole lab and wait until it is converged; on any failure, remove it again."""
        missing = missing_requirements()
        if missing:
            raise LabError(
                "the lab cannot run here; missing: " + "; ".join(missing),
                "run it as root on Linux, e.g. `sudo .venv/bin/mutualmesh lab up`"
                " (scripts/setup installs the tools)",
            )
        topo = self.t
        if self.state_file.exists() or any(ns.startswith(self.prefix) for ns in netns.list_netns()):
            stale = lab_info(self.name, self.run_dir.parent).stale
            raise LabError(
                f"a lab called {self.name!r} already exists"
                + (f" (stale: {stale})" if stale else ""),
                f"remove it with `mutualmesh lab down --name {self.name}`, or pick --name",
            )
        self._t0 = _now()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.locked():
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _raise_interrupt)
            try:
                self.phase = "building"
                self.namespaces = [self.ns(n) for n in self.node_names(with_internet=True)]
                self.namespaces += [self.ns(seg.bridge_ns) for seg in topo.segments]
                self.save()
                self._build_network(topo)
                self._start_daemons(topo)
                self._wait_ready(topo, timeout)
                self._apply_initial_impairments(topo)
                if self.agents:
                    self._start_agents(topo)
                self.phase = "up"
                self.timings["up"] = round(_now() - self._t0, 3)
                self.save()
                self._step(f"lab {self.name!r} is up: {len(topo.nodes)} nodes converged")
            except BaseException as exc:
                self._step(f"build failed ({type(exc).__name__}: {exc}); removing what was built")
                self._teardown()
                if isinstance(exc, netns.CommandError | babel.BabelError | OSError):
                    raise LabError(
                        f"lab up failed: {exc}", "see the message above; nothing was left behind"
                    ) from exc
                raise
            finally:
                signal.signal(signal.SIGTERM, previous)

    def _build_network(self, topo: Topology) -> None:
        for name in self.node_names(with_internet=True):
            netns.add(self.ns(name))
        self._step(f"{len(self.namespaces)} namespaces created")
        veths = [
            # Distinct ifindexes on the two ends: the kernel delays carrier events by up to 1 s
            # (linkwatch) for a veth whose ifindex equals its peer's, as happens in fresh netns.
            f"link add {k.if_a} index {1000 + 2 * k.index} netns {self.ns(k.a)} type veth"
            f" peer name {k.if_b} index {1001 + 2 * k.index} netns {self.ns(k.b)}"
            for k in topo.links
        ]
        netns.batch(None, veths)
        per_ns: dict[str, list[str]] = {name: [] for name in self.node_names(with_internet=True)}
        for n in topo.nodes:
            per_ns[n.name] += [f"addr add {n.v4}/32 dev lo", f"addr add {n.v6}/128 dev lo"]
        if topo.gateways:
            per_ns[INTERNET] += [
                f"addr add {INTERNET_V4}/32 dev lo",
                f"addr add {INTERNET_V6}/128 dev lo",
            ]
        for k in topo.links:
            per_ns[k.a] += [f"addr add {k.v4_a}/{k.v4_plen} dev {k.if_a}", f"link set {k.if_a} up"]
            per_ns[k.b] += [f"addr add {k.v4_b}/{k.v4_plen} dev {k.if_b}", f"link set {k.if_b} up"]
            if k.v6_a and k.v6_b:
                per_ns[k.a].append(f"addr add {k.v6_a}/64 dev {k.if_a} nodad")
                per_ns[k.b].append(f"addr add {k.v6_b}/64 dev {k.if_b} nodad")
        for k in topo.links:
            if k.kind == "uplink" and k.v6_b:
                per_ns[k.a] += [
                    f"route add default via {k.v4_b} dev {k.if_a} proto static onlink",
                    f"route add ::/0 via {k.v6_b} dev {k.if_a} proto static onlink",
                ]
        self._build_segments(topo, per_ns)
        for name, cmds in per_ns.items():
            netns.batch(self.ns(name), cmds)
        for gw in topo.gateways:
            uplink = topo.uplink(gw)
            assert uplink is not None
            nat = (
                f"table inet {NAT_TABLE} {{\n  chain postrouting {{\n"
                "    type nat hook postrouting priority 100; policy accept;\n"
                f'    oifname "{uplink.if_a}" masquerade\n  }}\n}}\n'
            )
            netns.run(netns.nsexec(self.ns(gw), "nft", "-f", "-"), input_text=nat)
        if topo.links:
            self._step(f"{len(topo.links)} links configured")
        deadline = _now() + 10
        for name in self.node_names(with_internet=True):
            ifaces = [k.side(name)[0] for k in topo.links if name in k.ends()]
            ifaces += [seg.iface for seg in topo.segments_of(name)]
            while not netns.links_ready(self.ns(name), ifaces):
                if _now() > deadline:
                    raise LabError(f"links of {name} did not come up within 10 s")
                time.sleep(0.02)
        self._step("all links up with IPv6 link-local addresses")

    def _build_segments(self, topo: Topology, per_ns: dict[str, list[str]]) -> None:
        """Each segment: a bridge in its own namespace, one veth port per member, radio rules.

        The rules are in place before babeld starts, so out-of-range members never meet.
        """
        if not topo.segments:
            return
        for seg in topo.segments:
            ns = self.ns(seg.bridge_ns)
            netns.add(ns)
            # the bridge only switches frames: no IPv6 of its own on the ports
            netns.run(
                netns.nsexec(
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                )
            )
            netns.batch(
                ns, ["link add br0 type bridge mcast_snooping 0 stp_state 0", "link set br0 up"]
            )
        veths = []
        for seg in topo.segments:
            for m in seg.nodes:
                idx = 20000 + 2 * (seg.index * 256 + topo.node(m).index)
                veths.append(
                    f"link add {seg.iface} index {idx} netns {self.ns(m)} type veth"
                    f" peer name {seg.port(m)} index {idx + 1} netns {self.ns(seg.bridge_ns)}"
                )
        netns.batch(None, veths)
        for seg in topo.segments:
            netns.batch(
                self.ns(seg.bridge_ns),
                [
                    c
                    for m in seg.nodes
                    for c in (f"link set {seg.port(m)} master br0", f"link set {seg.port(m)} up")
                ],
            )
            self._apply_radio(seg)
            for m in seg.nodes:
                per_ns[m] += [
                    f"addr add {seg.addr(topo.node(m))}/{seg.v4_plen} dev {seg.iface}",
                    f"link set {seg.iface} up",
                ]
        n = len(topo.segments)
        self._step(f"{n} shared segment{'s' if n > 1 else ''} bridged")

    def _apply_radio(self, seg: Segment) -> None:
        """Rewrite the segment's bridge rules from its pairs' range, loss and cuts."""
        drops: dict[tuple[str, str], float] = {}
        members = seg.nodes
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                st = self.pair_state(seg.name, a, b)
                if st.cut or st.loss >= OUT_OF_RANGE:
                    forward = backward = 1.0
                elif st.loss:
                    forward, backward = impair.per_direction_loss(st.loss, st.one_way)
                    if st.sender and st.sender != a:
                        forward, backward = backward, forward
                else:
                    continue
                drops[(seg.port(a), seg.port(b))] = forward
                drops[(seg.port(b), seg.port(a))] = backward
        netns.run(
            netns.nsexec(self.ns(seg.bridge_ns), "nft", "-f", "-"),
            input_text=impair.radio_script(drops),
        )

    def _conf_path(self, node: str, what: str) -> Path:
        return self.run_dir / f"{what}-{node}.conf"

    def _log_path(self, node: str, what: str) -> Path:
        return self.run_dir / f"{what}-{node}.log"

    def _spawn(self, key: str, node: str, argv: Sequence[str], log: Path) -> ProcRecord:
        rec = procs.spawn(key, self.ns(node), argv, log)
        self.procs[key] = rec
        self.save()
        return rec

    def _start_babeld(self, topo: Topology, node: str) -> None:
        n = topo.node(node)
        conf = self._conf_path(node, "babeld")
        conf.write_text(
            babel.config(v4=n.v4, v6=n.v6, run_dir=self.run_dir, node=node, gateway=n.gateway)
        )
        (self.run_dir / f"babel-{node}.pid").unlink(missing_ok=True)
        ifaces = topo.mesh_ifaces(node)  # segments too: `default type wireless` covers them
        state = self.links
        for k in topo.mesh_links(node):
            if k.index in state and state[k.index].delayed:
                ifaces.append(k.side(node)[1])
        self._spawn(
            f"{node}/babeld", node, babel.argv(conf, ifaces), self._log_path(node, "babeld")
        )

    def _start_mosquitto(self, node: str) -> None:
        conf = self._conf_path(node, "mosquitto")
        log = self._log_path(node, "mosquitto")
        conf.write_text(broker.config(node=node, log_file=log))
        self._spawn(f"{node}/mosquitto", node, broker.argv(conf), log)

    def _start_daemons(self, topo: Topology) -> None:
        for n in topo.nodes:
            self._start_babeld(topo, n.name)
            self._start_mosquitto(n.name)
        if topo.gateways:
            self._spawn(
                f"{INTERNET}/sink",
                INTERNET,
                ["iperf3", "-s", "-p", str(SINK_PORT)],
                self._log_path(INTERNET, "sink"),
            )
        self._step(f"babeld and mosquitto started in {len(topo.nodes)} nodes")

    def _dead_daemons(self) -> list[str]:
        return [k for k, r in self.procs.items() if not procs.alive(r)]

    def _raise_if_dead(self) -> None:
        dead = self._dead_daemons()
        if dead:
            rec = self.procs[dead[0]]
            raise LabError(
                f"{', '.join(dead)} exited; last log lines of {rec.name}:\n"
                + procs.log_tail(rec.log)
            )

    def _wait_ready(self, topo: Topology, timeout: float) -> None:
        deadline = _now() + timeout
        pending = set(topo.names)
        while pending:
            self._raise_if_dead()
            pending = {
                n
                for n in pending
                if not netns.tcp_accepts(self.ns(n), topo.node(n).v4, broker.BROKER_PORT, 0.2)
            }
            if pending and _now() > deadline:
                raise LabError(f"brokers of {', '.join(sorted(pending))} do not accept TCP")
            if pending:
                time.sleep(0.05)
        self._step("all brokers accept connections")
        missing = self.wait_converged(deadline - _now())
        self.timings["converged"] = round(_now() - self._t0, 3)
        if missing:
            raise LabError("routes did not converge: " + "; ".join(missing[:5]))
        self._step("routes converged between all pairs of nodes")

    # -- convergence -----------------------------------------------------------------------------

    def dumps(self) -> dict[str, babel.Dump | None]:
        out: dict[str, babel.Dump | None] = {}
        for n in self.t.names:
            try:
                out[n] = babel.dump(self.ns(n))
            except (babel.BabelError, OSError):
                out[n] = None
        return out

    def missing_routes(self, dumps: dict[str, babel.Dump | None] | None = None) -> list[str]:
        """What keeps the lab from being converged (empty when every pair has routes both ways)."""
        topo = self.t
        dumps = dumps if dumps is not None else self.dumps()
        missing: list[str] = []
        for n in topo.nodes:
            d = dumps.get(n.name)
            if d is None:
                missing.append(f"{n.name}: babeld does not answer")
                continue
            have = d.installed()
            wanted = [f"{m.v4}/32" for m in topo.nodes if m is not n]
            wanted += [f"{m.v6}/128" for m in topo.nodes if m is not n]
            if topo.gateways and not n.gateway:
                wanted += ["0.0.0.0/0", "::/0"]
            lacking = [w for w in wanted if w not in have]
            if lacking:
                missing.append(f"{n.name} lacks {', '.join(lacking[:4])}")
        return missing

    def wait_converged(self, timeout: float = 30.0) -> list[str]:
        """Poll babeld until all pairs have routes; returns what was still missing at timeout."""
        deadline = _now() + timeout
        while True:
            missing = self.missing_routes()
            if not missing or _now() > deadline:
                return missing
            time.sleep(0.1)

    def wait_neighbours(self, a: str, b: str, timeout: float = 20.0) -> bool:
        """Poll until `a` and `b` see each other as usable babel neighbours on their link.

        On a shared segment the neighbour is told apart by the peer's link-local address.
        """
        pair = self._pair(a, b)
        deadline = _now() + timeout
        while True:
            ok = True
            for node in (a, b):
                if isinstance(pair, Segment):
                    iface = pair.iface
                    peer_ll = self.link_local(a if node == b else b, iface)
                else:
                    iface = self._active_iface(pair, node)
                    peer_ll = None
                try:
                    d = babel.dump(self.ns(node))
                except (babel.BabelError, OSError):
                    ok = False
                    break
                if not any(
                    nb.iface == iface and nb.cost < 65535 and peer_ll in (None, nb.address)
                    for nb in d.neighbours
                ):
                    ok = False
                    break
            if ok:
                return True
            if _now() > deadline:
                return False
            time.sleep(0.1)

    def link_local(self, node: str, iface: str) -> str | None:
        """The IPv6 link-local address of `iface` in `node` (what babeld knows a neighbour by)."""
        for entry in netns.ip_json(self.ns(node), "addr", "show", "dev", iface):
            for a in entry.get("addr_info", []):
                if a.get("family") == "inet6" and str(a.get("local", "")).startswith("fe80:"):
                    return str(a["local"])
        return None

    # -- initial impairments and agents ----------------------------------------------------------

    def _apply_initial_impairments(self, topo: Topology) -> None:
        """Apply impairments a YAML topology sets (the topology from state has none)."""
        count = 0
        for k in topo.links:
            imp: LinkImpairment = k.impairment
            if k.kind == "mesh" and not imp.empty:
                self._impair_link(
                    k,
                    k.a,
                    Impairment(
                        impair.check_loss(imp.loss),
                        impair.parse_rate(imp.rate) if imp.rate else 0,
                        impair.check_delay(imp.delay_ms),
                        imp.one_way,
                        impair.check_jitter(imp.jitter_ms, imp.delay_ms),
                    ),
                )
                count += 1
        if count:
            self._step(f"impairments from the topology applied to {count} links")

    def _start_agents(self, topo: Topology) -> None:
        if not agent.meshd_path().exists():
            raise LabError(
                f"agents were asked for but {agent.meshd_path()} does not exist",
                "run scripts/setup, or use `lab up --no-agents`",
            )
        agent.provision_identities(topo, self.run_dir)
        for n in topo.nodes:
            self.start_agent(n.name)
        self._step(f"meshd started in {len(topo.nodes)} nodes")
        self.wait_agents_ready(timeout=self.agent_timeout)

    def agents_missing(self, nodes: Sequence[str] | None = None) -> dict[str, list[str]]:
        """node -> mesh neighbours its agent has not (yet) discovered; a node is absent when done.

        A node whose agent does not answer at all lists every neighbour. Read from each agent's
        live `/status` (HTTP), falling back to its status file.
        """
        topo = self.t
        ids = agent.node_ids(topo, self.run_dir)
        port = agent.metrics_port(self.agent_args)
        missing: dict[str, list[str]] = {}
        for node in nodes if nodes is not None else topo.names:
            files = agent.AgentFiles.of(self.run_dir, node)
            status = agent.read_status(self.ns(node), files.status, port)
            seen = agent.neighbours_up(status)
            cut = {i for i, st in self.links.items() if st.cut}
            wanted = [k.peer(node) for k in topo.mesh_links(node) if k.index not in cut]
            for seg in topo.segments_of(node):
                wanted += [
                    m
                    for m in seg.nodes
                    if m != node and m not in wanted and self.hears(seg.name, node, m)
                ]
            lacking = [peer for peer in wanted if ids[peer] not in seen]
            if lacking:
                missing[node] = lacking
        return missing

    def wait_agents_ready(self, timeout: float = 60.0, nodes: Sequence[str] | None = None) -> float:
        """Wait until every agent has discovered all its mesh neighbours; return the seconds taken.

        Traffic sent before that is not attributed to a neighbour, so the lab hands over a mesh
        only when every agent sees its whole neighbourhood. Progress goes to `echo`.
        """
        t0 = _now()
        total = len(nodes) if nodes is not None else len(self.t.nodes)
        last = -1
        while True:
            self._raise_if_dead()
            missing = self.agents_missing(nodes)
            ready = total - len(missing)
            if not missing:
                took = _now() - t0
                self.timings["agents_ready"] = round(took, 3)
                self._step(f"all {total} agents see all their mesh neighbours ({took:.1f}s)")
                return took
            if ready != last:
                names = sorted(missing)
                waiting = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
                self._step(
                    f"agents that see all their neighbours: {ready}/{total} (not: {waiting})"
                )
                last = ready
            if _now() - t0 > timeout:
                node = next(iter(missing))
                rec = self.procs.get(f"{node}/agent")
                tail = procs.log_tail(rec.log, 8) if rec else ""
                raise LabError(
                    f"agents did not discover their neighbours within {timeout:.0f} s: "
                    + "; ".join(f"{n} lacks {', '.join(m)}" for n, m in missing.items())
                    + (f"\nlast log lines of {node}'s agent:\n{tail}" if tail else ""),
                    "look at the agent logs in " + str(self.run_dir) + ", or use --no-agents",
                )
            time.sleep(0.2)

    def start_agent(self, node: str, extra_args: Sequence[str] | None = None) -> ProcRecord:
        """Run the node agent inside `node`'s namespace.

        Flags come from `agent.agent_argv`, then the lab's `agent_args`, then `extra_args`
        (argparse lets a later flag win, so tests can override timers per node).
        """
        argv = [*self.agent_argv(node), *self.agent_args, *(extra_args or ())]
        return self._spawn(f"{node}/agent", node, argv, self._log_path(node, "agent"))

    def agent_argv(self, node: str) -> list[str]:
        return agent.agent_argv(self.t, self.run_dir, node)

    # -- down ------------------------------------------------------------------------------------

    def down(self) -> list[str]:
        """Remove every process, namespace and file of this lab; safe to call any number of times.

        Returns the namespaces that were deleted.
        """
        with self.locked(wait=3.0):
            return self._teardown()

    def _teardown(self) -> list[str]:
        t0 = _now()
        # 1. the processes we recorded (only if they are still ours: pid + start time match)
        procs.stop(self.procs.values(), grace=1.0)
        # 2. anything else still living in our namespaces (e.g. started before it was recorded)
        ours = sorted(
            set(self.namespaces) | {ns for ns in netns.list_netns() if ns.startswith(self.prefix)}
        )
        stray = [pid for ns in ours for pid in netns.pids(ns)]
        if stray:
            procs.stop_pids(stray, grace=0.5)
        # 3. the namespaces; veths, TAPs and nftables tables inside them go with them
        for ns in ours:
            netns.delete(ns)
        left = [ns for ns in netns.list_netns() if ns.startswith(self.prefix)]
        if left:
            raise LabError(f"namespaces could not be deleted: {', '.join(left)}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.procs.clear()
        self.namespaces = []
        self.phase = "down"
        self.timings["down"] = round(_now() - t0, 3)
        return ours

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Nodes, their processes and routes, and the links with their impairments and costs."""
        topo = self.t
        dumps = self.dumps()
        nodes = []
        for n in topo.nodes:
            d = dumps.get(n.name)
            installed = d.installed() if d else {}
            others = [m for m in topo.nodes if m is not n]
            nodes.append(
                {
                    "node": n.name,
                    "namespace": self.ns(n.name),
                    "v4": n.v4,
                    "v6": n.v6,
                    "gateway": n.gateway,
                    "processes": {
                        key.split("/", 1)[1]: procs.alive(r)
                        for key, r in self.procs.items()
                        if key.startswith(f"{n.name}/")
                    },
                    "neighbours": len([nb for nb in d.neighbours if nb.cost < 65535]) if d else 0,
                    "routes": sum(1 for m in others if f"{m.v4}/32" in installed),
                    "routes_expected": len(others),
                    "default_route": "0.0.0.0/0" in installed or n.gateway,
                }
            )
        links = []
        for k in topo.mesh_links():
            state = self.links.get(k.index)
            costs = {}
            for node in k.ends():
                d = dumps.get(node)
                iface = self._active_iface(k, node)
                nb = [x for x in d.neighbours if x.iface == iface] if d else []
                costs[node] = nb[0].cost if nb else None
            links.append(
                {
                    "link": f"{k.a}-{k.b}",
                    "ifaces": [k.if_a, k.if_b],
                    "cut": bool(state and state.cut),
                    "impairment": state.impairment.describe() if state else "none",
                    "from": state.sender if state else None,
                    "cost": costs,
                }
            )
        segments = []
        for seg in topo.segments:
            pairs = {}
            for i, x in enumerate(seg.nodes):
                for y in seg.nodes[i + 1 :]:
                    st = self.pair_state(seg.name, x, y)
                    if st.cut or st.loss:
                        desc = "CUT" if st.cut else st.describe()
                        pairs[pair_key(x, y)] = desc + (
                            f" (from {st.sender})" if st.one_way and not st.cut else ""
                        )
            segments.append(
                {
                    "segment": seg.name,
                    "namespace": self.ns(seg.bridge_ns),
                    "iface": seg.iface,
                    "nodes": list(seg.nodes),
                    "pairs": pairs,
                }
            )
        return {
            "name": self.name,
            "phase": self.phase,
            "topology": topo.spec,
            "agents": self.agents,
            "nodes": nodes,
            "links": links,
            "segments": segments,
            "missing_routes": self.missing_routes(dumps),
            "internet": {
                "namespace": self.ns(INTERNET),
                "v4": INTERNET_V4,
                "sink": procs.alive(self.procs[f"{INTERNET}/sink"]),
            }
            if f"{INTERNET}/sink" in self.procs
            else None,
        }

    # -- impairment ------------------------------------------------------------------------------

    def _active_iface(self, link: Link, node: str) -> str:
        state = self.links.get(link.index)
        iface, tap, _ = link.side(node)
        return tap if state is not None and state.delayed else iface

    def impair(
        self,
        a: str,
        b: str,
        *,
        loss: float | None = None,
        rate: str | None = None,
        delay_ms: float | None = None,
        one_way: bool = False,
        jitter_ms: float | None = None,
    ) -> Impairment:
        """Set loss / rate / delay / jitter on link a-b (unset values keep what was there).

        Jitter is +-ms around the delay (the relay keeps frames in order); delay 0 drops it.

        For two nodes on a shared segment (and no link), only loss applies: the segment's radio
        rules drop that share of the frames between the two (100 = out of range).
        """
        self.require_up()
        pair = self._pair(a, b)
        if isinstance(pair, Segment):
            if rate is not None or delay_ms is not None or jitter_ms is not None:
                raise LabError(
                    f"{a}-{b} is a pair on shared segment {pair.name}: only --loss applies there",
                    "give --loss PCT (100 = out of range)",
                    usage=True,
                )
            if loss is None:
                raise LabError("nothing to do", "give --loss PCT", usage=True)
            self._impair_pair(pair, a, b, loss, one_way)
            return Impairment(loss, 0, 0.0, one_way)
        link = pair
        old = self.links.get(link.index)
        base = old.impairment if old else Impairment()
        if old and old.sender != a and old.impairment.one_way and not one_way:
            base = Impairment()
        delay = impair.check_delay(delay_ms) if delay_ms is not None else base.delay_ms
        jitter = jitter_ms if jitter_ms is not None else (base.jitter_ms if delay else 0.0)
        new = Impairment(
            impair.check_loss(loss) if loss is not None else base.loss,
            impair.parse_rate(rate) if rate is not None else base.rate_bps,
            delay,
            one_way,
            impair.check_jitter(jitter, delay),
        )
        with self.locked():
            self._impair_link(link, a, new)
        return new

    def heal(self, a: str, b: str) -> None:
        """Remove every impairment from link a-b (a cut stays cut).

        Returns once the link carries traffic again (routes present, a ping across it answers).
        """
        self.require_up()
        pair = self._pair(a, b)
        if isinstance(pair, Segment):
            self._heal_pair(pair, a, b)
            return
        link = pair
        with self.locked():
            self._impair_link(link, a, Impairment())
            if not self.links.get(link.index, LinkState(Impairment(), a)).cut:
                self._wait_link_usable(link)

    def _impair_pair(self, seg: Segment, a: str, b: str, loss: float, one_way: bool) -> None:
        if not 0 <= loss <= OUT_OF_RANGE:
            raise LabError(f"loss {loss}: must be a percentage in [0, 100]", usage=True)
        with self.locked():
            old = self.pair_state(seg.name, a, b)
            self.pairs.setdefault(seg.name, {})[pair_key(a, b)] = PairState(
                loss, one_way and loss < OUT_OF_RANGE, a, old.cut
            )
            self.save()
            self._apply_radio(seg)

    def _heal_pair(self, seg: Segment, a: str, b: str) -> None:
        """Back to perfect range between a and b (a cut pair stays cut)."""
        with self.locked():
            cut = self.pair_state(seg.name, a, b).cut
            self.pairs.setdefault(seg.name, {})[pair_key(a, b)] = PairState(0.0, False, a, cut)
            self.save()
            self._apply_radio(seg)
            if not cut:
                self._wait_pair_usable(seg, a, b)

    def _pair_problems(self, seg: Segment, a: str, b: str) -> list[str]:
        problems = []
        for x, y in ((a, b), (b, a)):
            dst = seg.addr(self.t.node(y))
            argv = netns.nsexec(self.ns(x), "ping", "-n", "-q", "-c", "1", "-W", "1", dst)
            if netns.run(argv, check=False).returncode != 0:
                problems.append(f"{x} gets no ping reply from {y} ({dst}) on {seg.iface}")
        return problems

    def _wait_pair_usable(self, seg: Segment, a: str, b: str, timeout: float = 20.0) -> None:
        """Poll until a and b answer each other's pings across the segment."""
        deadline = _now() + timeout
        while True:
            problems = self._pair_problems(seg, a, b)
            if not problems:
                return
            if _now() > deadline:
                raise LabError(
                    f"{a}-{b} on {seg.name} does not carry traffic: " + "; ".join(problems)
                )
            time.sleep(0.05)

    def _impair_link(self, link: Link, sender: str, new: Impairment) -> None:
        old = self.links.get(link.index)
        cut = bool(old and old.cut)
        was_delayed = bool(old and old.delayed)
        if new.empty and not cut:
            self.links.pop(link.index, None)
        else:
            self.links[link.index] = LinkState(new, sender, cut)
        self.save()
        if new.delay_ms > 0 and not was_delayed:
            self._start_relay(link, sender, new, cut)
        elif new.delay_ms > 0:
            self._write_relay_params(link, sender, new)
            rec = self.procs.get(self._relay_key(link))
            if rec is not None:
                procs.send(rec, signal.SIGUSR1)
        elif was_delayed:
            self._stop_relay(link, cut)
        for node in link.ends():
            self._apply_nft(node)
        self._apply_rate(link)
        self.save()
        if (new.delay_ms > 0) != was_delayed and not cut:
            # a ping must answer within its 1 s timeout (not over a very lossy or long link)
            self._wait_link_usable(link, ping=new.loss < 50 and new.delay_ms < 400)
            self._settle(link)

    def _settle(self, link: Link, timeout: float = 30.0, stable_for: float = 1.5) -> None:
        """After the link moved between veth and TAP: wait until babeld routes over it again.

        Both ends must route to each other over the link's active interface and every pair must
        have routes, continuously for `stable_for` seconds (three hellos): right after the switch
        a route can still be installed that a retraction is about to remove.
        """
        deadline = _now() + timeout
        stable_since: float | None = None
        while True:
            dumps = self.dumps()
            ok = not self.missing_routes(dumps)
            for node in link.ends():
                d = dumps.get(node)
                peer = self.t.node(link.peer(node))
                route = d.installed().get(f"{peer.v4}/32") if d else None
                ok = ok and route is not None and route.iface == self._active_iface(link, node)
            now = _now()
            if ok:
                stable_since = stable_since if stable_since is not None else now
                if now - stable_since >= stable_for:
                    return
            else:
                stable_since = None
            if now > deadline:
                raise LabError(
                    f"babeld does not route over {link.a}-{link.b} steadily after {timeout:.0f} s"
                )
            time.sleep(0.1)

    def link_usable(self, a: str, b: str, *, ping: bool = True) -> list[str]:
        """Why link a-b cannot carry traffic right now (empty when it can).

        Each end must have a route to the peer's link address over the link's active interface
        (the connected route), and with `ping` a ping across the link must answer both ways.
        """
        pair = self._pair(a, b)
        if isinstance(pair, Segment):
            return self._pair_problems(pair, a, b) if ping else []
        return self._link_problems(pair, ping=ping)

    def _link_problems(self, link: Link, *, ping: bool = True) -> list[str]:
        problems = []
        for node in link.ends():
            peer_addr = link.side(link.peer(node))[2]
            iface = self._active_iface(link, node)
            got = netns.ip_json(self.ns(node), "route", "get", peer_addr)
            dev = str(got[0].get("dev", "")) if got else ""
            if dev != iface:
                problems.append(f"{node} has no route to {peer_addr} on {iface} ({dev or 'none'})")
            elif ping:
                argv = netns.nsexec(self.ns(node), "ping", "-n", "-q", "-c", "1", "-W", "1")
                if netns.run([*argv, peer_addr], check=False).returncode != 0:
                    problems.append(f"{node} gets no ping reply from {peer_addr} over {iface}")
        return problems

    def _repair_connected(self, link: Link) -> None:
        """Re-add a link address whose connected routes the kernel dropped (it re-creates them)."""
        for node in link.ends():
            iface = self._active_iface(link, node)
            v4 = link.side(node)[2]
            peer_addr = link.side(link.peer(node))[2]
            got = netns.ip_json(self.ns(node), "route", "get", peer_addr)
            if got and got[0].get("dev") == iface:
                continue
            ns = self.ns(node)
            netns.run(
                ["ip", "-n", ns, "addr", "del", f"{v4}/{link.v4_plen}", "dev", iface], check=False
            )
            netns.run(
                ["ip", "-n", ns, "addr", "add", f"{v4}/{link.v4_plen}", "dev", iface], check=False
            )

    def _wait_link_usable(self, link: Link, timeout: float = 20.0, *, ping: bool = True) -> None:
        """Poll until the link carries traffic both ways; repair missing connected routes.

        Callers (and users) must never see the moment right after a change when the link's
        addresses or connected routes are not back yet.
        """
        t0 = _now()
        repaired = False
        while True:
            problems = self._link_problems(link, ping=ping)
            if not problems:
                return
            waited = _now() - t0
            if not repaired and waited > 2.0 and any("no route" in p for p in problems):
                self._repair_connected(link)
                repaired = True
            if waited > timeout:
                raise LabError(
                    f"link {link.a}-{link.b} does not carry traffic after {timeout:.0f} s: "
                    + "; ".join(problems)
                )
            time.sleep(0.05)

    def _relay_key(self, link: Link) -> str:
        return f"link/{link.a}-{link.b}/relay"

    def _relay_params_path(self, link: Link) -> Path:
        return self.run_dir / f"relay-{link.a}-{link.b}.json"

    def _write_relay_params(self, link: Link, sender: str, imp: Impairment) -> None:
        params = impair.relay_params(imp.delay_ms, imp.one_way, imp.jitter_ms)
        if sender != link.a:  # the params are written from a's point of view
            params = {"a_to_b": params["b_to_a"], "b_to_a": params["a_to_b"]}
        self._relay_params_path(link).write_text(json.dumps(params))

    def _start_relay(self, link: Link, sender: str, imp: Impairment, cut: bool) -> None:
        """Move the link onto a TAP pair joined by the delay relay (the veth goes down)."""
        self._write_relay_params(link, sender, imp)
        ns_a, ns_b = self.ns(link.a), self.ns(link.b)
        argv = [
            sys.executable, "-m", "cli.lab.relay",
            "--a", f"{ns_a}:{link.tap_a}", "--b", f"{ns_b}:{link.tap_b}",
            "--params", str(self._relay_params_path(link)),
        ]  # fmt: skip
        key = self._relay_key(link)
        rec = self._spawn(key, link.a, argv, self.run_dir / f"relay-{link.a}-{link.b}.log")
        deadline = _now() + 10
        while not (netns.iface_exists(ns_a, link.tap_a) and netns.iface_exists(ns_b, link.tap_b)):
            if not procs.alive(rec):
                raise LabError("the delay relay exited:\n" + procs.log_tail(rec.log))
            if _now() > deadline:
                raise LabError("the delay relay did not create its TAP devices within 10 s")
            time.sleep(0.02)
        state = "down" if cut else "up"
        for node, ns in ((link.a, ns_a), (link.b, ns_b)):
            iface, tap, v4 = link.side(node)
            netns.batch(
                ns,
                [
                    f"link set {iface} down",
                    f"addr add {v4}/{link.v4_plen} dev {tap}",
                    f"link set {tap} {state}",
                ],
            )
            babel.request(ns, babel.runtime_interface(tap))

    def _stop_relay(self, link: Link, cut: bool) -> None:
        """Back from the TAP pair to the veth.

        The TAPs carry the same IPv4 addresses as the veths. When the kernel removes such an
        address (the TAP vanishing with the relay) it also flushes every route whose source is
        that address, including the veth's connected route if the veth is already up. So the
        TAPs lose their addresses and are gone before the veths come back up.
        """
        for node in link.ends():
            tap = link.side(node)[1]
            with contextlib.suppress(babel.BabelError, OSError):
                babel.request(self.ns(node), f"flush interface {tap}")
            netns.run(["ip", "-n", self.ns(node), "-4", "addr", "flush", "dev", tap], check=False)
        rec = self.procs.pop(self._relay_key(link), None)
        if rec is not None:
            procs.stop([rec])
        self._relay_params_path(link).unlink(missing_ok=True)
        deadline = _now() + 10
        while any(netns.iface_exists(self.ns(node), link.side(node)[1]) for node in link.ends()):
            if _now() > deadline:
                raise LabError(f"the TAP devices of {link.a}-{link.b} did not go away in 10 s")
            time.sleep(0.02)
        for node in link.ends():
            if not cut:
                netns.run(["ip", "-n", self.ns(node), "link", "set", link.side(node)[0], "up"])

    def _apply_nft(self, node: str) -> None:
        """Rebuild `node`'s loss table from the state of all its links."""
        drops: dict[str, float] = {}
        for k in self.t.mesh_links(node):
            s = self.links.get(k.index)
            if s is None or not s.impairment.loss:
                continue
            forward, backward = impair.per_direction_loss(s.impairment.loss, s.impairment.one_way)
            receiver_prob = forward if node != s.sender else backward
            if receiver_prob > 0:
                drops[self._active_iface(k, node)] = receiver_prob
        netns.run(
            netns.nsexec(self.ns(node), "nft", "-f", "-"), input_text=impair.nft_script(drops)
        )

    def _apply_rate(self, link: Link) -> None:
        s = self.links.get(link.index)
        for node in link.ends():
            iface, tap, _ = link.side(node)
            ns = self.ns(node)
            active = self._active_iface(link, node)
            shaped = (
                s is not None
                and s.impairment.rate_bps > 0
                and (not s.impairment.one_way or node == s.sender)
            )
            for dev in (iface, tap):
                if dev == active and shaped and s is not None:
                    netns.run(netns.nsexec(ns, *impair.tbf_argv(dev, s.impairment.rate_bps)))
                elif netns.iface_exists(ns, dev):
                    netns.run(netns.nsexec(ns, *impair.tbf_clear_argv(dev)), check=False)

    # -- cut / restore ---------------------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        """Take link a-b down at both ends (as if the radio path were blocked).

        On a shared segment the pair stops hearing each other; both still hear the others.
        """
        self.require_up()
        pair = self._pair(a, b)
        if isinstance(pair, Segment):
            with self.locked():
                st = self.pair_state(pair.name, a, b)
                st.cut = True
                self.pairs.setdefault(pair.name, {})[pair_key(a, b)] = st
                self.save()
                self._apply_radio(pair)
            return
        link = pair
        with self.locked():
            s = self.links.get(link.index) or LinkState(Impairment(), a)
            s.cut = True
            self.links[link.index] = s
            self.save()
            for node in link.ends():
                self._set_link(link, node, "down")

    def _set_link(self, link: Link, node: str, state: str) -> None:
        iface = self._active_iface(link, node)
        netns.run(["ip", "-n", self.ns(node), "link", "set", iface, state])

    def restore(self, a: str, b: str, wait: bool = True) -> bool:
        """Bring a cut link back up; with `wait`, until babeld uses it again."""
        self.require_up()
        pair = self._pair(a, b)
        if isinstance(pair, Segment):
            with self.locked():
                st = self.pair_state(pair.name, a, b)
                st.cut = False
                self.pairs.setdefault(pair.name, {})[pair_key(a, b)] = st
                self.save()
                self._apply_radio(pair)
                if wait and st.loss < 50:
                    self._wait_pair_usable(pair, a, b)
            return self.wait_neighbours(a, b) if wait else True
        link = pair
        with self.locked():
            s = self.links.get(link.index)
            if s is not None:
                s.cut = False
                if s.impairment.empty:
                    self.links.pop(link.index)
            self.save()
            for node in link.ends():
                self._set_link(link, node, "up")
            if wait:
                imp = s.impairment if s is not None else Impairment()
                self._wait_link_usable(link, ping=imp.loss < 50)
        return self.wait_neighbours(a, b) if wait else True

    # -- exec, ping, traffic ---------------------------------------------------------------------

    def exec(self, node: str, argv: Sequence[str]) -> int:
        """Run a command inside a node (or the internet) with this terminal; return its status."""
        self._check_node(node, allow_internet=True)
        if not argv:
            raise LabError(
                "no command given", f"e.g. `mutualmesh lab exec {node} -- ip route`", usage=True
            )
        try:
            return subprocess.run(netns.nsexec(self.ns(node), *argv), check=False).returncode
        except FileNotFoundError as exc:
            raise LabError(f"cannot run {argv[0]}: {exc}") from exc

    def popen(self, node: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a command inside a node with its output captured (for parallel measurements)."""
        self._check_node(node, allow_internet=True)
        return subprocess.Popen(
            netns.nsexec(self.ns(node), *argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def ping_argv(self, dst: str, count: int, interval: float) -> list[str]:
        return ["ping", "-q", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", dst]

    def ping(self, node: str, dst: str, count: int = 5, interval: float = 0.2) -> PingResult:
        """Ping an address from inside a node and return loss and RTTs."""
        p = self.popen(node, self.ping_argv(dst, count, interval))
        out, _ = p.communicate(timeout=count * interval + 30)
        return parse_ping(out)

    def traffic(self, a: str, b: str, seconds: float = 3.0, *, omit: int = 0) -> TrafficResult:
        """Real TCP traffic from node a to node b (or `internet`) with iperf3."""
        self._check_node(a)
        self._check_node(b, allow_internet=True)
        if a == b:
            raise LabError("traffic needs two different nodes", usage=True)
        if not 0 < seconds <= 3600:
            raise LabError("--seconds must be between 0 and 3600", usage=True)
        server: subprocess.Popen[str] | None = None
        port = SINK_PORT
        if b != INTERNET:
            port = 20000 + (os.getpid() + int(time.time() * 1000)) % 20000
            server = self.popen(b, ["iperf3", "-s", "-1", "-p", str(port)])
            deadline = _now() + 10
            while not netns.listening(self.ns(b), port):
                if server.poll() is not None or _now() > deadline:
                    out = server.communicate()[0] if server.poll() is not None else ""
                    server.kill()
                    raise LabError(f"iperf3 server in {b} did not start: {out.strip()}")
                time.sleep(0.02)
        try:
            argv = [
                "iperf3", "-c", self.addr(b), "-B", self.addr(a), "-p", str(port),
                "-t", f"{seconds:g}", "-J", "--connect-timeout", "5000",
            ]  # fmt: skip
            if omit:
                argv += ["-O", str(omit)]
            client = self.popen(a, argv)
            out, _ = client.communicate(timeout=seconds + omit + 30)
            try:
                return parse_iperf3(out)
            except ValueError as exc:
                raise LabError(f"traffic {a} -> {b} failed: {exc}") from None
        finally:
            if server is not None:
                if server.poll() is None:
                    server.kill()
                server.communicate()

    def _addr_owner(self) -> dict[str, str]:
        """Link-side IPv4 address -> the node (or `internet`) it belongs to."""
        owner: dict[str, str] = {}
        for k in self.t.links:
            owner[k.v4_a] = k.a
            owner[k.v4_b] = k.b
        for seg in self.t.segments:
            for m in seg.nodes:
                owner[seg.addr(self.t.node(m))] = m
        return owner

    def _iface_peer(self, node: str, dev: str) -> str | None:
        for k in self.t.links:
            if node in k.ends() and dev in k.side(node)[:2]:
                return k.peer(node)
        return None

    def path(self, a: str, b: str, max_hops: int = 64) -> list[str]:
        """The nodes traffic from `a` to `b` (or `internet`) crosses right now, as routed.

        Follows the kernel's route at each hop (`ip route get`); an unroutable hop ends the list
        with "?".
        """
        self._check_node(a)
        self._check_node(b, allow_internet=True)
        dst = self.addr(b)
        owner = self._addr_owner()
        hops = [a]
        while hops[-1] != b and len(hops) <= max_hops:
            here = hops[-1]
            got = netns.ip_json(self.ns(here), "route", "get", dst)
            entry = got[0] if got else {}
            gw = entry.get("gateway")
            nxt = owner.get(str(gw)) if gw else self._iface_peer(here, str(entry.get("dev", "")))
            if nxt is None or nxt in hops:
                hops.append("?")
                break
            hops.append(nxt)
        return hops

    # -- kill / start ----------------------------------------------------------------------------

    def node_procs(self, node: str) -> dict[str, ProcRecord]:
        return {k.split("/", 1)[1]: r for k, r in self.procs.items() if k.startswith(f"{node}/")}

    def kill(self, node: str, what: str = "agent") -> list[str]:
        """Stop processes of a node (`agent`, `babeld`, `mosquitto` or `all`), as a crash would."""
        self.require_up()
        self._check_node(node)
        if what not in ("agent", "babeld", "mosquitto", "all"):
            raise LabError(
                f"--what {what!r} unknown", "use agent, babeld, mosquitto or all", usage=True
            )
        mine = self.node_procs(node)
        if what == "agent" and "agent" not in mine:
            raise LabError(
                f"{node} runs no agent in this lab",
                "start the lab with --agents, or use --what all",
            )
        targets = [r for k, r in mine.items() if what in ("all", k)]
        stopped = [r.name for r in targets if procs.alive(r)]
        with self.locked():
            procs.stop_pids([r.pid for r in targets if procs.alive(r)], grace=0.0)
        return stopped

    def start(self, node: str) -> list[str]:
        """Start whatever of a node's processes is not running (after `kill`)."""
        self.require_up()
        self._check_node(node)
        topo = self.t
        started = []
        with self.locked():
            mine = self.node_procs(node)

            def down(what: str) -> bool:
                return what not in mine or not procs.alive(mine[what])

            if down("babeld"):
                self._start_babeld(topo, node)
                started.append("babeld")
            if down("mosquitto"):
                self._start_mosquitto(node)
                started.append("mosquitto")
            if self.agents and down("agent"):
                self.start_agent(node)
                started.append("agent")
        if "agent" in started:
            self.wait_agents_ready(self.agent_timeout, nodes=[node])
        return started


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def down_by_name(name: str, *, run_base: Path = RUN_BASE, echo: Echo | None = None) -> list[str]:
    """`lab down` for a lab that may be half-built, crashed or already gone (idempotent)."""
    missing = missing_requirements()
    if missing and os.geteuid() != 0:
        raise LabError(
            "lab down needs root (it deletes network namespaces)",
            f"run `sudo .venv/bin/mutualmesh lab down --name {name}`",
        )
    try:
        lab = Lab.load(name, echo=echo, run_base=run_base)
    except LabError:
        lab = Lab(name, None, agents=False, echo=echo, run_base=run_base)
    return lab.down()
