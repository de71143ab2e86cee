"""Building a lab's network and tearing it down: namespaces, veths, shared segments, NAT.

Links are veth pairs created directly inside the two namespaces, so no interface ever appears
on the host. `down` sweeps namespaces by prefix and processes by namespace, so it does not
depend on the state file being complete.
"""

from __future__ import annotations

import functools
import shutil

from cli.lab import impair, netns, procs
from cli.lab.state import LabError, LabState, now, wait_until
from cli.lab.topology import INTERNET, INTERNET_V4, INTERNET_V6, OUT_OF_RANGE, Segment, Topology

NAT_TABLE = "mutualmesh_lab_nat"
LATECOMERS_S = 5.0  # how long teardown keeps stopping processes that enter its namespaces
LATECOMERS_QUIET_S = 0.5  # none seen for this long: teardown is done
LINKS_UP_S = 10.0  # how long fresh veths may take to be up with link-local addresses


class LabBuild(LabState):
    """The network part of a lab: everything `ip`, `nft` and `sysctl` create."""

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
        for name in self.node_names(with_internet=True):
            ifaces = [k.side(name)[0] for k in topo.links if name in k.ends()]
            ifaces += [seg.iface for seg in topo.segments_of(name)]
            ready = functools.partial(netns.links_ready, self.ns(name), ifaces)
            if not wait_until(ready, LINKS_UP_S, step=0.02):
                raise LabError(f"links of {name} did not come up within {LINKS_UP_S:g} s")
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

    def down(self) -> list[str]:
        """Remove every process, namespace and file of this lab; safe to call any number of times.

        Returns the namespaces that were deleted.
        """
        with self.locked(wait=3.0):
            return self._teardown()

    def _stop_latecomers(self, inodes: set[int]) -> list[int]:
        """Stop processes inside the (deleted) namespaces or about to enter one; returns them."""
        late = procs.in_netns(inodes) + procs.entering(self.prefix)
        if late:
            procs.stop_pids(late, grace=0.5)
        return late

    def _teardown(self) -> list[str]:
        t0 = now()
        # 1. the processes we recorded (only if they are still ours: pid + start time match)
        procs.stop(self.procs.values(), grace=1.0)
        # 2. anything else still living in our namespaces (e.g. started before it was recorded)
        ours = sorted(
            set(self.namespaces) | {ns for ns in netns.list_netns() if ns.startswith(self.prefix)}
        )
        inodes = {i for ns in ours if (i := netns.inode(ns)) is not None}
        stray = [pid for ns in ours for pid in netns.pids(ns)]
        if stray:
            procs.stop_pids(stray, grace=0.5)
        # 3. the namespaces; veths, TAPs and nftables tables inside them go with them
        for ns in ours:
            netns.delete(ns)
        # 4. latecomers: a `lab up` killed while spawning leaves `ip netns exec` children that no
        #    state file names, and they may enter a namespace after step 2 looked into it
        #    (on a loaded machine one may be a few hundred ms late: stay until it is quiet a while)
        quiet_since = [now()]

        def quiet() -> bool:
            if self._stop_latecomers(inodes):
                quiet_since[0] = now()
            return now() - quiet_since[0] >= LATECOMERS_QUIET_S

        if not wait_until(quiet, LATECOMERS_S):
            raise LabError(f"processes keep entering the namespaces of lab {self.name!r}")
        left = [ns for ns in netns.list_netns() if ns.startswith(self.prefix)]
        if left:
            raise LabError(f"namespaces could not be deleted: {', '.join(left)}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.procs.clear()
        self.namespaces = []
        self.phase = "down"
        self.timings["down"] = round(now() - t0, 3)
        return ours
