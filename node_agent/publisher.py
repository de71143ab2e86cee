"""Our own records: node, links and traffic, signed with fresh seqs and published on a jittered
interval, or at once (at most once a second) when something significant changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from meshd import defaults
from meshd.codec import Envelope, sign_record
from meshd.community import Community
from meshd.ids import SigningKey
from meshd.trust import Enrollment
from node_agent import build
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
    ) -> list[Envelope]:
        interval = self.config.publish_interval
        short_ttl = max(10, int(3 * interval + 1))
        long_ttl = max(3600, int(12 * interval))
        now = self.rt.clock.monotonic()
        node = build.node_body(
            hostname=self.config.hostname,
            model=self.config.model,
            software=SOFTWARE,
            addresses=self.config.addresses,
            gateway_kbit=self.config.gateway_kbit,
            community=self.community,
        )
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
        traffic = build.traffic_body(
            counting.ledger,
            neighbours.entries.values(),
            boot_id=boot_id,
            uptime_s=self.rt.sys.uptime_s(),
            since=since,
        )
        return [
            self.sign(node, long_ttl),
            self.sign(links, short_ttl),
            self.sign(traffic, short_ttl),
        ]

    async def run(self, ready: asyncio.Event, publish: Callable[[], Awaitable[None]]) -> None:
        await ready.wait()
        last = 0.0
        while True:
            wait = self.rt.jitter(self.config.publish_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.now.wait()
            self.now.clear()
            # significant changes publish at once, but not more than once a second
            await asyncio.sleep(max(0.0, last + 1.0 - self.rt.clock.monotonic()))
            last = self.rt.clock.monotonic()
            try:
                await publish()
            except Exception:  # the next round tries again
                log.exception("publishing own records failed")
