"""The relay's MQTT shells around `relay_core.RelayCore`: our own broker, one client per live
neighbour, and the supervisor that keeps one relay task per neighbour.

Every message goes through the core, whose actions are performed here. Oversized packets are
refused before paho buffers them (it would accept 256 MiB): MQTT v5 Maximum Packet Size is sent
in CONNECT, so a well-behaved broker never sends more, and `guard_packet_size` cuts the
connection as soon as a larger packet's length header arrives from one that does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from meshd.errors import RejectReason
from meshd.topics import (
    ONLINE_PUSH,
    REVOCATIONS,
    community_filter,
    control_topic,
    push_topic,
    status_topic,
)
from node_agent.config import Config
from node_agent.lean import share_mqtt_property_tables
from node_agent.neighbours import Event, Neighbour, NeighbourTable
from node_agent.relay_core import (
    LOCAL,
    MAX_SOURCES,
    Action,
    Control,
    Drop,
    NeighbourGone,
    NeighbourVerified,
    Publish,
    Push,
    RelayCore,
    Revoked,
    Source,
    Stored,
)
from node_agent.relay_push import TICK_S
from node_agent.runtime import Runtime

log = logging.getLogger("meshd")
share_mqtt_property_tables()
REPLAY_LIMIT_S = 3.0  # longest a neighbour holds the replay slot
PACKET_OVERHEAD = 1024  # fixed header, topic and properties around a record of the cap
VERIFY_WAIT_S = 0.1  # how often a new push link checks whether its neighbour is verified yet
STATUS_WAIT_S = 2.0  # longest a neighbour may take to verify and show its status on a link


class PacketTooLarge(OSError):
    """A packet's length header announced more than we accept; the connection is dropped."""


