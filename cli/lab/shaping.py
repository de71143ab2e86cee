"""Changing a lab's links: impairments (through one dispatch), cuts and restores.

`Lab.impair` turns the user's options into a validated `Impairment` (`cli.lab.impair`), stores
it, and calls every function in `APPLIERS` in order; each rebuilds its mechanism for the link
from the stored state (the delay relay first, since it decides which interface is active).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from cli.lab import babel, impair, netns, procs
from cli.lab.checks import LabChecks
from cli.lab.impair import BY_NAME, ImpairError, Impairment
from cli.lab.state import LabError, LabUsageError, LinkState, PairState, wait_until
from cli.lab.topology import OUT_OF_RANGE, Link, Segment, Topology, pair_key

RELAY_TAPS_S = 10.0  # how long the delay relay may take to create or remove its TAP devices
Applier = Callable[["LabShaping", Link, LinkState | None], None]
APPLIERS: dict[str, Applier] = {}  # name -> function, in the order they are applied


def applier(name: str) -> Callable[[Applier], Applier]:
    """Register the function that applies one mechanism (an `Option.applier` names it)."""

    def register(func: Applier) -> Applier:
        APPLIERS[name] = func
        return func

    return register


class LabShaping(LabChecks):
    """Impair, heal, cut and restore links and segment pairs."""

    def impair(
        self, a: str, b: str, *, one_way: bool = False, **given: object
    ) -> Impairment | PairState:
        """Change link a-b by the options in `impair.OPTIONS` (`loss=20`, `rate="10mbit"`,
        `delay=25`, `jitter=5`); options not given, or given as None, keep what was there.

        Jitter is +-ms around the delay (the relay keeps frames in order); delay 0 drops it.
        For two nodes on a shared segment (and no link), only loss applies: the segment's radio
        rules drop that share of the frames between the two (100 = out of range).
        """
        self.require_up()
        given = {k: v for k, v in given.items() if v is not None}
        unknown = sorted(set(given) - set(BY_NAME))
        if unknown:
            raise LabUsageError(f"unknown impairment {', '.join(unknown)}")
        pair = self._pair(a, b)
        if isinstance(pair, Segment):
            off = [k for k in given if not BY_NAME[k].on_segment]
            if off or "loss" not in given:
                raise LabUsageError(
                    f"{a}-{b} is a pair on shared segment {pair.name}: only --loss applies there",
                    "give --loss PCT (100 = out of range)",
                )
            loss = given["loss"]
            if isinstance(loss, bool) or not isinstance(loss, int | float):
                raise ImpairError(f"loss {loss!r}: must be a number")
            return self._impair_pair(pair, a, b, float(loss), one_way)
        link = pair
        old = self.links.get(link.index)
        base = old.impairment if old else Impairment()
        if old and old.sender != a and old.impairment.one_way and not one_way:
            base = Impairment()
        new = base.changed(given, one_way)
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

    def _impair_pair(self, seg: Segment, a: str, b: str, loss: float, one_way: bool) -> PairState:
        if not 0 <= loss <= OUT_OF_RANGE:
            raise LabUsageError(f"loss {loss}: must be a percentage in [0, 100]")
        with self.locked():
            old = self.pair_state(seg.name, a, b)
            new = PairState(loss, one_way and loss < OUT_OF_RANGE, a, old.cut)
            self.pairs.setdefault(seg.name, {})[pair_key(a, b)] = new
            self.save()
            self._apply_radio(seg)
        return new

    def _heal_pair(self, seg: Segment, a: str, b: str) -> None:
        """Back to perfect range between a and b (a cut pair stays cut)."""
        with self.locked():
            cut = self.pair_state(seg.name, a, b).cut
            self.pairs.setdefault(seg.name, {})[pair_key(a, b)] = PairState(0.0, False, a, cut)
            self.save()
            self._apply_radio(seg)
            if not cut:
                self._wait_pair_usable(seg, a, b)

    def _impair_link(self, link: Link, sender: str, new: Impairment) -> None:
        old = self.links.get(link.index)
        cut = bool(old and old.cut)
        was_delayed = bool(old and old.delayed)
        if new.empty and not cut:
            self.links.pop(link.index, None)
        else:
            self.links[link.index] = LinkState(new, sender, cut)
        self.save()
        for apply in APPLIERS.values():
            apply(self, link, old)
        self.save()
        if (new.delay_ms > 0) != was_delayed and not cut:
            # a ping must answer within its 1 s timeout (not over a very lossy or long link)
            self._wait_link_usable(link, ping=new.loss < 50 and new.delay_ms < 400)
            self._settle(link)

    @applier("relay")
    def _apply_relay(self, link: Link, old: LinkState | None) -> None:
        """Delay and jitter: move the link onto the TAP relay, re-tune it, or move it back."""
        state = self.links.get(link.index)
        cut = bool(old and old.cut)
        if state is not None and state.delayed:
            if not (old and old.delayed):
                self._start_relay(link, state.sender, state.impairment, cut)
                return
            self._write_relay_params(link, state.sender, state.impairment)
            rec = self.procs.get(self._relay_key(link))
            if rec is not None:
                procs.send(rec, signal.SIGUSR1)
        elif old and old.delayed:
            self._stop_relay(link, cut)

    @applier("loss")
    def _apply_loss(self, link: Link, old: LinkState | None) -> None:
        for node in link.ends():
            self._apply_nft(node)

    def _apply_initial_impairments(self, topo: Topology) -> None:
        """Apply impairments a YAML topology sets (the topology from state has none)."""
        count = 0
        for k in topo.links:
            if k.kind == "mesh" and not k.impairment.empty:
                self._impair_link(k, k.a, k.impairment)
                count += 1
        if count:
            self._step(f"impairments from the topology applied to {count} links")

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

        def taps_ready() -> bool:
            if not procs.alive(rec):
                raise LabError("the delay relay exited:\n" + procs.log_tail(rec.log))
            return netns.iface_exists(ns_a, link.tap_a) and netns.iface_exists(ns_b, link.tap_b)

        if not wait_until(taps_ready, RELAY_TAPS_S, step=0.02):
            raise LabError(
                f"the delay relay did not create its TAP devices within {RELAY_TAPS_S:g} s"
            )
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

        def taps_gone() -> bool:
            return not any(netns.iface_exists(self.ns(n), link.side(n)[1]) for n in link.ends())

        if not wait_until(taps_gone, RELAY_TAPS_S, step=0.02):
            raise LabError(
                f"the TAP devices of {link.a}-{link.b} did not go away in {RELAY_TAPS_S:g} s"
            )
        for node in link.ends():
            if not cut:
                netns.run(["ip", "-n", self.ns(node), "link", "set", link.side(node)[0], "up"])

    def _apply_nft(self, node: str) -> None:
        """Rebuild `node`'s loss table from the state of all its links."""
        drops: dict[str, float] = {}
        for k in self.topology.mesh_links(node):
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

    @applier("rate")
    def _apply_rate(self, link: Link, old: LinkState | None) -> None:
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
