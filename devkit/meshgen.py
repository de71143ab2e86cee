"""Synthetic communities built with the real core: admin and node keys, enrollment certificates
and signed node/links/traffic records whose counters agree the way real ones would.

Any test or benchmark can build a mesh, push traffic along least-cost paths with `flow`, bend
the truth on purpose (`claim`, one-sided links, config drift), and get the signed wire records,
a verified `RecordStore`, a community file or a snapshot file out of it.

    mesh = SyntheticMesh.chain(5)
    mesh.flow("n1", "n5", 10_000_000)
    mesh.claim("n3", forwarded_bytes=100_000_000)    # a lie, validly signed
    store = mesh.store()
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from meshd.codec import Envelope, sign_record
from meshd.ids import SigningKey
from meshd.records import (
    MAX_ENDPOINTS,
    OTHER_PEER,
    EndpointFlow,
    LinkEntry,
    LinksBody,
    Location,
    MeshConfig,
    NeighbourCounters,
    NodeBody,
    TrafficBody,
)
from meshd.store import RecordStore
from meshd.trust import Enrollment, Trust

NOW = 1_800_000_000
DAY = 24 * 3600


@dataclass
class LinkSpec:
    """One direction's measurements, as the sending end reports them."""

    cost: int = 256
    loss: float = 0.0
    rtt_ms: float = 2.0
    signal_dbm: int | None = None
    bitrate_mbit: float | None = None
    up: bool = True
    medium: str = "veth"


@dataclass
class SynthNode:
    hostname: str
    index: int
    key: SigningKey
    cert: Enrollment
    software: str = "mutualmesh 0.1.0"
    model: str = "lab-x86"
    gateway_kbit: int | None = None
    location: Location | None = None
    config: MeshConfig | None = None
    addresses: tuple[str, ...] = ()
    links: dict[str, LinkSpec] = field(default_factory=dict)  # neighbour hostname -> spec
    rx: dict[str, int] = field(default_factory=dict)  # bytes received from neighbour hostname
    tx: dict[str, int] = field(default_factory=dict)
    forwarded: int = 0
    gateway_bytes: int = 0
    client_bytes: int = 0
    uptime_s: int = DAY
    boot_id: str = "boot-1"
    since: int = NOW - 7 * DAY
    claims: dict[str, int] = field(default_factory=dict)  # overrides of published counters
    # overrides of per-neighbour (rx, tx), by hostname; a non-neighbour here is a phantom report
    neighbour_claims: dict[str, tuple[int, int]] = field(default_factory=dict)
    flows: dict[str, list[int]] = field(default_factory=dict)  # peer -> [sent, received]
    frozen: tuple[TrafficBody, int] | None = None  # a traffic record published earlier
    publish_endpoints: bool = True
    seq: int = 0
    publish_links: bool = True
    publish_traffic: bool = True

    @property
    def node_id(self) -> str:
        return self.key.node_id


