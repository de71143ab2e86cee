"""Small builders over the real core for tests: a community with admins and enrolled nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshd.codec import Envelope, sign_record
from meshd.ids import SigningKey
from meshd.records import (
    Body,
    LinkEntry,
    LinksBody,
    NeighbourCounters,
    NodeBody,
    TrafficBody,
)
from meshd.store import RecordStore
from meshd.trust import Enrollment, Trust

NOW = 1_800_000_000
EXPIRES = NOW + 365 * 24 * 3600


@dataclass
class NodeKit:
    hostname: str
    key: SigningKey
    cert: Enrollment
    seq: int = 0

    @property
    def node_id(self) -> str:
        return self.key.node_id

    def sign(
        self, body: Body, *, seq: int | None = None, issued_at: int = NOW, ttl_s: int = 600
    ) -> Envelope:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return sign_record(self.key, self.cert, body, seq=seq, issued_at=issued_at, ttl_s=ttl_s)

    def node_body(self) -> NodeBody:
        return NodeBody(self.hostname, "test-model", "mutualmesh 0.1.0", ("10.42.0.1",))


@dataclass
class CommunityKit:
    name: str = "riverside"
    admins: list[SigningKey] = field(default_factory=lambda: [SigningKey.generate()])
    threshold: int = 1

    @property
    def trust(self) -> Trust:
        return Trust(self.name, frozenset(a.public for a in self.admins), self.threshold)

    def enroll(
        self, hostname: str, *, admin: SigningKey | None = None, expires: int = EXPIRES
    ) -> NodeKit:
        key = SigningKey.generate()
        cert = Enrollment.issue(
            admin or self.admins[0],
            community=self.name,
            hostname=hostname,
            key=key.public,
            expires=expires,
        )
        return NodeKit(hostname, key, cert)

    def store(self) -> RecordStore:
        return RecordStore(self.trust)


def links_body(neighbour: str) -> LinksBody:
    return LinksBody(
        (LinkEntry(neighbour, "mesh0", "wifi", True, 256, 256, 1.5, 0.99, 0.98, 0.02, 1.03),)
    )


def traffic_body(neighbour: str, forwarded: int = 1000) -> TrafficBody:
    return TrafficBody(
        boot_id="b0",
        uptime_s=100,
        since=NOW - 100,
        neighbours=(NeighbourCounters(neighbour, "mesh0", 10, 20, 1, 2),),
        forwarded_bytes=forwarded,
        forwarded_packets=3,
        gateway_bytes=0,
        client_bytes=5,
    )
