"""UDP link probes: send a probe to every neighbour each interval, echo theirs, and feed both
into a `meshd.linkquality.LinkEstimator` per neighbour.

A probe proves nothing (anyone can send one with any node id), so liveness comes only from an
echo that carries this run's random session (a nonce sent only to the neighbours we probe), from
the address of a neighbour whose identity a verified record proved. Fake identities can
measure their links, never stay alive.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from meshd.linkquality import ECHO, PROBE, LinkEstimator, Packet
from node_agent.config import Config
from node_agent.neighbours import Event, Neighbour, NeighbourTable
from node_agent.runtime import Runtime

log = logging.getLogger("meshd")
MAX_PROBED = 64  # estimators kept for senders we do not know yet (bounds memory)
FORGET_ESTIMATOR_S = 600.0


def bare_address(address: str) -> str:
    """`::ffff:10.0.0.1` -> `10.0.0.1`, `fe80::1%eth0` -> `fe80::1`: comparable forms."""
    bare = address.split("%", 1)[0].lower()
    return bare[7:] if bare.startswith("::ffff:") and "." in bare else bare


def from_neighbour(n: Neighbour, addr: tuple[Any, ...]) -> bool:
    got = bare_address(str(addr[0]))
    return got == bare_address(n.address) or got in {bare_address(a) for a in n.advertised}


class Prober:
    def __init__(
        self,
        config: Config,
        rt: Runtime,
        node_id: str,
        neighbours: NeighbourTable,
        on_event: Callable[[str, Event], None],
    ) -> None:
        self.config = config
        self.rt = rt
        self.node_id = node_id
        self.neighbours = neighbours
        self.on_event = on_event
        self.session = rt.token()
        self.seq = 0
        self.estimators: dict[str, LinkEstimator] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.counters: dict[str, int] = {}

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    async def open(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", self.config.probe_port))
        prober = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                try:
                    prober.on_datagram(data, addr)
                except Exception:  # one packet must never end the agent
                    prober._count("probe_internal_error")
                    log.exception("probe from %s failed", addr[:2])

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Protocol, sock=sock
        )
        self.transport = transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def estimator(self, node_id: str) -> LinkEstimator | None:
        est = self.estimators.get(node_id)
        if est is None:
            if len(self.estimators) >= MAX_PROBED and node_id not in self.neighbours.entries:
                return None
            est = self.estimators[node_id] = LinkEstimator(
                self.config.probe_interval, self.config.probe_window
            )
        return est

    def on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        packet = Packet.decode(data)
        if packet is None:
            self._count("probe_malformed")
            return
        if packet.node_id == self.node_id:
            return
        now = self.rt.clock.monotonic()
        est = self.estimator(packet.node_id)
        if est is None:
            self._count("probe_unknown")
            return
        if packet.kind == PROBE:
            got, span = est.on_probe(packet.session, packet.seq, now)
            reply = Packet(
                ECHO, packet.session, packet.seq, packet.sent_at, got, span, self.node_id
            )
            if self.transport is not None:
                self.transport.sendto(reply.encode(), addr)
            return  # anyone can send a probe: it measures, it proves nothing
        if packet.kind != ECHO or packet.session != self.session:
            self._count("probe_bad_session")
            return
        est.on_echo(packet, now)
        n = self.neighbours.entries.get(packet.node_id)
        if n is None or not n.verified or not from_neighbour(n, addr):
            self._count("probe_unverified")  # measured, but it keeps nobody alive
            return
        if self.neighbours.heard(packet.node_id, now):
            self.on_event(packet.node_id, Event.APPEARED)

    def _sockaddr(self, address: str, port: int) -> tuple[Any, ...]:
        if "%" in address:
            bare, iface = address.split("%", 1)
            return (bare, port, 0, self.rt.sys.iface_index(iface) or 0)
        if ":" in address:
            return (address, port, 0, 0)
        return (f"::ffff:{address}", port, 0, 0)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.rt.jitter(self.config.probe_interval, 0.05))
            self.seq += 1
            self._count("probe_rounds")  # lets a reader wait for a fresh window, not a clock
            packet = Packet(
                PROBE, self.session, self.seq, self.rt.clock.monotonic(), 0, 0, self.node_id
            )
            data = packet.encode()
            for n in list(self.neighbours.entries.values()):
                self.estimator(n.node_id)
                if self.transport is None:
                    continue
                try:
                    self.transport.sendto(
                        data, self._sockaddr(n.address, n.probe_port or self.config.probe_port)
                    )
                except OSError as exc:
                    log.debug("probe to %s failed: %s", n.node_id, exc)

    def prune(self, now: float) -> None:
        for node_id in list(self.estimators):
            if node_id not in self.neighbours.entries:
                sample = self.estimators[node_id].sample(now)
                if sample.heard_at is None or now - sample.heard_at > FORGET_ESTIMATOR_S:
                    del self.estimators[node_id]