class SyntheticMesh:
    """A community whose records are all produced by the real signing code."""

    def __init__(
        self,
        name: str = "testmesh",
        *,
        mesh_id: str = "testmesh",
        now: int = NOW,
        admin: SigningKey | None = None,
        seed: int = 1,
    ) -> None:
        self.name = name
        self.mesh_id = mesh_id
        self.now = now
        self.admin = admin or SigningKey.generate()
        self.nodes: dict[str, SynthNode] = {}
        self.rng = random.Random(seed)
        self.channels = {"5g": 36}

    # -- building ---------------------------------------------------------------------------

    @property
    def trust(self) -> Trust:
        return Trust(self.name, frozenset({self.admin.public}), 1)

    def add_node(self, hostname: str, **fields: Any) -> SynthNode:
        key = fields.pop("key", None) or SigningKey.generate()
        cert = Enrollment.issue(
            self.admin,
            community=self.name,
            hostname=hostname,
            key=key.public,
            expires=self.now + 365 * DAY,
        )
        index = len(self.nodes) + 1
        node = SynthNode(hostname, index, key, cert, **fields)
        if not node.addresses:
            node.addresses = (f"10.42.{index // 250}.{index % 250 + 1}",)
        if node.config is None:
            node.config = MeshConfig(self.mesh_id, "babel", dict(self.channels))
        self.nodes[hostname] = node
        return node

    def link(
        self,
        a: str,
        b: str,
        ab: LinkSpec | None = None,
        ba: LinkSpec | None = None,
        **both: Any,
    ) -> None:
        """A link reported by both ends; `ab` is what a reports about sending to b."""
        self.nodes[a].links[b] = ab or LinkSpec(**both)
        self.nodes[b].links[a] = ba or LinkSpec(**both)

    def cut(self, a: str, b: str) -> None:
        """Both ends now report the link down."""
        for x, y in ((a, b), (b, a)):
            if y in self.nodes[x].links:
                self.nodes[x].links[y] = replace(self.nodes[x].links[y], up=False)

    def claim(self, hostname: str, **counters: int) -> None:
        """Publish these counter values instead of the true ones (a validly signed lie)."""
        self.nodes[hostname].claims.update(counters)

    def claim_neighbour(self, hostname: str, about: str, rx: int, tx: int) -> None:
        """Publish these per-neighbour counters about `about` (linked or not), validly signed."""
        self.nodes[hostname].neighbour_claims[about] = (rx, tx)

    def freeze(self, hostname: str) -> None:
        """The node publishes its traffic record now; later flows miss it (publish skew)."""
        node = self.nodes[hostname]
        node.frozen = (self.traffic_body(node), self.now)

    def reset_counters(self, hostname: str) -> None:
        """The node lost its saved counters: everything starts from zero at a new `since`."""
        node = self.nodes[hostname]
        node.rx, node.tx, node.flows = {}, {}, {}
        node.forwarded = node.gateway_bytes = node.client_bytes = 0
        node.since = self.now

    @classmethod
    def chain(cls, n: int, **kw: Any) -> SyntheticMesh:
        mesh = cls(**kw)
        for i in range(1, n + 1):
            mesh.add_node(f"n{i}")
        for i in range(1, n):
            mesh.link(f"n{i}", f"n{i + 1}")
        return mesh

    @classmethod
    def ring(cls, n: int, **kw: Any) -> SyntheticMesh:
        mesh = cls.chain(n, **kw)
        mesh.link(f"n{n}", "n1")
        return mesh

    @classmethod
    def random(cls, n: int, links: int, *, seed: int = 7, **kw: Any) -> SyntheticMesh:
        """A connected mesh: a random spanning tree over a street-like order, plus extra links
        to nearby nodes (meshes are local), with varied costs and a few gateways."""
        mesh = cls(seed=seed, **kw)
        rng = mesh.rng
        names = [f"n{i}" for i in range(1, n + 1)]
        for i, name in enumerate(names):
            gw = 100_000 if i % 50 == 0 else None
            mesh.add_node(name, gateway_kbit=gw)
        made: set[tuple[int, int]] = set()

        def add(i: int, j: int) -> bool:
            key = (min(i, j), max(i, j))
            if i == j or key in made:
                return False
            if len(mesh.nodes[names[i]].links) >= 60 or len(mesh.nodes[names[j]].links) >= 60:
                return False
            made.add(key)
            cost = rng.choice((256, 256, 288, 320, 384, 512, 768))
            mesh.link(names[i], names[j], cost=cost, loss=rng.choice((0.0, 0.0, 0.01, 0.05)))
            return True

        for i in range(1, n):
            add(i, rng.randrange(max(0, i - 20), i))
        while len(made) < links:
            i = rng.randrange(n)
            add(i, min(n - 1, max(0, i + rng.randint(-40, 40))))
        return mesh

    # -- traffic ----------------------------------------------------------------------------

    def path(self, src: str, dst: str) -> list[str]:
        dist = {src: 0}
        pred: dict[str, str] = {}
        heap = [(0, src)]
        while heap:
            d, x = heapq.heappop(heap)
            if x == dst:
                break
            if d > dist[x]:
                continue
            for y, spec in self.nodes[x].links.items():
                back = self.nodes[y].links.get(x)
                if not spec.up or back is None or not back.up:
                    continue
                nd = d + max(spec.cost, back.cost)
                if nd < dist.get(y, 1 << 60):
                    dist[y] = nd
                    pred[y] = x
                    heapq.heappush(heap, (nd, y))
        if dst != src and dst not in pred:
            raise ValueError(f"no path from {src} to {dst}")
        out = [dst]
        while out[-1] != src:
            out.append(pred[out[-1]])
        return out[::-1]

    def flow(self, src: str, dst: str, nbytes: int, *, via_gateway: bool = False) -> list[str]:
        """Carry `nbytes` from src to dst along the least-cost path, updating every counter.

        With `via_gateway`, dst is a gateway and the bytes leave through its uplink.
        """
        hops = self.path(src, dst)
        self.nodes[src].client_bytes += nbytes
        peer = OTHER_PEER if via_gateway else dst
        self.nodes[src].flows.setdefault(peer, [0, 0])[0] += nbytes
        carried = nbytes
        for x, y in itertools.pairwise(hops):
            sent = carried
            carried = int(sent * (1 - self.nodes[x].links[y].loss))
            nx, ny = self.nodes[x], self.nodes[y]
            nx.tx[y] = nx.tx.get(y, 0) + sent
            ny.rx[x] = ny.rx.get(x, 0) + carried
            if y != dst:
                ny.forwarded += carried
        if via_gateway:
            self.nodes[dst].gateway_bytes += carried
        else:
            self.nodes[dst].client_bytes += carried
            self.nodes[dst].flows.setdefault(src, [0, 0])[1] += carried
        return hops

    # -- records ----------------------------------------------------------------------------

    def _sign(self, node: SynthNode, body: Any, issued_at: int, ttl_s: int) -> Envelope:
        node.seq += 1
        return sign_record(
            node.key, node.cert, body, seq=node.seq, issued_at=issued_at, ttl_s=ttl_s
        )

    def node_body(self, node: SynthNode) -> NodeBody:
        return NodeBody(
            node.hostname,
            node.model,
            node.software,
            node.addresses,
            gateway_kbit=node.gateway_kbit,
            location=node.location,
            config=node.config,
        )

    def links_body(self, node: SynthNode) -> LinksBody:
        entries = []
        for other, spec in sorted(node.links.items()):
            back = self.nodes[other].links.get(node.hostname, spec)
            entries.append(
                LinkEntry(
                    self.nodes[other].node_id,
                    f"to-{other}"[:15],
                    spec.medium,
                    spec.up,
                    rxcost=back.cost,
                    txcost=spec.cost,
                    rtt_ms=spec.rtt_ms,
                    delivery_rx=round(1 - back.loss, 4),
                    delivery_tx=round(1 - spec.loss, 4),
                    loss=spec.loss,
                    etx=round(1 / max(0.01, (1 - spec.loss) * (1 - back.loss)), 4),
                    signal_dbm=spec.signal_dbm,
                    tx_bitrate_mbit=spec.bitrate_mbit,
                )
            )
        return LinksBody(tuple(entries))

    def endpoint_flows(self, node: SynthNode) -> tuple[EndpointFlow, ...]:
        """Top destinations by bytes, the rest folded into "other" (as the agent does)."""
        named = sorted(
            ((p, f) for p, f in node.flows.items() if p != OTHER_PEER),
            key=lambda item: (-(item[1][0] + item[1][1]), item[0]),
        )
        rest = list(node.flows.get(OTHER_PEER, [0, 0]))
        for _, f in named[MAX_ENDPOINTS:]:
            rest = [rest[0] + f[0], rest[1] + f[1]]
        out = [EndpointFlow(self.nodes[p].node_id, f[0], f[1]) for p, f in named[:MAX_ENDPOINTS]]
        if rest[0] or rest[1]:
            out.append(EndpointFlow(OTHER_PEER, rest[0], rest[1]))
        return tuple(out)

    def traffic_body(self, node: SynthNode) -> TrafficBody:
        counted = {o: (node.rx.get(o, 0), node.tx.get(o, 0)) for o in node.links}
        counted.update(node.neighbour_claims)
        neighbours = tuple(
            NeighbourCounters(
                self.nodes[other].node_id,
                f"to-{other}"[:15],
                rx_bytes=rx,
                tx_bytes=tx,
                rx_packets=rx // 1400,
                tx_packets=tx // 1400,
            )
            for other, (rx, tx) in sorted(counted.items())
        )
        values: dict[str, Any] = {
            "boot_id": node.boot_id,
            "uptime_s": node.uptime_s,
            "since": node.since,
            "neighbours": neighbours,
            "forwarded_bytes": node.forwarded,
            "forwarded_packets": node.forwarded // 1400,
            "gateway_bytes": node.gateway_bytes,
            "client_bytes": node.client_bytes,
            "endpoints": self.endpoint_flows(node) if node.publish_endpoints else (),
        }
        values.update(node.claims)
        return TrafficBody(**values)

    def envelopes(self, *, issued_at: int | None = None, ttl_s: int = 3600) -> list[Envelope]:
        at = self.now if issued_at is None else issued_at
        out = []
        for node in self.nodes.values():
            out.append(self._sign(node, self.node_body(node), at, ttl_s))
            if node.publish_links:
                out.append(self._sign(node, self.links_body(node), at, ttl_s))
            if node.publish_traffic and node.frozen is not None:
                out.append(self._sign(node, node.frozen[0], node.frozen[1], ttl_s))
            elif node.publish_traffic:
                out.append(self._sign(node, self.traffic_body(node), at, ttl_s))
        return out

    def records(self, **kw: Any) -> list[bytes]:
        return [e.raw for e in self.envelopes(**kw)]

    def store(self, **kw: Any) -> RecordStore:
        store = RecordStore(self.trust)
        for raw in self.records(**kw):
            store.offer(raw, self.now)
        return store

    def advance(self, seconds: int) -> None:
        """Let time pass: clocks and uptimes move on."""
        self.now += seconds
        for node in self.nodes.values():
            node.uptime_s += seconds

    def reboot(self, hostname: str) -> None:
        node = self.nodes[hostname]
        node.boot_id = f"boot-{node.seq}"
        node.uptime_s = 0

    # -- files ------------------------------------------------------------------------------

    def community_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mesh_id": self.mesh_id,
            "radio": {
                "country": "DE",
                "sae_passphrase": "correct horse battery",
                "bands": {
                    band: {"channel": ch, "htmode": "VHT80"} for band, ch in self.channels.items()
                },
            },
            "ipv4": {"prefix": "10.42.0.0/16"},
            "ipv6": {"prefix": "fd42:4242:4242::/48"},
            "routing": {"protocol": "babel"},
            "mqtt": {"port": 1883},
            "admins": [{"name": "admin", "key": self.admin.public.text}],
            "threshold": 1,
            "contribution": {"base_share": 0.5, "consumption_share": 0.5},
        }

    def write_community(self, path: Path, *, signed: bool = True) -> Path:
        """community.yaml signed by this mesh's admin (the read side refuses unsigned files)."""
        from meshd.trust import admin_signature, community_message

        data = self.community_data()
        if signed:
            data["signatures"] = [admin_signature(self.admin, community_message(data))]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def write_snapshot(self, path: Path, **kw: Any) -> Path:
        """A snapshot file in the CLI's format, with the records this mesh signs now."""
        from cli.read.source import write_snapshot

        write_snapshot(path, self.name, self.now, self.records(**kw), statuses={}, revocations=[])
        return path
