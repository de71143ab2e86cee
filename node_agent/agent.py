"""The node agent: discovery, relay, link probes, babeld reader, counters, state, status.

One `Agent` holds the state; each activity is a named task in one asyncio.TaskGroup. Every
decision (neighbour liveness, ETX, counter deltas, flood limits, record contents) lives in pure
code (`meshd.linkquality`, `meshd.accounting`, `node_agent.neighbours`, `node_agent.parsers`,
`node_agent.build`); the tasks here only move bytes between those and the sockets and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from meshd import defaults
from meshd.accounting import Ledger, LinkMeters, SeqReservation
from meshd.codec import Envelope, sign_record
from meshd.community import Community
from meshd.errors import RecordRejected, RejectReason
from meshd.ids import SigningKey
from meshd.linkquality import ECHO, PROBE, LinkEstimator, Packet
from meshd.records import Kind
from meshd.store import RecordStore
from meshd.topics import community_filter, parse_topic, record_topic, revocation_topic, status_topic
from meshd.trust import Enrollment, Revocation
from node_agent import build, system
from node_agent.config import Config
from node_agent.neighbours import Event, Neighbour, NeighbourTable, TokenBucket
from node_agent.parsers import BabelTable, babel_status
from node_agent.radio import RadioReader, RadioView, Runner, neighbour_macs, parse_ip_neigh

log = logging.getLogger("meshd")
SOFTWARE = f"meshd {defaults.VERSION}"
STATE_FILE = "state.json"
SERVICE_TYPE = defaults.SERVICE_TYPE
REPLAY_LIMIT_S = 3.0  # longest a neighbour holds the replay slot
MAX_PROBED = 64  # estimators kept for senders we do not know yet (bounds memory)


class ReplayTurn:
    """A neighbour's turn to replay its retained records into us: held from connect until its
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


def _jitter(seconds: float, spread: float = 0.1) -> float:
    return seconds * random.uniform(1 - spread, 1 + spread)


