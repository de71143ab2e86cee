"""The node agent: wiring only. Each concern has its module and the `Agent` connects them:

- `relay_core` decides what every MQTT message means (pure); `relay` runs the MQTT clients;
- `discovery` (mDNS, static neighbours), `probes` (UDP link probes), `counters` (bytes per
  neighbour), `state` (the persisted file), `publisher` (our own records), `status` (status
  dict's server, HTTP);
- `runtime` is what they ask of the world (clocks, randomness, system), injectable for tests.

Each activity is a named task in one asyncio.TaskGroup, and each is supervised: an unexpected
exception is logged and the activity restarts, so no single input can end the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from meshd.accounting import Ledger, LinkMeters, SeqReservation
from meshd.community import Community
from meshd.errors import RecordRejected
from meshd.ids import SigningKey
from meshd.linkquality import LinkEstimator
from meshd.store import RecordStore
from meshd.trust import Enrollment
from node_agent import build, members, system
from node_agent.config import Config
from node_agent.counters import Counting
from node_agent.discovery import Discovery
from node_agent.neighbours import Event, NeighbourTable
from node_agent.parsers import BabelTable, babel_status
from node_agent.probes import Prober
from node_agent.publisher import SOFTWARE, Publisher
from node_agent.radio import RadioReader, Runner
from node_agent.relay import Relay, ReplayTurn
from node_agent.relay_core import RelayCore
from node_agent.relay_push import PushCore
from node_agent.runtime import Runtime
from node_agent.state import STATE_FILE, StateFile
from node_agent.status import StatusServer

__all__ = ["SOFTWARE", "STATE_FILE", "Agent", "ReplayTurn", "run", "state_path"]
log = logging.getLogger("meshd")
MAX_EVENTS = 50


class Agent:
    """Async context manager: entering starts every task, leaving stops them cleanly."""

    def __init__(
        self,
        config: Config,
        key: SigningKey,
        cert: Enrollment,
        community: Community,
        rt: Runtime | None = None,
    ) -> None:
        self.config = config
        self.rt = rt = rt or Runtime()
        self.key = key
        self.cert = cert
        self.community = community
        self.node_id = key.node_id
        self.store = RecordStore(community.trust)
        core_type = PushCore if config.replication == "push" else RelayCore
        self.core = core_type(
            self.store, self.node_id, config.neighbour_rate, config.neighbour_burst
        )
        self.neighbours = NeighbourTable(lost_after=config.lost_after)
        self.babel = BabelTable()
        self.boot_id = rt.sys.boot_id()
        self.started = rt.clock.now()
        self.since = int(self.started)
        self.counters: Counter[str] = Counter()  # publishes, state writes, neighbour events
        self.events: list[tuple[float, str, str]] = []  # (time, node_id, event) for status
        self.state = StateFile(config.state_dir / STATE_FILE, rt.clock, config.seq_block)
        self.counting = Counting(config, rt, self.neighbours, self.boot_id)
        self.counting.on_change = self._counted
        self.prober = Prober(config, rt, self.node_id, self.neighbours, self._event)
        self.discovery = Discovery(
            config,
            rt,
            self.node_id,
            community.name,
            key.public.fingerprint,
            self.neighbours,
            lambda: self.babel,
            self._event,
        )
        self.publisher = Publisher(config, rt, key, cert, community, self.next_seq)
        self.relay = Relay(
            config,
            rt,
            self.core,
            self.neighbours,
            self._event,
            self.save_state,
            self._overtake,
            self.publisher.renew,
        )
        self.http = StatusServer(self.status)
        members.install_routes(self, self.http.routes)  # the page, /api/*, exports, /metrics
        self.babeld_version: str | None = None  # from babeld's greeting, for /netjson, respondd
        self.respondd: asyncio.DatagramTransport | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    # -- what tests and tools reach into ----------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        return self.counting.ledger

    @property
    def link_meters(self) -> LinkMeters:
        return self.counting.link_meters

    @property
    def shared_ifaces(self) -> set[str]:
        return self.counting.shared_ifaces

    @property
    def macs(self) -> system.MacCounters | None:
        return self.counting.macs

    @macs.setter
    def macs(self, value: system.MacCounters | None) -> None:
        self.counting.macs = value

    @property
    def radio(self) -> RadioReader | None:
        return self.counting.radio

    @radio.setter
    def radio(self, value: RadioReader | None) -> None:
        self.counting.radio = value

    @property
    def run(self) -> Runner:
        return self.rt.sys.run

    @run.setter
    def run(self, value: Runner) -> None:
        self.rt.sys.run = value

    @property
    def seq(self) -> SeqReservation:
        return self.state.seq

    @property
    def estimators(self) -> dict[str, LinkEstimator]:
        return self.prober.estimators

    def radio_reader(self) -> RadioReader | None:
        return self.counting.radio_reader()

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Agent:
        self._load_state()
        self._reserve()
        await self.counting.setup()
        # a link saved as shared stays on per-MAC counters, if there are any this time
        macs = self.counting.macs
        self.counting.shared_ifaces &= set(macs.ifaces) if macs is not None else set()
        for spec in self.config.static_neighbours:
            self.discovery.add_static(spec)
        await self._read_counters()
        self.save_state()
        await self.prober.open()
        tg = self._tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self.relay.spawn = lambda coro, name: tg.create_task(coro, name=name)
        spawn: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "local-mqtt": self.relay.run_local,
            "publisher": lambda: self.publisher.run(self.relay.local_ready, self.publish_own),
            "prober": self.prober.run,
            "babel": self._babel_reader,
            "housekeeping": self._housekeeping,
            "relay-supervisor": self.relay.supervise,
            "relay-ticks": self.relay.run_ticks,
        }
        if self.config.mdns:
            spawn["discovery"] = self.discovery.run
        if self.config.metrics_port:
            await self.http.start(self._http_hosts(), self.config.metrics_port)
        self.respondd = await members.start_respondd(self)
        for name, factory in spawn.items():
            self._tasks.append(tg.create_task(self._supervised(name, factory), name=name))
        log.info(
            "%s started: node %s, %d mesh iface(s)",
            SOFTWARE,
            self.node_id,
            len(self.config.mesh_ifaces),
        )
        return self

    async def _supervised(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Run one activity; if it raises, log the original exception and start it again."""
        attempt = 0
        while True:
            try:
                await factory()
                return
            except Exception:  # one activity's failure must not end the others
                self.counters[f"task_failed/{name}"] += 1
                attempt += 1
                log.exception("%s failed; restarting", name)
                await asyncio.sleep(self.rt.backoff(attempt, cap=10.0))

    async def __aexit__(self, *exc: object) -> None:
        log.info("stopping")
        said = await self.relay.say_offline()  # before the tasks end (relay.say_offline)
        for task in [*self._tasks, *self.relay.tasks.values()]:
            task.cancel()
        if self._tg is not None:
            with contextlib.suppress(BaseException):
                await self._tg.__aexit__(None, None, None)
        await self._goodbye(said)
        await self.http.close()
        if self.respondd is not None:
            self.respondd.close()
        self.prober.close()
        with contextlib.suppress(Exception):
            await self._read_counters()
        self.save_state()
        await self.counting.teardown()
        log.info("stopped")

    async def _goodbye(self, said: bool) -> None:
        """The last status over a fresh connection, when the live one could not say it."""
        if not said:
            await self.relay.goodbye()
        await self.discovery.close()

    # -- state ------------------------------------------------------------------------------

    def _load_state(self) -> None:
        loaded = self.state.read(self.config.mesh_ifaces)
        if loaded is None:
            return
        if loaded.ledger is not None and loaded.links is not None:
            self.counting.ledger, self.counting.link_meters = loaded.ledger, loaded.links
            self.counting.shared_ifaces = loaded.shared
        if loaded.since is not None:
            self.since = loaded.since
        for revocation in loaded.revocations:
            try:
                self.store.revoke(revocation)
            except RecordRejected as exc:
                log.warning("saved revocation of %s refused: %s", revocation.node_id, exc)
        log.info(
            "resumed state: seq from %d, %d meter(s), %d revocation(s)",
            self.seq.next_seq,
            len(self.ledger.meters),
            len(self.store.revoked),
        )

    def _fields(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "boot_id": self.boot_id,
            "since": self.since,
            "ledger": self.ledger.to_json(),
            "links": self.link_meters.to_json(),
            "shared": sorted(self.shared_ifaces),
            "revocations": self.state.revocations_json(self.store.revoked.values()),
        }

    def _reserve(self) -> None:
        self.state.reserve(self._fields())
        self.counters["state_writes"] = self.state.writes

    def save_state(self) -> None:
        self.state.write(self.seq.reserved, self._fields())
        self.counters["state_writes"] = self.state.writes

    def _overtake(self, seq: int) -> None:
        """A record of ours with `seq` came back that we did not sign in this run (state lost,
        or our key used elsewhere): continue above it, so our next records are newest again."""
        if seq < self.seq.next_seq:
            return
        log.warning("a record of this node with seq %d is out there; continuing above it", seq)
        self.state.seq = SeqReservation.resume(
            self.store.seq_to_overtake(self.node_id) - 1, self.seq.block
        )
        self._reserve()
        self.counters["seq_overtaken"] += 1
        self.publisher.now.set()

    def next_seq(self) -> int:
        self._reserve()
        return self.seq.take()

    # -- counters and own records -----------------------------------------------------------

    def _counted(self) -> None:
        if self.state.last_save:
            self.save_state()

    async def _read_counters(self) -> None:
        await self.counting.refresh_flows(self.store, self.node_id)  # when peers' addresses change
        await self.counting.read()

    def p2p_owner(self, iface: str) -> str | None:
        return self.counting.p2p_owner(iface)

    def own_records(self) -> list[Any]:
        return self.publisher.own_records(
            self.neighbours,
            self.prober,
            self.babel,
            self.counting,
            self.since,
            self.boot_id,
            nodes=len(self.store.node_ids()),
        )

    async def publish_own(self) -> None:
        await self._read_counters()
        for env in self.own_records():
            await self.relay.perform(self.core.own(env))
        self.counters["own_publishes"] += 1
        if self.rt.clock.monotonic() - self.state.last_save >= self.config.save_interval:
            self.save_state()
        self._write_status()

    # -- babeld -----------------------------------------------------------------------------

    async def _babel_reader(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await asyncio.open_connection("::1", self.config.babel_port)
            except OSError as exc:
                delay = self.rt.backoff(attempt := attempt + 1)
                log.debug("babeld not reachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            attempt = 0
            self.babel = BabelTable()
            try:
                while True:  # greeting, up to its `ok`
                    line = (await reader.readline()).decode(errors="replace")
                    if line.startswith("version "):
                        self.babeld_version = line[8:].strip()[:64] or None
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
            except (OSError, ValueError) as exc:  # ValueError: a line over the reader's limit
                log.info("babeld connection lost: %s", exc)
            finally:
                writer.close()
            await asyncio.sleep(1.0)

    # -- housekeeping, events, status -------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self.rt.clock.monotonic()
            for node_id, event in self.neighbours.tick(now):
                self._event(node_id, event)
            for iface in list(self.link_meters.absent):
                self.counting.fold_iface(iface)  # baseline a mesh interface once it appears
            await self.relay.perform(self.core.expire(self.rt.clock.now()))
            self.prober.prune(now)
            links = {n.link for n in self.neighbours.entries.values()}
            for link in [k for k in self.core.verified if k not in links]:
                self.core.forget(link)

    def _event(self, node_id: str, event: Event) -> None:
        log.info("neighbour %s %s", node_id, event.value)
        self.events.append((self.rt.clock.now(), node_id, event.value))
        del self.events[:-MAX_EVENTS]
        self.counters[f"neighbour_{event.value}"] += 1
        self.publisher.now.set()

    def status(self) -> dict[str, Any]:
        now = self.rt.clock.monotonic()
        wall = self.rt.clock.now()
        neighbours = []
        for n in self.neighbours.entries.values():
            est = self.prober.estimators.get(n.node_id)
            s = est.sample(now) if est else None
            neighbours.append(
                {
                    "node_id": n.node_id,
                    "iface": n.iface,
                    "address": n.address,
                    "up": n.up,
                    "verified": n.verified,
                    "etx": s.etx if s else None,
                    "loss": s.loss if s else None,
                    "rtt_ms": s.rtt_ms if s else None,
                    "delivery_rx": s.delivery_rx if s else None,
                    "delivery_tx": s.delivery_tx if s else None,
                    **build.radio_fields(n, self.counting.radio_view),
                }
            )
        counters: Counter[str] = Counter(self.counters)
        for extra in (
            self.core.counters,
            self.prober.counters,
            self.http.counters,
            {f"mdns_ignored/{k}": v for k, v in self.discovery.ignored.items()},
            {"neighbour_announcements_refused": self.neighbours.refused},
        ):
            counters.update(extra)
        return {
            "node_id": self.node_id,
            "hostname": self.config.hostname,
            "community": self.community.name,
            "software": SOFTWARE,
            "time": int(wall),
            "uptime_agent_s": int(wall - self.started),
            "seq_next": self.seq.next_seq,
            "seq_reserved": self.seq.reserved,
            "boot_id": self.boot_id,
            "neighbours": neighbours,
            "records_held": len(self.store),
            "nodes_known": len(self.store.node_ids()),
            "revoked": sorted(self.store.revoked),
            "rejections": {r.value: c for r, c in self.store.rejections.items()},
            "neighbour_rejections": {k: dict(v) for k, v in self.core.by_source.items()},
            "relay_traffic": {k: dict(v) for k, v in self.relay.traffic.items()},
            "replication": self.core.replication,
            "counters": dict(counters),
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

    def _http_hosts(self) -> list[str]:
        hosts = {"127.0.0.1", "::1", *self.config.addresses}
        hosts |= {
            la.address
            for la in self.rt.sys.local_addresses(self.config.mesh_ifaces)
            if la.network.version == 4
        }
        return sorted(hosts)


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
