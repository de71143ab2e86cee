"""The daemons of a lab's nodes: babeld, mosquitto, the node agent, the internet's traffic sink.

Each runs in the foreground of its own session inside its node's namespace; the lab records
(pid, start time) in the state file before anything else happens, so a crash leaves nothing
that `down` cannot find.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.lab import agent, babel, broker, hostile, procs
from cli.lab.build import LabBuild
from cli.lab.procs import ProcRecord
from cli.lab.state import LabError, LabUsageError, wait_until
from cli.lab.topology import INTERNET, Topology

SINK_PORT = 5201
KILLABLE = ("agent", "babeld", "mosquitto")
HOSTILE_READY_S = 60.0  # publishing tens of MB of junk and announcing the fakes takes a while


class LabDaemons(LabBuild):
    """Starting, killing and restarting the processes of a lab's nodes."""

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

    def _start_agents(self, topo: Topology) -> None:
        """Provision identities and start every agent; `Lab.up` then waits for them."""
        if not agent.meshd_path().exists():
            raise LabError(
                f"agents were asked for but {agent.meshd_path()} does not exist",
                "run scripts/setup, or use `lab up --no-agents`",
            )
        agent.provision_identities(topo, self.run_dir)
        for n in topo.nodes:
            self.start_agent(n.name)
        self._step(f"meshd started in {len(topo.nodes)} nodes")

    def start_agent(self, node: str, extra_args: Sequence[str] | None = None) -> ProcRecord:
        """Run the node agent inside `node`'s namespace.

        Flags come from `agent.agent_argv`, then the lab's `agent_args`, then `extra_args`
        (argparse lets a later flag win, so tests can override timers per node).
        """
        argv = [*self.agent_argv(node), *self.agent_args, *(extra_args or ())]
        return self._spawn(f"{node}/agent", node, argv, self._log_path(node, "agent"))

    def agent_argv(self, node: str) -> list[str]:
        return agent.agent_argv(self.topology, self.run_dir, node)

    def start_hostile(
        self,
        node: str,
        *,
        victims: Sequence[str] = (),
        fake_ids: int = 40,
        oversize: int = 20_000_000,
    ) -> ProcRecord:
        """Turn `node` into a hostile neighbour (`cli.lab.hostile`) on its own broker and links.

        The node keeps its babeld and mosquitto (it routes, and its broker serves the junk) and
        must run no agent. Returns once the junk is on its broker and the fake ids announced.
        """
        self.require_up()
        self.check_node(node)
        if "agent" in self.node_procs(node):
            raise LabUsageError(f"{node} runs an agent; a hostile node must not")
        topo = self.topology
        addresses = [k.side(node)[2] for k in topo.mesh_links(node)]
        addresses += [seg.addr(topo.node(node)) for seg in topo.segments_of(node)]
        argv = [sys.executable, "-m", "cli.lab.hostile", "--community", agent.COMMUNITY]
        argv += [a for addr in addresses for a in ("--address", addr)]
        argv += [a for v in victims for a in ("--victim", v)]
        argv += ["--fake-ids", str(fake_ids), "--oversize", str(oversize)]
        rec = self._spawn(f"{node}/hostile", node, argv, self._log_path(node, "hostile"))

        def ready() -> bool:
            if not procs.alive(rec):
                raise LabError("the hostile node exited:\n" + procs.log_tail(rec.log))
            return hostile.READY in procs.log_tail(rec.log, 50)

        if not wait_until(ready, HOSTILE_READY_S, step=0.1):
            raise LabError(f"the hostile node in {node} was not ready in {HOSTILE_READY_S:g} s")
        return rec

    def node_procs(self, node: str) -> dict[str, ProcRecord]:
        return {k.split("/", 1)[1]: r for k, r in self.procs.items() if k.startswith(f"{node}/")}

    def _targets(self, node: str, what: str) -> list[ProcRecord]:
        self.check_node(node)
        if what not in (*KILLABLE, "all"):
            raise LabUsageError(f"--what {what!r} unknown", f"use {', '.join(KILLABLE)} or all")
        mine = self.node_procs(node)
        if what == "agent" and "agent" not in mine:
            raise LabError(
                f"{node} runs no agent in this lab",
                "start the lab with --agents, or use --what all",
            )
        return [r for k, r in mine.items() if what in ("all", k)]

    def kill(self, node: str, what: str = "agent") -> list[str]:
        """SIGKILL processes of a node (`agent`, `babeld`, `mosquitto` or `all`), as a crash
        would: no SIGTERM first, which would let the agent stop cleanly (and its broker then
        says `offline` only if the agent got that far)."""
        with self.locked():
            return self.crash(what, [node])

    def crash(self, what: str = "agent", nodes: Sequence[str] | None = None) -> list[str]:
        """SIGKILL `what` on every node (or on `nodes`) at the same instant, as a power cut would.

        Returns once every one of them is gone (reaped), so a restart cannot race the old one.
        """
        self.require_up()
        targets = [r for n in nodes or self.topology.names for r in self._targets(n, what)]
        live = [r for r in targets if procs.alive(r)]
        for rec in live:
            procs.send(rec, signal.SIGKILL)
        if not wait_until(lambda: not any(procs.alive(r) for r in live), 10.0, step=0.02):
            raise LabError(f"{', '.join(r.name for r in live if procs.alive(r))} survived SIGKILL")
        return [r.name for r in live]

    def start_missing(self, node: str) -> list[str]:
        """Start whatever of a node's processes is not running (after `kill`); no waiting."""
        self.require_up()
        self.check_node(node)
        topo = self.topology
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
        return started