def connect_properties(max_packet: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.MaximumPacketSize = max_packet
    return props


def guard_packet_size(
    client: aiomqtt.Client, max_packet: int, on_refuse: Callable[[int], None]
) -> None:
    """Make paho refuse a packet longer than `max_packet` once its length is known, before
    reading its body (paho's `_packet_read` reads `remaining_length` bytes in one call)."""
    paho: Any = client._client  # paho has no hook for this
    recv = paho._sock_recv

    def guarded(bufsize: int) -> bytes:
        packet = paho._in_packet
        if packet["have_remaining"] and packet["remaining_length"] > max_packet:
            on_refuse(int(packet["remaining_length"]))
            raise PacketTooLarge(f"packet of {packet['remaining_length']} bytes refused")
        data: bytes = recv(min(bufsize, 64 * 1024))
        return data

    paho._sock_recv = guarded


class Session:
    """`async with client`, except that a connect that fails, times out or is cancelled closes
    its socket: aiomqtt leaves it open after a CONNACK timeout, with a task polling it each
    second, so every fake neighbour that never answers would leak one per retry."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client

    async def __aenter__(self) -> aiomqtt.Client:
        try:
            return await self.client.__aenter__()
        except BaseException:
            paho: Any = self.client._client
            with contextlib.suppress(Exception):
                paho._sock_close()  # its close callback cancels aiomqtt's polling task
            raise

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.__aexit__(*exc)


class ReplayTurn:
    """A neighbour's turn to replay its retained records into us: held from CONNACK until its
    queue first drains, or `limit_s` at most (a silent neighbour sends nothing to drain)."""

    def __init__(self, slot: asyncio.Semaphore, limit_s: float) -> None:
        self.slot = slot
        self.limit_s = limit_s
        self.held = False
        self.timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> ReplayTurn:
        await self.slot.acquire()
        self.held = True
        self.timer = asyncio.get_running_loop().call_later(self.limit_s, self.release)
        return self

    def release(self) -> None:
        if self.held:
            self.held = False
            self.slot.release()

    async def __aexit__(self, *exc: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.release()


class Relay:
    def __init__(
        self,
        config: Config,
        rt: Runtime,
        core: RelayCore,
        neighbours: NeighbourTable,
        on_event: Callable[[str, Event], None],
        on_revoked: Callable[[], None],
        on_own: Callable[[int], None] = lambda seq: None,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.rt = rt
        self.core = core
        self.neighbours = neighbours
        self.on_event = on_event
        self.on_revoked = on_revoked
        self.on_own = on_own  # a record of our own node we did not just sign: its seq
        self.on_reconnect = on_reconnect  # our broker came back after a connection was lost
        self.node_id = core.node_id
        self.community = core.community
        self.max_packet = core.store.limits.max_bytes + PACKET_OVERHEAD
        self.local: aiomqtt.Client | None = None
        self.local_ready = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.spawn: Callable[[Any, str], asyncio.Task[None]] | None = None
        # One neighbour's retained replay at a time: 8 neighbours replaying 600 records at once
        # queue ~5,000 messages (~10 MB) that pymalloc never hands back to the system.
        self.replay_slot = asyncio.Semaphore(1)
        # push replication: each link's last status (does it speak push?), and messages and
        # bytes per neighbour and direction
        self.statuses: dict[str, bytes] = {}  # link -> status; capped like the core's
        self.traffic: dict[str, dict[str, int]] = {}  # neighbour -> msgs/bytes in/out

    def _traffic(self, peer: str, direction: str, size: int) -> None:
        """Messages and bytes per neighbour and direction, to set against bench/relay_scale.py;
        a claimed sender is anyone's to write, so past MAX_SOURCES entries they share `other`."""
        if peer not in self.traffic and len(self.traffic) >= MAX_SOURCES:
            peer = "other"
        t = self.traffic.setdefault(
            peer, {"msgs_in": 0, "bytes_in": 0, "msgs_out": 0, "bytes_out": 0}
        )
        t[f"msgs_{direction}"] += 1
        t[f"bytes_{direction}"] += size

    # -- performing the core's actions ------------------------------------------------------

    async def publish_local(self, topic: str, payload: bytes, retain: bool = True) -> None:
        client = self.local
        if client is None:
            return
        try:
            await client.publish(topic, payload, qos=1, retain=retain)
        except aiomqtt.MqttError as exc:
            log.debug("local publish failed: %s", exc)

    async def perform(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, Publish):
                # a newer record came while an earlier publish awaited its PUBACK (the refill
                # after a reconnect publishes a snapshot of the store, one at a time)
                if self.core.outdated(a):
                    self.core.counters["publish_outdated"] += 1
                    continue
                await self.publish_local(a.topic, a.payload, a.retain)
            elif isinstance(a, Push | Control):
                # into our own broker, where only that neighbour reads it (not retained)
                if isinstance(a, Push):
                    topic, data = push_topic(self.community, a.neighbour), a.payload
                else:
                    topic, data = control_topic(self.community, a.neighbour), a.message
                if self.local is None:
                    self.core.counters["push_unsent"] += 1
                    continue
                self._traffic(a.neighbour[:32], "out", len(data))
                await self.publish_local(topic, data, retain=False)
            elif isinstance(a, Drop):
                if a.error is not None and a.reason == "internal_error":
                    log.error("message from %s dropped: %s", a.link, a.detail, exc_info=a.error)
                else:
                    log.debug("dropped from %s: %s %s", a.link, a.reason, a.detail)
            elif isinstance(a, NeighbourVerified):
                if self.neighbours.verify(a.node_id, a.link):
                    log.info("neighbour %s verified at %s", a.node_id, a.link)
            elif isinstance(a, NeighbourGone):
                if self.neighbours.gone(a.node_id, self.rt.clock.monotonic()):
                    self.on_event(a.node_id, Event.LOST)
            elif isinstance(a, Stored) and a.envelope.node_id == self.node_id:
                self.on_own(a.envelope.seq)
            elif isinstance(a, Revoked):
                log.warning(
                    "node %s revoked by the admins: %r", a.revocation.node_id, a.revocation.reason
                )
                self.on_revoked()

    async def handle(self, source: Source, message: aiomqtt.Message) -> None:
        """One message, whatever it holds: counted and dropped at worst, never raised."""
        try:
            payload = message.payload
            data = bytes(payload) if isinstance(payload, (bytes, bytearray)) else b""
            if source is not LOCAL:
                self._traffic(source.claimed[:32], "in", len(data))
                if message.topic.value == status_topic(self.community, source.claimed):
                    self.statuses.pop(source.link, None)
                    self.statuses[source.link] = data[:32]
                    if len(self.statuses) > MAX_SOURCES:
                        del self.statuses[next(iter(self.statuses))]
            actions = self.core.on_message(source, message.topic.value, data, self.rt.clock.now())
            await self.perform(actions)
        except Exception as exc:  # no single message may end the agent
            self.core.counters["internal_error"] += 1
            log.error("message from %s failed", source.link, exc_info=exc)

    # -- our own broker ---------------------------------------------------------------------

    async def say_offline(self) -> bool:
        """Retained `offline` over the live connection; False when there is none. Said before
        the agent's tasks end: their clean disconnect drops the will, so a stop cut short after
        it (SIGKILL after SIGTERM, power) would leave the mesh believing this node is online."""
        client = self.local
        if client is None:
            return False
        status = status_topic(self.community, self.node_id)
        try:
            await client.publish(status, b"offline", qos=1, retain=True, timeout=2)
        except (aiomqtt.MqttError, OSError, TimeoutError):
            return False
        return True

    async def goodbye(self) -> None:
        """Retained `offline` over a fresh connection (a clean disconnect does not fire the
        will), for a stop that found no live one."""
        status = status_topic(self.community, self.node_id)
        try:
            async with aiomqtt.Client(
                "127.0.0.1", self.config.broker_port, timeout=3, identifier=None
            ) as client:
                await client.publish(status, b"offline", qos=1, retain=True)
        except (aiomqtt.MqttError, OSError) as exc:
            log.warning("could not publish the last status: %s", exc)

    async def run_local(self) -> None:
        """Our own broker: we publish into it, and read it too (admins publish revocations
        there, and anything invalid someone writes into it is answered with the record held)."""
        attempt = 0
        status = status_topic(self.community, self.node_id)
        while True:
            try:
                client = aiomqtt.Client(
                    "127.0.0.1",
                    self.config.broker_port,
                    identifier=f"meshd-{self.node_id}",
                    protocol=aiomqtt.ProtocolVersion.V5,  # for no-local, below
                    will=aiomqtt.Will(status, b"offline", qos=1, retain=True),
                    keepalive=30,
                    timeout=10,
                    max_queued_incoming_messages=10_000,
                    properties=connect_properties(self.max_packet),
                )
                guard_packet_size(client, self.max_packet, self._refused(LOCAL))
                async with Session(client):
                    attempt = 0
                    self.local = client
                    online = ONLINE_PUSH if self.core.replication == "push" else b"online"
                    await client.publish(status, online, qos=1, retain=True)
                    # no-local: our own publishes (every record we hold) do not come back to us
                    await client.subscribe(
                        community_filter(self.community),
                        options=SubscribeOptions(qos=1, noLocal=True),
                    )
                    # Reconnect heals: put back everything we hold (the broker may have restarted).
                    await self.perform(self.core.held())
                    if self.local_ready.is_set():  # not the first connect: sign afresh too
                        self.on_reconnect()
                    self.local_ready.set()
                    async for message in client.messages:
                        await self.handle(LOCAL, message)
            except (aiomqtt.MqttError, OSError) as exc:
                delay = self.rt.backoff(attempt := attempt + 1)
                log.warning("local broker: %s; retrying in %.1f s", exc, delay)
            except Exception:  # whatever paho raises, reconnect
                delay = self.rt.backoff(attempt := attempt + 1)
                log.exception("local broker client failed; retrying in %.1f s", delay)
            self.local = None
            await asyncio.sleep(delay)

    # -- neighbours -------------------------------------------------------------------------

    def _refused(self, source: Source) -> Callable[[int], None]:
        def count(size: int) -> None:
            self.core.store.rejections[RejectReason.TOO_LARGE] += 1
            self.core.count(source, "packet_too_large")
            log.warning("%s: refused a %d-byte packet", source.link, size)

        return count

    async def supervise(self) -> None:
        """One relay task per live neighbour; lost neighbours' tasks are cancelled."""
        while True:
            live = {n.node_id: n for n in self.neighbours.up()}
            for node_id, task in list(self.tasks.items()):
                n = live.get(node_id)
                if task.done() or n is None or task.get_name() != self.task_name(n):
                    task.cancel()
                    del self.tasks[node_id]
            for node_id, n in live.items():
                if node_id not in self.tasks and self.spawn is not None:
                    self.tasks[node_id] = self.spawn(self.run_neighbour(n), self.task_name(n))
            await asyncio.sleep(0.5)

    @staticmethod
    def task_name(n: Neighbour) -> str:
        return f"relay:{n.node_id}@{n.address}:{n.broker_port}"

    async def run_ticks(self) -> None:
        """The core's timed work: header batches to lazy links, pulls of overdue records."""
        while True:
            try:
                await self.perform(self.core.tick(self.rt.clock.now()))
            except Exception:  # never end the agent over one batch
                log.exception("relay tick failed")
            await asyncio.sleep(TICK_S)

    async def _read(self, client: aiomqtt.Client, source: Source, turn: ReplayTurn) -> None:
        async for message in client.messages:
            if turn.held and not len(client.messages):
                turn.release()  # replay drained: the next neighbour may start
            await self.handle(source, message)
        raise aiomqtt.MqttError("neighbour connection closed")

    async def _subscribe(self, client: aiomqtt.Client, n: Neighbour) -> None:
        """Flooding reads the neighbour's whole community; push only the neighbour's own topics
        (its records verify it, its status says offline), revocations, and what it addresses
        to us: `_push/<us>` and `_ctl/<us>`."""
        c = self.community
        if self.core.replication != "push":
            await client.subscribe(community_filter(c), qos=1)
            return
        await client.subscribe(f"mesh/v1/{c}/{n.node_id}/+", qos=1)
        await client.subscribe(f"mesh/v1/{c}/{REVOCATIONS}/+", qos=1)
        await client.subscribe(push_topic(c, self.node_id), qos=1)
        await client.subscribe(control_topic(c, self.node_id), qos=1)

    async def _verified(self, n: Neighbour, reader: asyncio.Task[None]) -> bool:
        """Wait until a valid record of `n` has come over this link (no announced identity
        joins the tree before that), then for its retained status: True when it speaks push.
        A reader that ends first ends this connection."""
        give_up = self.rt.clock.monotonic() + STATUS_WAIT_S
        while True:
            entry = self.neighbours.entries.get(n.node_id)
            status = self.statuses.get(n.link)
            verified = entry is not None and entry.verified and entry.link == n.link
            if verified and status is not None and status != b"offline":
                return status == ONLINE_PUSH
            if self.rt.clock.monotonic() >= give_up and status != ONLINE_PUSH:
                # unverified, or a v1 agent with no status: read it as v1 reads every
                # neighbour (its records verify themselves); a status of `online push` later
                # makes the link rejoin as push (`_until_restarted`)
                return False
            await self._reading(reader, VERIFY_WAIT_S)

    @staticmethod
    async def _reading(reader: asyncio.Task[None], seconds: float) -> None:
        """Let the connection's reader run for `seconds`; a reader that ended ends it."""
        done, _ = await asyncio.wait({reader}, timeout=seconds)
        if done:
            reader.result()
            raise aiomqtt.MqttError("neighbour connection closed")

    async def _until_restarted(self, n: Neighbour, reader: asyncio.Task[None], push: bool) -> None:
        """Read until the connection ends, or until the neighbour's status says its agent went
        or came back as the other kind (push vs v1): then reconnect, so the link is joined
        afresh (a restarted agent holds no eager/lazy state) or read as the kind it now is."""
        while True:
            await self._reading(reader, STATUS_WAIT_S / 4)
            if (self.statuses.get(n.link) == ONLINE_PUSH) != push:
                self.core.counters["relay_rejoins"] += 1
                raise aiomqtt.MqttError("the neighbour's agent restarted")

    async def run_neighbour(self, n: Neighbour) -> None:
        attempt = 0
        source = Source(n.link, n.node_id, n.fingerprint)
        while True:
            delay = 1.0
            try:
                client = aiomqtt.Client(
                    n.address,
                    n.broker_port,
                    identifier=f"meshd-{self.node_id}-{n.node_id[:8]}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    keepalive=10,
                    timeout=5,
                    max_queued_incoming_messages=5_000,
                    properties=connect_properties(self.max_packet),
                )
                guard_packet_size(client, self.max_packet, self._refused(source))
                # the replay slot is taken after CONNACK: a fake that never answers holds nothing
                async with Session(client), ReplayTurn(self.replay_slot, REPLAY_LIMIT_S) as turn:
                    attempt = 0
                    self.core.counters["relay_connects"] += 1
                    log.info("relay: connected to %s at %s", n.node_id, n.address)
                    await self._subscribe(client, n)
                    reader = asyncio.create_task(self._read(client, source, turn))
                    joined = False
                    try:
                        if self.core.replication != "push":
                            await reader
                        elif await self._verified(n, reader):
                            joined = True
                            now = self.rt.clock.now()
                            await self.perform(self.core.peer_up(n.node_id, now))
                        else:  # a v1 agent floods: read its whole broker, as v1 does
                            log.info("relay %s: a flooding (v1) neighbour", n.node_id)
                            self.core.counters["flooding_neighbours"] += 1
                            await client.subscribe(community_filter(self.community), qos=1)
                        await self._until_restarted(n, reader, joined)
                    finally:
                        reader.cancel()
                        if joined:
                            await self.perform(self.core.peer_down(n.node_id))
            except (aiomqtt.MqttError, OSError) as exc:
                delay = self.rt.backoff(attempt := attempt + 1)
                log.info("relay %s: %s; retrying in %.1f s", n.node_id, exc, delay)
            except Exception:  # whatever paho raises, reconnect
                delay = self.rt.backoff(attempt := attempt + 1)
                log.exception("relay %s failed; retrying in %.1f s", n.node_id, delay)
            await asyncio.sleep(delay)
