"""Our own records: node, links and traffic, signed with fresh seqs, each kind on its own
jittered schedule (meshd/sync.py), links and traffic at once (at most once a second) when
something significant changed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable

from meshd import defaults, sync
from meshd.codec import Envelope, sign_record
from meshd.community import Community
from meshd.ids import SigningKey
from meshd.records import Kind, LinksBody
from meshd.trust import Enrollment
from node_agent import build, flows
from node_agent.config import Config
from node_agent.counters import Counting
from node_agent.neighbours import NeighbourTable
from node_agent.parsers import BabelTable
from node_agent.probes import Prober
from node_agent.runtime import Runtime

log = logging.getLogger("meshd")
SOFTWARE = f"meshd {defaults.VERSION}"


class Publisher:
    def __init__(
        self,
        config: Config,
        rt: Runtime,
        key: SigningKey,
        cert: Enrollment,
        community: Community,
        next_seq: Callable[[], int],
    ) -> None:
        self.config = config
        self.rt = rt
        self.key = key
        self.cert = cert
        self.community = community
        self.next_seq = next_seq
        self.now = asyncio.Event()  # set: publish as soon as allowed
        self.schedule = sync.PublishSchedule(sync.agent_policy(config.publish_interval))
        self.last_links: LinksBody | None = None  # as last published

    def renew(self) -> None:
        """Our broker came back, perhaps empty: what it is given back is what we held, so sign
        every kind afresh now (within each kind's gap) rather than at the next refresh: the
        neighbours then see this node current within seconds, not a node record up to
        `10 * interval` old (the killed-broker test in tests/lab/test_faults.py)."""
        for kind in Kind:
            self.schedule.change(kind)
        self.now.set()

    def sign(self, body: build.Body, ttl_s: int) -> Envelope:
        return sign_record(
            self.key,
            self.cert,
            body,
            seq=self.next_seq(),
            issued_at=int(self.rt.clock.now()),
            ttl_s=ttl_s,
        )

    def own_records(
        self,
        neighbours: NeighbourTable,
        prober: Prober,
        babel: BabelTable,
        counting: Counting,
        since: int,
        boot_id: str,
        nodes: int = 0,
    ) -> list[Envelope]:
        now = self.rt.clock.monotonic()
        # per kind (meshd/sync.py): the node record rarely, and every kind more slowly in a
        # large community
        self.schedule.policy = policy = sync.agent_policy(self.config.publish_interval, nodes)
        due = self.schedule.due(now)
        for kind in due:
            self.schedule.published(kind, now, self.rt.jitter(1.0))
        out = []
        if Kind.NODE in due:
            node = build.node_body(
                hostname=self.config.hostname,
                model=self.config.model,
                software=SOFTWARE,
                addresses=self.config.addresses,
                gateway_kbit=self.config.gateway_kbit,
                community=self.community,
            )
            out.append(self.sign(node, policy[Kind.NODE].ttl_s))
        last_links = self.schedule.last.get(Kind.LINKS)
        gap = policy[Kind.LINKS].min_gap_s
        if Kind.LINKS in due or (last_links is not None and now >= last_links + gap):
            links = build.links_body(
                # a link is claimed in our signed record only to a neighbour that proved its id
                [n for n in neighbours.entries.values() if n.verified],
                {nid: est.sample(now) for nid, est in prober.estimators.items()},
                babel,
                lambda iface: (
                    "wifi" if iface in counting.wifi_ifaces else self.rt.sys.iface_medium(iface)
                ),
                counting.radio_view,
            )
            # between slow refreshes, a measured change still publishes at once
            if Kind.LINKS in due or sync.links_changed(self.last_links, links):
                if Kind.LINKS not in due:
                    self.schedule.published(Kind.LINKS, now, self.rt.jitter(1.0))
                self.last_links = links
                out.append(self.sign(links, policy[Kind.LINKS].ttl_s))
        if Kind.TRAFFIC in due:
            traffic = build.traffic_body(
                counting.ledger,
                neighbours.entries.values(),
                boot_id=boot_id,
                uptime_s=self.rt.sys.uptime_s(),
                since=since,
            )
            # what this node's clients and the router itself exchanged with each destination
            traffic = dataclasses.replace(
                traffic, endpoints=flows.endpoint_flows(counting.flow_totals)
            )
            out.append(self.sign(traffic, policy[Kind.TRAFFIC].ttl_s))
        return out

    async def run(self, ready: asyncio.Event, publish: Callable[[], Awaitable[None]]) -> None:
        await ready.wait()
        last = 0.0
        while True:
            mono = self.rt.clock.monotonic()
            # at least every interval: counters fold, and a link change may be due (`sync`)
            wait = min(self.schedule.wake_at(mono) - mono, self.config.publish_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, wait)):
                    await self.now.wait()
            if self.now.is_set():  # something significant changed: links and traffic now
                self.now.clear()
                self.schedule.change(Kind.LINKS)
                self.schedule.change(Kind.TRAFFIC)
            # significant changes publish at once, but not more than once a second
            await asyncio.sleep(max(0.0, last + 1.0 - self.rt.clock.monotonic()))
            last = self.rt.clock.monotonic()
            try:
                await publish()
            except Exception:  # the next round tries again
                log.exception("publishing own records failed")
