"""Measuring in a lab: parsers for ping and iperf3 output (pure, unit-tested), and the `Lab`
layer that runs commands inside nodes, sends traffic and follows the routed path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cli.lab import netns
from cli.lab.daemons import SINK_PORT
from cli.lab.shaping import LabShaping
from cli.lab.state import LabError, LabUsageError, wait_until
from cli.lab.topology import INTERNET

SERVER_START_S = 10.0  # how long an iperf3 server may take to listen

_SENT_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT_RE = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None

    @property
    def loss_pct(self) -> float:
        return 100.0 * (self.sent - self.received) / self.sent if self.sent else 100.0


def parse_ping(text: str, count: int | None = None) -> PingResult:
    """Read the summary of iputils `ping -q`; raises ValueError when there is none.

    With `count`, a ping that could not send at all because the kernel had no route at that
    moment (`ping: connect: No route to host`, as while babel reroutes) lost all `count`."""
    m = _SENT_RE.search(text)
    if not m and count is not None and "ping: connect: " in text:
        return PingResult(count, 0, None, None, None)
    if not m:
        raise ValueError(f"no ping summary in output: {text.strip()[-200:]!r}")
    rtt = _RTT_RE.search(text)
    mn, avg, mx = (float(rtt.group(i)) for i in (1, 2, 3)) if rtt else (None, None, None)
    return PingResult(int(m.group(1)), int(m.group(2)), mn, avg, mx)


@dataclass(frozen=True)
class TrafficResult:
    """What an iperf3 run moved: bytes as the sender and receiver counted them, and the rate."""

    sent_bytes: int
    received_bytes: int
    seconds: float
    receiver_bps: float
    retransmits: int | None = None

    @property
    def receiver_mbps(self) -> float:
        return self.receiver_bps / 1e6


def parse_iperf3(text: str) -> TrafficResult:
    """Read `iperf3 -J` output of a TCP client; raises ValueError on an error report."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"iperf3 did not print JSON: {text.strip()[-200:]!r}") from exc
    if not isinstance(data, dict):
        raise ValueError("iperf3 JSON is not an object")
    if data.get("error"):
        raise ValueError(f"iperf3: {data['error']}")
    end = data.get("end", {})
    sent = end.get("sum_sent", {})
    received = end.get("sum_received", {})
    if not sent or not received:
        raise ValueError("iperf3 JSON has no end.sum_sent / end.sum_received")
    retr = sent.get("retransmits")
    return TrafficResult(
        sent_bytes=int(sent.get("bytes", 0)),
        received_bytes=int(received.get("bytes", 0)),
        seconds=float(received.get("seconds", sent.get("seconds", 0.0))),
        receiver_bps=float(received.get("bits_per_second", 0.0)),
        retransmits=int(retr) if retr is not None else None,
    )


class LabMeasure(LabShaping):
    """Running commands in nodes and measuring with them: exec, ping, iperf3, the routed path."""

    def exec(self, node: str, argv: Sequence[str]) -> int:
        """Run a command inside a node (or the internet) with this terminal; return its status."""
        self.check_node(node, allow_internet=True)
        if not argv:
            raise LabUsageError(
                "no command given", f"e.g. `mutualmesh lab exec {node} -- ip route`"
            )
        try:
            return subprocess.run(netns.nsexec(self.ns(node), *argv), check=False).returncode
        except FileNotFoundError as exc:
            raise LabError(f"cannot run {argv[0]}: {exc}") from exc

    def popen(self, node: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a command inside a node with its output captured (for parallel measurements)."""
        self.check_node(node, allow_internet=True)
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
        return parse_ping(out, count)

    def traffic(self, a: str, b: str, seconds: float = 3.0, *, omit: int = 0) -> TrafficResult:
        """Real TCP traffic from node a to node b (or `internet`) with iperf3."""
        self.check_node(a)
        self.check_node(b, allow_internet=True)
        if a == b:
            raise LabUsageError("traffic needs two different nodes")
        if not 0 < seconds <= 3600:
            raise LabUsageError("--seconds must be between 0 and 3600")
        server: subprocess.Popen[str] | None = None
        port = SINK_PORT
        if b != INTERNET:
            port = 20000 + (os.getpid() + int(time.time() * 1000)) % 20000
            server = self.popen(b, ["iperf3", "-s", "-1", "-p", str(port)])
            ns_b, sink = self.ns(b), server

            def listening() -> bool:
                return sink.poll() is not None or netns.listening(ns_b, port)

            if not wait_until(listening, SERVER_START_S, step=0.02) or server.poll() is not None:
                out = server.communicate()[0] if server.poll() is not None else ""
                server.kill()
                raise LabError(f"iperf3 server in {b} did not start: {out.strip()}")
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
        for k in self.topology.links:
            owner[k.v4_a] = k.a
            owner[k.v4_b] = k.b
        for seg in self.topology.segments:
            for m in seg.nodes:
                owner[seg.addr(self.topology.node(m))] = m
        return owner

    def _iface_peer(self, node: str, dev: str) -> str | None:
        for k in self.topology.links:
            if node in k.ends() and dev in k.side(node)[:2]:
                return k.peer(node)
        return None

    def path(self, a: str, b: str, max_hops: int = 64) -> list[str]:
        """The nodes traffic from `a` to `b` (or `internet`) crosses right now, as routed.

        Follows the kernel's route at each hop (`ip route get`); an unroutable hop ends the list
        with "?".
        """
        self.check_node(a)
        self.check_node(b, allow_internet=True)
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
