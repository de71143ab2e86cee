"""The lab: a real mesh of network namespaces on this machine, and everything done to it.

Every node is a namespace `mm<lab>-<node>` running a real babeld and a real mosquitto (and the
node agent when asked). `Lab` is the facade; each layer lives in its own module and builds on
the one before it:

- `cli.lab.state`     names, `LabError`, the state file (JSON round trip) and its lock;
- `cli.lab.build`     namespaces, veths, shared segments, NAT, teardown;
- `cli.lab.daemons`   babeld, mosquitto, agents: start, kill, crash, restart;
- `cli.lab.checks`    convergence, link and agent waits (conditions with deadlines);
- `cli.lab.shaping`   impairments through one dispatch, cut and restore;
- `cli.lab.measure`   exec, ping, iperf3 traffic, the routed path.

This module adds only what spans them: `up`, `start`, `status`, and removing labs by name.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.lab import babel, netns, procs
from cli.lab.inventory import LabInfo, lab_info, list_lab_infos
from cli.lab.measure import LabMeasure
from cli.lab.state import (
    OWNER_ENV,
    RUN_BASE,
    Echo,
    LabError,
    check_name,
    missing_requirements,
    now,
    ns_prefix,
    owner_from_env,
    run_dir_of,
    topology_from_json,
    topology_to_json,
)
from cli.lab.topology import INTERNET, INTERNET_V4, pair_key

__all__ = [
    "OWNER_ENV",
    "RUN_BASE",
    "Lab",
    "LabError",
    "LabInfo",
    "check_name",
    "down_by_name",
    "lab_info",
    "list_lab_infos",
    "missing_requirements",
    "ns_prefix",
    "owner_from_env",
    "reap_stale",
    "run_dir_of",
    "topology_from_json",
    "topology_to_json",
]


class Lab(LabMeasure):
    """One lab: build it with `up`, change it, and remove everything with `down`."""

    def up(self, timeout: float = 60.0) -> None:
        """Build the whole lab and wait until it is converged; on any failure, remove it again."""
        missing = missing_requirements()
        if missing:
            raise LabError(
                "the lab cannot run here; missing: " + "; ".join(missing),
                "run it as root on Linux, e.g. `sudo .venv/bin/mutualmesh lab up`"
                " (scripts/setup installs the tools)",
            )
        topo = self.topology
        if self.state_file.exists() or any(ns.startswith(self.prefix) for ns in netns.list_netns()):
            stale = lab_info(self.name, self.run_dir.parent).stale
            raise LabError(
                f"a lab called {self.name!r} already exists"
                + (f" (stale: {stale})" if stale else ""),
                f"remove it with `mutualmesh lab down --name {self.name}`, or pick --name",
            )
        self._t0 = now()
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
                    self.wait_agents_ready(timeout=self.agent_timeout)
                self.phase = "up"
                self.timings["up"] = round(now() - self._t0, 3)
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

    def start(self, node: str) -> list[str]:
        """Start whatever of a node's processes is not running (after `kill` or `crash`).

        A restarted agent is waited for until it sees its neighbours again.
        """
        started = self.start_missing(node)
        if "agent" in started:
            self.wait_agents_ready(self.agent_timeout, nodes=[node])
        return started

    def status(self) -> dict[str, Any]:
        """Nodes, their processes and routes, and the links with their impairments and costs."""
        topo = self.topology
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