class Agent:
    """Async context manager: entering starts every task, leaving stops them cleanly."""

    def __init__(
        self, config: Config, key: SigningKey, cert: Enrollment, community: Community
    ) -> None:
        self.config = config
        self.key = key
        self.cert = cert
        self.community = community
        self.node_id = key.node_id
        self.store = RecordStore(community.trust)
        self.neighbours = NeighbourTable(lost_after=config.lost_after)
        self.estimators: dict[str, LinkEstimator] = {}
        self.babel = BabelTable()
        self.ledger = Ledger()
        self.link_meters = LinkMeters(self.ledger)
        self.seq = SeqReservation(block=config.seq_block)
        self.boot_id = system.boot_id()
        self.since = int(time.time())
        self.started = time.time()
        self.session = int.from_bytes(os.urandom(4))  # not `secrets`: it loads hmac
        self.probe_seq = 0
        self.counters: dict[str, int] = Counter()  # relay drops, publishes, ...
        self.neighbour_rejections: dict[str, Counter[str]] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.relay_tasks: dict[str, asyncio.Task[None]] = {}
        # One neighbour's retained replay at a time: 8 neighbours replaying 600 records at once
        # queue ~5,000 messages (~10 MB) that pymalloc never hands back to the system.
        self.replay_slot = asyncio.Semaphore(1)
        self.events: list[tuple[float, str, str]] = []  # (time, node_id, event) for status
        self.local: aiomqtt.Client | None = None
        self.local_ready = asyncio.Event()
        self.publish_now = asyncio.Event()
        self.nft: system.Nft | None = None
        self.nft_epoch = ""
        self.transport: asyncio.DatagramTransport | None = None
        self.servers: list[asyncio.Server] = []
        self.zeroconf: Any = None
        self.service_info: Any = None
        self.last_save = 0.0
        self.radio: RadioReader | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.state_path = config.state_dir / STATE_FILE
        self.run: Runner = system.run  # tests inject recorded command output here
        self.wifi_ifaces = {
            i for i in config.mesh_ifaces if i in config.wifi_ifaces or system.is_wifi(i)
        }
        self.radio_view = RadioView()
        self.macs: system.MacCounters | None = None
        self.macs_seen: dict[str, set[str]] = {}  # iface -> MACs in the last read
        self.shared_ifaces: set[str] = set()  # more than one neighbour heard there at once
        self.stations_seen: dict[str, set[str]] = {}  # iface -> MACs in its last station dump

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        self._load_state()
        self._reserve()
        self.radio = self.radio_reader()
        if self.config.nft:
            self.nft = system.Nft(
                self.config.nft_table,
                self.config.mesh_ifaces,
                self.config.gateway_iface,
                self.config.client_ifaces,
            )
            if await self.nft.setup():
                self.nft_epoch = f"{self.boot_id}/nft{self.nft.handle}"
            else:
                self.nft = None
            wired = [
                i
                for i in self.config.mesh_ifaces
                if i not in self.wifi_ifaces and system.iface_stats(i) is not None
            ]
            if wired:
                self.macs = system.MacCounters(self.config.nft_table, wired, self.run)
                if not await self.macs.setup():
                    self.macs = None
        # a link saved as shared stays on per-MAC counters, if there are any this time
        self.shared_ifaces &= set(self.macs.ifaces) if self.macs is not None else set()
        for spec in self.config.static_neighbours:
            self._add_static(spec)
        await self._read_counters()
        self.save_state()
        await self._open_probe_socket()
        tg = self._tg = asyncio.TaskGroup()
        await tg.__aenter__()
        spawn: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "local-mqtt": self._local_mqtt,
            "publisher": self._publisher,
            "prober": self._prober,
            "babel": self._babel_reader,
            "housekeeping": self._housekeeping,
            "relay-supervisor": self._relay_supervisor,
        }
        if self.config.mdns:
            spawn["discovery"] = self._discovery
        if self.config.metrics_port:
            await self._start_metrics()
        for name, factory in spawn.items():
            self._tasks.append(tg.create_task(factory(), name=name))
        log.info(
            "meshd %s started: node %s, %d mesh iface(s)",
            SOFTWARE,
            self.node_id,
            len(self.config.mesh_ifaces),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        log.info("stopping")
        for task in [*self._tasks, *self.relay_tasks.values()]:
            task.cancel()
        if self._tg is not None:
            with contextlib.suppress(BaseException):
                await self._tg.__aexit__(None, None, None)
        await self._goodbye()
        for server in self.servers:
            server.close()
        if self.transport is not None:
            self.transport.close()
        with contextlib.suppress(Exception):
            await self._read_counters()
        self.save_state()
        if self.nft is not None:
            await self.nft.remove()
        if self.macs is not None:
            await self.macs.remove()
        log.info("stopped")

    async def _goodbye(self) -> None:
        """Last status over a clean connection (a clean disconnect does not fire the will)."""
        try:
            async with aiomqtt.Client(
                "127.0.0.1", self.config.broker_port, timeout=3, identifier=None
            ) as client:
                await client.publish(
                    status_topic(self.community.name, self.node_id), b"offline", qos=1, retain=True
                )
        except (aiomqtt.MqttError, OSError) as exc:
            log.warning("could not publish the last status: %s", exc)
        if self.zeroconf is not None:
            with contextlib.suppress(Exception):
                await self.zeroconf.async_unregister_all_services()
                await self.zeroconf.async_close()

    # -- state ------------------------------------------------------------------------------

    def _load_state(self) -> None:
        data = system.read_json(self.state_path)
        if data is None:
            return
        try:
            reserved = int(data.get("seq_reserved", 0))
            self.seq = SeqReservation.resume(reserved, self.config.seq_block)
            ledger = Ledger.from_json(data.get("ledger", {}))
            link_meters = LinkMeters.from_json(ledger, data.get("links", {}))
            shared = data.get("shared", [])
            if not isinstance(shared, list) or not all(isinstance(i, str) for i in shared):
                raise ValueError("shared must be a list of interface names")
            self.ledger, self.link_meters = ledger, link_meters
            self.shared_ifaces = set(shared) & set(self.config.mesh_ifaces)
            self.since = int(data.get("since", self.since))
        except (ValueError, TypeError) as exc:
            log.warning("%s: bad state (%s); seq resumes, counters restart", self.state_path, exc)
        log.info(
            "resumed state: seq from %d, %d meter(s)", self.seq.next_seq, len(self.ledger.meters)
        )

    def _reserve(self) -> None:
        if self.seq.needs_reservation():
            proposed = self.seq.proposed()
            self._write_state(proposed)
            self.seq.commit(proposed)

    def _write_state(self, reserved: int) -> None:
        data = {
            "v": 1,
            "node_id": self.node_id,
            "seq_reserved": reserved,
            "boot_id": self.boot_id,
            "since": self.since,
            "saved_at": int(time.time()),
            "ledger": self.ledger.to_json(),
            "links": self.link_meters.to_json(),
            "shared": sorted(self.shared_ifaces),
        }
        system.write_atomic(self.state_path, json.dumps(data, sort_keys=True).encode())
        self.last_save = time.monotonic()
        self.counters["state_writes"] += 1

    def save_state(self) -> None:
        self._write_state(self.seq.reserved)

    def next_seq(self) -> int:
        self._reserve()
        return self.seq.take()

    # -- counters ---------------------------------------------------------------------------

    async def _read_counters(self) -> None:
        """Fold raw counters into the ledger; a new meter, a re-anchored baseline or a link
        passing to another neighbour is saved at once, so what a restart after kill -9 resumes
        from matches what was counted (one write per such event, not per cycle)."""
        changes = self.ledger.changes
        await self._fold_counters()
        if self.ledger.changes != changes and self.last_save:
            self.save_state()

    def p2p_owner(self, iface: str) -> str | None:
        """The neighbour a point-to-point interface's counters belong to, None if unknown or
        shared (more than one neighbour heard there at once)."""
        on_link = [n for n in self.neighbours.entries.values() if n.iface == iface]
        up = [n for n in on_link if n.up]
        if len(up) > 1 or iface in self.shared_ifaces:
            return None
        if len(up) == 1:
            return up[0].node_id
        # Nobody heard right now: the last holder keeps the link until another node shows up
        # (also just after a restart, before discovery has found anyone: owners are saved).
        previous = self.link_meters.owners.get(iface)
        return previous if all(n.node_id == previous for n in on_link) else None

    def _fold_iface(self, iface: str) -> None:
        stats = system.iface_stats(iface)
        if stats is None:
            self.link_meters.gone(iface)
            return
        epoch = f"{self.boot_id}/{iface}#{system.iface_index(iface)}"
        self.link_meters.fold(iface, stats, epoch, self.p2p_owner(iface))

    def radio_reader(self) -> RadioReader | None:
        batman = self.config.batman_iface if self.config.routing == "batman-adv" else None
        if not self.wifi_ifaces and batman is None:
            return None
        return RadioReader(self.run, self.wifi_ifaces, batman)

    async def _fold_radio(self, reader: RadioReader) -> None:
        """Per-station counters on wifi: a station's bytes are its neighbour's, also from
        before discovery (a station that shows up after our first dump counted from zero)."""
        view = self.radio_view = await reader.read(self.neighbours.entries.values())
        owner = {(iface, st.mac): node for (node, iface), st in view.stations.items()}
        for iface, stations in reader.last_stations.items():
            seen = self.stations_seen.get(iface)
            for st in stations:
                source = f"{iface}/{st.mac}"
                epoch = f"{self.boot_id}/{iface}#{system.iface_index(iface)}/{st.mac}"
                raw = {
                    "rx_bytes": st.rx_bytes,
                    "tx_bytes": st.tx_bytes,
                    "rx_packets": st.rx_packets,
                    "tx_packets": st.tx_packets,
                }
                self.link_meters.fold(
                    iface,
                    raw,
                    epoch,
                    # a station's MAC stays its node's: until discovery the last holder has it
                    owner.get((iface, st.mac)) or self.link_meters.owners.get(source),
                    source=source,
                    new=seen is not None and st.mac not in seen,
                )
            self.stations_seen[iface] = {st.mac for st in stations}

    async def _fold_macs(self, macs: system.MacCounters) -> None:
        """Per-MAC counters: the source for an interface once it is shared (more than one
        neighbour heard there at once); until then the interface's own counters serve and the
        MAC counters only keep their marks current, so nothing is credited twice."""
        totals = await macs.read()
        for iface, rows in totals.items():
            shared = iface in self.shared_ifaces
            owner: dict[str, str] = {}
            if shared:
                rc, out = await self.run("ip", "-j", "neigh", "show", "dev", iface)
                arp = parse_ip_neigh(out) if rc == 0 else {}
                for n in self.neighbours.entries.values():
                    if n.iface == iface:
                        for mac in neighbour_macs(n, arp):
                            owner[mac] = n.node_id
            seen = self.macs_seen.get(iface)
            for mac, raw in rows.items():
                source = f"{iface}/{mac}/nft"
                self.link_meters.fold(
                    iface,
                    raw,
                    f"{self.boot_id}/macnft{macs.handle}/{iface}/{mac}",
                    (owner.get(mac) or self.link_meters.owners.get(source)) if shared else None,
                    source=source,
                    new=seen is not None and mac not in seen,
                    counted_elsewhere=not shared,
                )
            self.macs_seen[iface] = set(rows)

    async def _fold_counters(self) -> None:
        for iface in self.config.mesh_ifaces:
            heard = sum(n.up for n in self.neighbours.entries.values() if n.iface == iface)
            metered = self.macs is not None and iface in self.macs.ifaces
            if heard > 1 and metered and iface not in self.shared_ifaces:
                log.info("%s is shared by several neighbours: per-MAC counters from now", iface)
                self.shared_ifaces.add(iface)
            if iface not in self.wifi_ifaces:  # wifi: per station, below
                self._fold_iface(iface)
        if self.macs is not None:
            await self._fold_macs(self.macs)
        if self.radio is not None:
            await self._fold_radio(self.radio)
        if self.nft is not None:
            for name, (nbytes, packets) in (await self.nft.counters()).items():
                self.ledger.update(f"nft/{name}/bytes", nbytes, self.nft_epoch)
                self.ledger.update(f"nft/{name}/packets", packets, self.nft_epoch)

    # -- records ----------------------------------------------------------------------------

    def _sign(self, body: build.Body, ttl_s: int) -> Envelope:
        return sign_record(
            self.key, self.cert, body, seq=self.next_seq(), issued_at=int(time.time()), ttl_s=ttl_s
        )

    def own_records(self) -> list[Envelope]:
        interval = self.config.publish_interval
        short_ttl = max(10, int(3 * interval + 1))
        long_ttl = max(3600, int(12 * interval))
        now = time.monotonic()
        node = build.node_body(
            hostname=self.config.hostname,
            model=self.config.model,
            software=SOFTWARE,
            addresses=self.config.addresses,
            gateway_kbit=self.config.gateway_kbit,
            community=self.community,
        )
        links = build.links_body(
            self.neighbours.entries.values(),
            {nid: est.sample(now) for nid, est in self.estimators.items()},
            self.babel,
            lambda iface: "wifi" if iface in self.wifi_ifaces else system.iface_medium(iface),
            self.radio_view,
        )
        traffic = build.traffic_body(
            self.ledger,
            self.neighbours.entries.values(),
            boot_id=self.boot_id,
            uptime_s=system.uptime_s(),
            since=self.since,
        )
        return [
            self._sign(node, long_ttl),
            self._sign(links, short_ttl),
            self._sign(traffic, short_ttl),
        ]

    async def publish_own(self) -> None:
        await self._read_counters()
        for env in self.own_records():
            self.store.merge(env)
            await self._publish_local(record_topic(env.community, env.node_id, env.kind), env.raw)
        self.counters["own_publishes"] += 1
        if time.monotonic() - self.last_save >= self.config.save_interval:
            self.save_state()
        self._write_status()

    async def _publisher(self) -> None:
        await self.local_ready.wait()
        last = 0.0
        while True:
            wait = _jitter(self.config.publish_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.publish_now.wait()
            self.publish_now.clear()
            # significant changes publish at once, but not more than once a second
            await asyncio.sleep(max(0.0, last + 1.0 - time.monotonic()))
            last = time.monotonic()
            try:
                await self.publish_own()
            except Exception:
                log.exception("publishing own records failed")

    # -- local broker -----------------------------------------------------------------------

    async def _publish_local(self, topic: str, payload: bytes) -> None:
        client = self.local
        if client is None:
            return
        try:
            await client.publish(topic, payload, qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            log.debug("local publish failed: %s", exc)

    async def _local_mqtt(self) -> None:
        """Our own broker: we publish into it, and read it too (admins publish revocations
        there, and anything invalid someone writes into it is answered with the record held)."""
        attempt = 0
        status = status_topic(self.community.name, self.node_id)
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.config.broker_port,
                    identifier=f"meshd-{self.node_id}",
                    protocol=aiomqtt.ProtocolVersion.V5,  # for no-local, below
                    will=aiomqtt.Will(status, b"offline", qos=1, retain=True),
                    keepalive=30,
                    timeout=10,
                    max_queued_incoming_messages=10_000,
                ) as client:
                    attempt = 0
                    self.local = client
                    await client.publish(status, b"online", qos=1, retain=True)
                    # no-local: our own publishes (every record we hold) do not come back to us
                    await client.subscribe(
                        community_filter(self.community.name),
                        options=SubscribeOptions(qos=1, noLocal=True),
                    )
                    # Reconnect heals: put back everything we hold (the broker may have restarted).
                    for env in list(self.store.records.values()):
                        await client.publish(
                            record_topic(env.community, env.node_id, env.kind),
                            env.raw,
                            qos=1,
                            retain=True,
                        )
                    self.local_ready.set()
                    self.publish_now.set()
                    async for message in client.messages:
                        await self._on_message(None, message)
            except aiomqtt.MqttError as exc:
                self.local = None
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)
                log.warning("local broker: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    # -- relay ------------------------------------------------------------------------------

    async def _relay_supervisor(self) -> None:
        """One relay task per live neighbour; lost neighbours' tasks are cancelled."""
        while True:
            live = {n.node_id: n for n in self.neighbours.up()}
            for node_id, task in list(self.relay_tasks.items()):
                n = live.get(node_id)
                if task.done() or n is None or task.get_name() != self._relay_name(n):
                    task.cancel()
                    del self.relay_tasks[node_id]
            for node_id, n in live.items():
                if node_id not in self.relay_tasks and self._tg is not None:
                    self.relay_tasks[node_id] = self._tg.create_task(
                        self._relay(n), name=self._relay_name(n)
                    )
            await asyncio.sleep(0.5)

    @staticmethod
    def _relay_name(n: Neighbour) -> str:
        return f"relay:{n.node_id}@{n.address}:{n.broker_port}"

    async def _relay(self, n: Neighbour) -> None:
        attempt = 0
        bucket = self.buckets.setdefault(
            n.node_id, TokenBucket(self.config.neighbour_rate, self.config.neighbour_burst)
        )
        while True:
            delay = 1.0
            try:
                async with (
                    ReplayTurn(self.replay_slot, REPLAY_LIMIT_S) as turn,
                    aiomqtt.Client(
                        n.address,
                        n.broker_port,
                        identifier=f"meshd-{self.node_id}-{n.node_id[:8]}",
                        keepalive=10,
                        timeout=5,
                        max_queued_incoming_messages=5_000,
                    ) as client,
                ):
                    attempt = 0
                    self.counters["relay_connects"] += 1
                    log.info("relay: connected to %s at %s", n.node_id, n.address)
                    await client.subscribe(community_filter(self.community.name), qos=1)
                    async for message in client.messages:
                        if turn.held and not len(client.messages):
                            turn.release()  # replay drained: the next neighbour may start
                        payload = message.payload
                        size = len(payload) if isinstance(payload, (bytes, bytearray)) else 0
                        if not bucket.allow(time.monotonic()):
                            self.counters["relay_rate_limited"] += 1
                            self._count_neighbour(n.node_id, "rate_limited")
                            continue
                        if size > self.store.limits.max_bytes:
                            self.store.rejections[RejectReason.TOO_LARGE] += 1
                            self._count_neighbour(n.node_id, RejectReason.TOO_LARGE.value)
                            continue
                        await self._on_message(n.node_id, message)
            except aiomqtt.MqttError as exc:
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)
                log.info("relay %s: %s; retrying in %.1f s", n.node_id, exc, delay)
            await asyncio.sleep(delay)

    def _count_neighbour(self, node_id: str, reason: str) -> None:
        self.neighbour_rejections.setdefault(node_id, Counter())[reason] += 1

    async def _on_message(self, source: str | None, message: aiomqtt.Message) -> None:
        """`source` is the neighbour it came from, None for our own broker."""
        payload = message.payload
        if not isinstance(payload, (bytes, bytearray)) or not payload:
            return  # cleared topic
        parsed = parse_topic(message.topic.value)
        if parsed is None or parsed[0] != self.community.name:
            return
        _, middle, last = parsed
        data = bytes(payload)
        if middle == "_revocations":
            await self._on_revocation(data)
            return
        if last == "status":
            offline = source is not None and middle == source and data == b"offline"
            if offline and self.neighbours.gone(middle, time.monotonic()):
                self._event(middle, Event.LOST)
            return
        try:
            env = self.store.offer(data, time.time())
        except RecordRejected as exc:
            if exc.reason not in (RejectReason.DUPLICATE,):
                log.debug("rejected from %s: %s", source or "local broker", exc)
                if source is not None:
                    self._count_neighbour(source, exc.reason.value)
            if source is None and exc.reason is not RejectReason.DUPLICATE:
                await self._restore_local(message.topic.value, middle, last)
            return
        if env.node_id != middle or env.kind.value != last:
            # a valid record on the wrong topic: keep it, but put it where it belongs
            await self._restore_local(message.topic.value, middle, last)
        self.counters["relayed" if source else "accepted_local"] += 1
        await self._publish_local(record_topic(env.community, env.node_id, env.kind), env.raw)

    async def _restore_local(self, topic: str, node_id: str, kind: str) -> None:
        """Something invalid sits on our broker: replace it with what we hold, or clear it."""
        kinds = {k.value: k for k in Kind}
        held = self.store.records.get((node_id, kinds[kind])) if kind in kinds else None
        wanted = held.raw if held is not None else b""
        if held is not None and topic != record_topic(held.community, held.node_id, held.kind):
            wanted = b""
        self.counters["local_restored"] += 1
        await self._publish_local(topic, wanted)

    async def _on_revocation(self, data: bytes) -> None:
        try:
            revocation = Revocation.from_json(json.loads(data))
        except (ValueError, TypeError) as exc:
            log.info("malformed revocation ignored: %s", exc)
            self.counters["revocations_malformed"] += 1
            return
        if revocation.node_id in self.store.revoked:
            return
        try:
            self.store.revoke(revocation)
        except RecordRejected as exc:
            log.info("revocation refused: %s", exc)
            self.counters["revocations_refused"] += 1
            return
        log.warning("node %s revoked by the admins: %s", revocation.node_id, revocation.reason)
        await self._publish_local(
            revocation_topic(self.community.name, revocation.node_id), revocation.encode()
        )
        for kind in Kind:
            await self._publish_local(
                record_topic(self.community.name, revocation.node_id, kind), b""
            )
        await self._publish_local(status_topic(self.community.name, revocation.node_id), b"")
        self.counters["revocations_applied"] += 1

    # -- discovery --------------------------------------------------------------------------

    def _event(self, node_id: str, event: Event) -> None:
        log.info("neighbour %s %s", node_id, event.value)
        self.events.append((time.time(), node_id, event.value))
        del self.events[:-50]
        self.counters[f"neighbour_{event.value}"] += 1
        self.publish_now.set()

    def _add_static(self, spec: str) -> None:
        """NODE_ID@ADDRESS%IFACE:PORT or NODE_ID@ADDRESS:PORT with IFACE from --mesh-iface."""
        try:
            node_id, rest = spec.split("@", 1)
            rest, _, probe = rest.partition("/")
            address, port = rest.rsplit(":", 1)
            iface = address.split("%", 1)[1] if "%" in address else self.config.mesh_ifaces[0]
            address = address.strip("[]")
            event = self.neighbours.seen(node_id, iface, address, int(port), time.monotonic())
            self.neighbours.entries[node_id].probe_port = int(probe) if probe else 0
        except (ValueError, IndexError):
            log.error("bad --static-neighbour %r (want NODE_ID@ADDRESS:PORT[/PROBE])", spec)
            return
        if event:
            self._event(node_id, event)

    def pick_address(self, addresses: list[str]) -> tuple[str, str] | None:
        """(iface, address) to reach a peer that advertised `addresses` (scoped link-locals).

        mDNS on several links hands us all of a peer's addresses, so choose: an IPv4 address in
        a mesh interface's subnet, else a link-local babeld lists as a neighbour, else a
        link-local scoped to a mesh interface.
        """
        local = system.local_addresses(self.config.mesh_ifaces)
        for addr in addresses:
            try:
                ip = ipaddress.ip_address(addr.split("%", 1)[0])
            except ValueError:
                continue
            if ip.version == 4:
                for la in local:
                    if la.network.version == 4 and ip in la.network and str(ip) != la.address:
                        return la.iface, str(ip)
        index_to_name = {la.index: la.iface for la in local}
        scoped: list[tuple[str, str]] = []
        for addr in addresses:
            if "%" not in addr or not addr.lower().startswith("fe80"):
                continue
            bare, scope = addr.split("%", 1)
            iface = index_to_name.get(int(scope)) if scope.isdigit() else scope
            if iface is None:
                continue
            babel = self.babel.neighbour_at(bare)
            if babel is not None and babel.iface in self.config.mesh_ifaces:
                return babel.iface, f"{bare}%{babel.iface}"
            scoped.append((iface, f"{bare}%{iface}"))
        return scoped[0] if scoped else None

    async def _discovery(self) -> None:
        from zeroconf import IPVersion, ServiceStateChange
        from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

        local = system.local_addresses(self.config.mesh_ifaces)
        interfaces: list[str | int] = sorted(
            {la.address for la in local if la.network.version == 4}
        )
        interfaces += sorted({la.index for la in local if la.network.version == 6})
        if not interfaces:
            log.error(
                "no addresses on the mesh interfaces %s; discovery off", self.config.mesh_ifaces
            )
            return
        azc = self.zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.All)
        pending: set[asyncio.Task[None]] = set()

        async def resolve(name: str) -> None:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, 3000):
                return
            txt = {
                k.decode(errors="replace"): (v or b"").decode(errors="replace")
                for k, v in info.properties.items()
            }
            peer = txt.get("id", "")
            if txt.get("community") != self.community.name or peer == self.node_id:
                return
            if txt.get("v") != "1":
                log.info("ignoring %s: protocol version %r", name, txt.get("v"))
                return
            picked = self.pick_address(info.parsed_scoped_addresses())
            if picked is None:
                log.info("no usable address for %s in %s", peer, info.parsed_scoped_addresses())
                return
            try:
                port = int(txt.get("port", "1883"))
            except ValueError:
                return
            event = self.neighbours.seen(
                peer,
                picked[0],
                picked[1],
                port,
                time.monotonic(),
                txt.get("fp", ""),
                tuple(a.split("%", 1)[0] for a in info.parsed_scoped_addresses()),
            )
            with contextlib.suppress(ValueError):
                self.neighbours.entries[peer].probe_port = int(txt.get("probe", "0"))
            if event:
                self._event(peer, event)

        def on_change(
            zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange
        ) -> None:
            if state_change is ServiceStateChange.Removed:
                for n in list(self.neighbours.entries.values()):
                    mine = name.startswith(f"{n.node_id}.")
                    if mine and self.neighbours.gone(n.node_id, time.monotonic()):
                        self._event(n.node_id, Event.LOST)
                return
            task = asyncio.get_running_loop().create_task(resolve(name))
            pending.add(task)
            task.add_done_callback(pending.discard)

        browser = AsyncServiceBrowser(azc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        mine = [la.address for la in local if la.network.version == 4]
        mine += [
            f"{la.address}%{la.index}" if "%" not in la.address else la.address
            for la in local
            if la.network.version == 6 and la.address.lower().startswith("fe80")
        ]
        self.service_info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self.node_id}.{SERVICE_TYPE}",
            port=self.config.broker_port,
            server=f"{self.node_id}.local.",
            parsed_addresses=[a.split("%", 1)[0] for a in mine],
            properties={
                "v": "1",
                "id": self.node_id,
                "community": self.community.name,
                "port": str(self.config.broker_port),
                "probe": str(self.config.probe_port),
                "fp": self.key.public.fingerprint,
            },
        )
        await azc.async_register_service(
            self.service_info, cooperating_responders=self.config.mdns_fast
        )
        log.info("mDNS: registered on %s", interfaces)
        try:
            await asyncio.Event().wait()
        finally:
            await browser.async_cancel()

    # -- probes -----------------------------------------------------------------------------

    async def _open_probe_socket(self) -> None:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", self.config.probe_port))
        loop = asyncio.get_running_loop()
        agent = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
                agent._on_datagram(data, addr)

        transport, _ = await loop.create_datagram_endpoint(Protocol, sock=sock)
        self.transport = transport

    def _estimator(self, node_id: str) -> LinkEstimator | None:
        est = self.estimators.get(node_id)
        if est is None:
            if len(self.estimators) >= MAX_PROBED and node_id not in self.neighbours.entries:
                return None
            est = self.estimators[node_id] = LinkEstimator(
                self.config.probe_interval, self.config.probe_window
            )
        return est

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        packet = Packet.decode(data)
        if packet is None or packet.node_id == self.node_id:
            return
        now = time.monotonic()
        est = self._estimator(packet.node_id)
        if est is None:
            return
        if packet.kind == PROBE:
            got, span = est.on_probe(packet.session, packet.seq, now)
            reply = Packet(
                ECHO, packet.session, packet.seq, packet.sent_at, got, span, self.node_id
            )
            if self.transport is not None:
                self.transport.sendto(reply.encode(), addr)
        elif packet.kind == ECHO and packet.session == self.session:
            est.on_echo(packet, now)
        else:
            return
        if self.neighbours.heard(packet.node_id, now):
            self._event(packet.node_id, Event.APPEARED)

    @staticmethod
    def _sockaddr(address: str, port: int) -> tuple[Any, ...]:
        if "%" in address:
            bare, iface = address.split("%", 1)
            return (bare, port, 0, system.iface_index(iface) or 0)
        if ":" in address:
            return (address, port, 0, 0)
        return (f"::ffff:{address}", port, 0, 0)

    async def _prober(self) -> None:
        while True:
            await asyncio.sleep(_jitter(self.config.probe_interval, 0.05))
            self.probe_seq += 1
            packet = Packet(
                PROBE, self.session, self.probe_seq, time.monotonic(), 0, 0, self.node_id
            )
            data = packet.encode()
            for n in list(self.neighbours.entries.values()):
                self._estimator(n.node_id)
                if self.transport is None:
                    continue
                try:
                    self.transport.sendto(
                        data, self._sockaddr(n.address, n.probe_port or self.config.probe_port)
                    )
                except OSError as exc:
                    log.debug("probe to %s failed: %s", n.node_id, exc)

    # -- babeld -----------------------------------------------------------------------------

    async def _babel_reader(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await asyncio.open_connection("::1", self.config.babel_port)
            except OSError as exc:
                attempt += 1
                delay = min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)
                log.debug("babeld not reachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.babel = BabelTable()
            try:
                while True:  # greeting, up to its `ok`
                    line = (await reader.readline()).decode(errors="replace")
                    if not line or babel_status(line):
                        break
                writer.write(b"monitor\n")
                await writer.drain()
                log.info("babeld: monitoring on port %d", self.config.babel_port)
                while True:
                    raw = await reader.readline()
                    if not raw:
                        break
                    self.babel.apply(raw.decode(errors="replace"))
            except OSError as exc:
                log.info("babeld connection lost: %s", exc)
            finally:
                writer.close()
            await asyncio.sleep(1.0)

    # -- housekeeping, status ---------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for node_id, event in self.neighbours.tick(now):
                self._event(node_id, event)
            for iface in list(self.link_meters.absent):
                self._fold_iface(iface)  # baseline a mesh interface as soon as it appears
            for env in self.store.expire(time.time()):
                await self._publish_local(record_topic(env.community, env.node_id, env.kind), b"")
            for node_id in list(self.estimators):
                if node_id not in self.neighbours.entries:
                    sample = self.estimators[node_id].sample(now)
                    if sample.heard_at is None or now - sample.heard_at > 600:
                        del self.estimators[node_id]

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        neighbours = []
        for n in self.neighbours.entries.values():
            est = self.estimators.get(n.node_id)
            s = est.sample(now) if est else None
            neighbours.append(
                {
                    "node_id": n.node_id,
                    "iface": n.iface,
                    "address": n.address,
                    "up": n.up,
                    "etx": s.etx if s else None,
                    "loss": s.loss if s else None,
                    "rtt_ms": s.rtt_ms if s else None,
                    "delivery_rx": s.delivery_rx if s else None,
                    "delivery_tx": s.delivery_tx if s else None,
                    **build.radio_fields(n, self.radio_view),
                }
            )
        return {
            "node_id": self.node_id,
            "hostname": self.config.hostname,
            "community": self.community.name,
            "software": SOFTWARE,
            "time": int(time.time()),
            "uptime_agent_s": int(time.time() - self.started),
            "seq_next": self.seq.next_seq,
            "seq_reserved": self.seq.reserved,
            "boot_id": self.boot_id,
            "neighbours": neighbours,
            "records_held": len(self.store),
            "nodes_known": len(self.store.node_ids()),
            "rejections": {r.value: c for r, c in self.store.rejections.items()},
            "neighbour_rejections": {k: dict(v) for k, v in self.neighbour_rejections.items()},
            "counters": dict(self.counters),
            "totals": {name: m.total for name, m in self.ledger.meters.items()},
            "events": [{"t": t, "node_id": nid, "event": e} for t, nid, e in self.events],
        }

    def _write_status(self) -> None:
        if self.config.status_file is None:
            return
        try:
            # tmpfs on a router: no fsync, wear does not apply
            system.write_atomic(
                self.config.status_file, json.dumps(self.status()).encode(), durable=False
            )
        except OSError as exc:
            log.warning("status file %s: %s", self.config.status_file, exc)

    async def _start_metrics(self) -> None:
        hosts = {"127.0.0.1", "::1", *self.config.addresses}
        hosts |= {
            la.address
            for la in system.local_addresses(self.config.mesh_ifaces)
            if la.network.version == 4
        }
        for host in sorted(hosts):
            try:
                server = await asyncio.start_server(
                    self._serve_http, host, self.config.metrics_port
                )
            except OSError as exc:
                log.info(
                    "metrics: cannot listen on %s:%d (%s)", host, self.config.metrics_port, exc
                )
                continue
            self.servers.append(server)

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode(errors="replace").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/metrics":
                body, ctype, code = (
                    build.metrics_text(self.status()).encode(),
                    "text/plain; version=0.0.4",
                    "200 OK",
                )
            elif path == "/status":
                body, ctype, code = json.dumps(self.status()).encode(), "application/json", "200 OK"
            else:
                body, ctype, code = b"not found\n", "text/plain", "404 Not Found"
            writer.write(
                f"HTTP/1.0 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()


async def run(
    config: Config,
    key: SigningKey,
    cert: Enrollment,
    community: Community,
    shutdown_trigger: Callable[[], Awaitable[object]],
) -> Agent:
    """Run until `shutdown_trigger()` returns; returns the stopped agent (for tests)."""
    async with Agent(config, key, cert, community) as agent:
        await shutdown_trigger()
    return agent


def state_path(config: Config) -> Path:
    return config.state_dir / STATE_FILE
