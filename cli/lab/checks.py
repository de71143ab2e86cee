"""Waiting for a lab to be usable: brokers, babel routes and neighbours, links, agents.

Every wait here polls a condition against a deadline; none sleeps for a fixed time, so the lab
is as fast as the machine allows and still holds on a loaded one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from cli.lab import agent, babel, broker, netns, procs
from cli.lab.daemons import LabDaemons
from cli.lab.state import LabError, now
from cli.lab.topology import Link, Segment, Topology


class LabChecks(LabDaemons):
    """Convergence, link and agent checks, and the waits built on them."""

    def _wait_ready(self, topo: Topology, timeout: float) -> None:
        deadline = now() + timeout
        pending = set(topo.names)
        while pending:
            self._raise_if_dead()
            pending = {
                n
                for n in pending
                if not netns.tcp_accepts(self.ns(n), topo.node(n).v4, broker.BROKER_PORT, 0.2)
            }
            if pending and now() > deadline:
                raise LabError(f"brokers of {', '.join(sorted(pending))} do not accept TCP")
            if pending:
                time.sleep(0.05)
        self._step("all brokers accept connections")
        missing = self.wait_converged(deadline - now())
        self.timings["converged"] = round(now() - self._t0, 3)
        if missing:
            raise LabError("routes did not converge: " + "; ".join(missing[:5]))
        self._step("routes converged between all pairs of nodes")

    def dumps(self) -> dict[str, babel.Dump | None]:
        out: dict[str, babel.Dump | None] = {}
        for n in self.topology.names:
            try:
                out[n] = babel.dump(self.ns(n))
            except (babel.BabelError, OSError):
                out[n] = None
        return out

    def missing_routes(self, dumps: dict[str, babel.Dump | None] | None = None) -> list[str]:
        """What keeps the lab from being converged (empty when every pair has routes both ways)."""
        topo = self.topology
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
        deadline = now() + timeout
        while True:
            missing = self.missing_routes()
            if not missing or now() > deadline:
                return missing
            time.sleep(0.1)

    def wait_neighbours(self, a: str, b: str, timeout: float = 20.0) -> bool:
        """Poll until `a` and `b` see each other as usable babel neighbours on their link.

        On a shared segment the neighbour is told apart by the peer's link-local address.
        """
        pair = self._pair(a, b)
        deadline = now() + timeout
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
            if now() > deadline:
                return False
            time.sleep(0.1)

    def link_local(self, node: str, iface: str) -> str | None:
        """The IPv6 link-local address of `iface` in `node` (what babeld knows a neighbour by)."""
        for entry in netns.ip_json(self.ns(node), "addr", "show", "dev", iface):
            for a in entry.get("addr_info", []):
                if a.get("family") == "inet6" and str(a.get("local", "")).startswith("fe80:"):
                    return str(a["local"])
        return None

    def agents_missing(self, nodes: Sequence[str] | None = None) -> dict[str, list[str]]:
        """node -> mesh neighbours its agent has not (yet) discovered; a node is absent when done.

        A node whose agent does not answer at all lists every neighbour. Read from each agent's
        live `/status` (HTTP), falling back to its status file.
        """
        topo = self.topology
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
        t0 = now()
        total = len(nodes) if nodes is not None else len(self.topology.nodes)
        last = -1
        while True:
            self._raise_if_dead()
            missing = self.agents_missing(nodes)
            ready = total - len(missing)
            if not missing:
                took = now() - t0
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
            if now() - t0 > timeout:
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

    def _settle(self, link: Link, timeout: float = 30.0, stable_for: float = 1.5) -> None:
        """After the link moved between veth and TAP: wait until babeld routes over it again.

        Both ends must route to each other over the link's active interface and every pair must
        have routes, continuously for `stable_for` seconds (three hellos): right after the switch
        a route can still be installed that a retraction is about to remove.
        """
        deadline = now() + timeout
        stable_since: float | None = None
        while True:
            dumps = self.dumps()
            ok = not self.missing_routes(dumps)
            for node in link.ends():
                d = dumps.get(node)
                peer = self.topology.node(link.peer(node))
                route = d.installed().get(f"{peer.v4}/32") if d else None
                ok = ok and route is not None and route.iface == self._active_iface(link, node)
            moment = now()
            if ok:
                stable_since = stable_since if stable_since is not None else moment
                if moment - stable_since >= stable_for:
                    return
            else:
                stable_since = None
            if moment > deadline:
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
        t0 = now()
        repaired = False
        while True:
            problems = self._link_problems(link, ping=ping)
            if not problems:
                return
            waited = now() - t0
            if not repaired and waited > 2.0 and any("no route" in p for p in problems):
                self._repair_connected(link)
                repaired = True
            if waited > timeout:
                raise LabError(
                    f"link {link.a}-{link.b} does not carry traffic after {timeout:.0f} s: "
                    + "; ".join(problems)
                )
            time.sleep(0.05)

    def _pair_problems(self, seg: Segment, a: str, b: str) -> list[str]:
        problems = []
        for x, y in ((a, b), (b, a)):
            dst = seg.addr(self.topology.node(y))
            argv = netns.nsexec(self.ns(x), "ping", "-n", "-q", "-c", "1", "-W", "1", dst)
            if netns.run(argv, check=False).returncode != 0:
                problems.append(f"{x} gets no ping reply from {y} ({dst}) on {seg.iface}")
        return problems

    def _wait_pair_usable(self, seg: Segment, a: str, b: str, timeout: float = 20.0) -> None:
        """Poll until a and b answer each other's pings across the segment."""
        deadline = now() + timeout
        while True:
            problems = self._pair_problems(seg, a, b)
            if not problems:
                return
            if now() > deadline:
                raise LabError(
                    f"{a}-{b} on {seg.name} does not carry traffic: " + "; ".join(problems)
                )
            time.sleep(0.05)
