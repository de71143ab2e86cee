"""N relays over an in-memory bus in simulated time: the same store and relay code as the agent.

Each node runs the relay of `bench/relay_under_test.py`. Used by `bench/relay_scale.py` (the
numbers) and `tests/unit/test_relay_sim.py` (correctness at N = 100). Two protocols run on the
same topology, keys and bodies:

- `old`: today's agent. Every node signs all three kinds every 60 s; every accepted record goes
  into the node's broker, so every neighbour (each subscribed to it) receives it, including the
  one it came from; every copy is fully decoded and verified; a (re)connect replays the whole
  retained store.
- `new`: docs/protocol.md §8. Header triage before decode, per-kind publish policy, eager push
  on a self-pruning tree with header batches to lazy neighbours, digests on (re)connect.

Signatures are real; decode and verify calls are counted per node and run once per distinct
record (`bench/relay_counting.py`), their cost measured in the same run.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.benchkit import measured_link
from bench.relay_counting import COUNTER, Stats
from bench.relay_topology import Graph
from bench.relay_under_test import EPOCH, Relay, RelayFactory, core_relay
from meshd import sync
from meshd.codec import Envelope, sign_record
from meshd.ids import SigningKey
from meshd.records import (
    Kind,
    LinksBody,
    MeshConfig,
    NeighbourCounters,
    NodeBody,
    TrafficBody,
)
from meshd.store import RecordStore
from meshd.topics import record_topic
from meshd.trust import Enrollment, Trust

MQTT_OVERHEAD = 8  # fixed header, packet id, properties length: bytes per PUBLISH besides topic
Slot = tuple[str, Kind]


# -- nodes --------------------------------------------------------------------------------------


@dataclass
class SimNode:
    index: int
    key: SigningKey
    cert: Enrollment
    relay: Relay
    peers: set[int]
    seq: int = 0
    stats: Stats = field(default_factory=Stats)
    schedule: sync.PublishSchedule = field(default_factory=sync.PublishSchedule)
    modes: sync.PeerModes = field(default_factory=sync.PeerModes)
    have: list[sync.Have] = field(default_factory=list)
    have_armed: bool = False
    armed: int = 0
    node_id: str = ""

    def __post_init__(self) -> None:
        self.node_id = self.key.node_id


@dataclass
class Tracker:
    """Time for each record to reach every node, and catch-up after a partition."""

    n: int
    measuring: bool = False
    spread: dict[tuple[str, Kind, int], list[float]] = field(default_factory=dict)
    reach_times: list[float] = field(default_factory=list)
    target: dict[tuple[str, Kind], int] = field(default_factory=dict)
    deficit: list[int] = field(default_factory=list)
    short: int = 0
    healed_at: float | None = None
    regressions: int = 0

    def published(self, env: Envelope, now: float) -> None:
        if self.measuring:
            self.spread[(env.node_id, env.kind, env.seq)] = [now, 0]

    def accepted(self, node: int, env: Envelope, prev_seq: int, now: float) -> None:
        if prev_seq >= env.seq:
            self.regressions += 1
        entry = self.spread.get((env.node_id, env.kind, env.seq))
        if entry is not None:
            entry[1] += 1
            if entry[1] == self.n:
                self.reach_times.append(now - entry[0])
                del self.spread[(env.node_id, env.kind, env.seq)]
        want = self.target.get(env.slot)
        if want is not None and prev_seq < want <= env.seq:
            self.deficit[node] -= 1
            if self.deficit[node] == 0:
                self.short -= 1
                if self.short == 0:
                    self.healed_at = now


class Sim:
    """One protocol on one topology; `run` advances simulated time."""

    def __init__(
        self,
        graph: Graph,
        protocol: str,
        *,
        seed: int = 1,
        loss: float = 0.0,
        relay: RelayFactory = core_relay,
        links_changes_per_hour: float = 1.0,
    ) -> None:
        assert protocol in ("old", "new")
        self.new = protocol == "new"
        self.rng = random.Random(seed)
        self.loss = loss
        self.link_change_rate = links_changes_per_hour / 3600
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._tick = 0
        self.down: set[tuple[int, int]] = set()
        self.latency = {
            (a, b): self.rng.uniform(0.002, 0.01) for a in graph for b in graph[a] if a < b
        }
        admin = SigningKey(bytes(32))
        trust = Trust("sim", frozenset({admin.public}))
        self.nodes: list[SimNode] = []
        for i in sorted(graph):
            key = SigningKey(i.to_bytes(4, "big") + bytes(28))
            cert = Enrollment.issue(
                admin, community="sim", hostname=f"n{i}", key=key.public, expires=EPOCH + 10**8
            )
            self.nodes.append(
                SimNode(i, key, cert, relay(RecordStore(trust), key.node_id), graph[i])
            )
        self.by_id = {n.node_id: n for n in self.nodes}
        self.tracker = Tracker(len(self.nodes))
        self.publishing = True  # False: nodes stop signing, so the mesh goes quiet

    # -- event loop ----------------------------------------------------------------------------

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        self._tick += 1
        heapq.heappush(self._heap, (when, self._tick, fn, args))

    def run(self, until: float) -> None:
        heap = self._heap
        COUNTER.triage = self.new
        while heap and heap[0][0] <= until:
            when, _, fn, args = heapq.heappop(heap)
            self.now = when
            fn(*args)
        self.now = until

    def link_up(self, a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) not in self.down

    def send(
        self,
        src: SimNode,
        dst: int,
        kind: str,
        payload: bytes,
        slot: tuple[str, Kind] | None = None,
    ) -> None:
        """`slot` names a record's topic, as MQTT would; control messages have none."""
        size = len(payload) + MQTT_OVERHEAD + 40  # topic: mesh/v1/<c>/<id>/<kind>
        src.stats.msgs_out += 1
        src.stats.bytes_out += size
        if not self.link_up(src.index, dst):
            return
        delay = self.latency[(min(src.index, dst), max(src.index, dst))]
        rto = 0.2  # MQTT runs over TCP: a lost segment arrives late, after a retransmission
        while self.loss and self.rng.random() < self.loss:
            delay += rto
            rto *= 2
        self.at(self.now + delay, self._deliver, src.index, dst, kind, payload, size, slot)

    def _deliver(self, src: int, dst: int, kind: str, payload: bytes, size: int, slot: Any) -> None:
        if not self.link_up(src, dst):
            return  # the connection broke while it was in flight
        node = self.nodes[dst]
        node.stats.msgs_in += 1
        node.stats.bytes_in += size
        COUNTER.current = node.stats
        if kind in ("rec", "pull"):
            self._receive(node, src, payload, kind == "rec", slot)
        else:
            self._control(node, src, kind, payload)

    # -- start, publish -------------------------------------------------------------------------

    def start(self) -> None:
        """Every node already holds every record (steady state); publish phases are random."""
        first = []
        for node in self.nodes:
            for kind in Kind:
                first.append(self._sign(node, kind))
        for node in self.nodes:
            store = node.relay.store
            for env in first:
                store.merge(env)
                # steady state: each certificate was verified when its node was first heard
                store._good_certs.put(env.cert, True)
            for peer in node.peers:
                node.modes.up(self.nodes[peer].node_id)
            if self.new:
                for kind, p in node.schedule.policy.items():
                    node.schedule.published(kind, -self.rng.uniform(0, p.refresh_s))
                self._arm_publish(node)
                self.at(self.rng.uniform(0, sync.ANTI_ENTROPY_S), self._anti_entropy, node)
                if self.link_change_rate:
                    self.at(self.rng.expovariate(self.link_change_rate), self._links_change, node)
            else:
                self.at(self.rng.uniform(0, sync.LEGACY_INTERVAL_S), self._publish_all, node)

    def _body(self, node: SimNode, kind: Kind) -> NodeBody | LinksBody | TrafficBody:
        ids = sorted(self.nodes[p].node_id for p in node.peers)[:64]
        r = self.rng
        if kind is Kind.NODE:
            return NodeBody(
                f"n{node.index}",
                "TP-Link Archer C7 v5",
                "mutualmesh 0.1.0",
                (f"10.42.{node.index // 256}.{node.index % 256}", "fd42::1"),
                config=MeshConfig("sim-mesh", "babel", {"2g": 1, "5g": 36}),
            )
        if kind is Kind.LINKS:
            return LinksBody(tuple(measured_link(p, r) for p in ids))
        up = int(self.now) + 10**6
        return TrafficBody(
            f"boot-{node.index:08x}-{EPOCH:x}",
            up,
            EPOCH - 86400,
            tuple(
                NeighbourCounters(p, "mesh0", up * 9_000, up * 7_000, up * 9, up * 7) for p in ids
            ),
            up * 31_000,
            up * 29,
            up * 5_000,
            up * 1_000,
        )

    def _sign(self, node: SimNode, kind: Kind) -> Envelope:
        node.seq += 1
        ttl = node.schedule.policy[kind].ttl_s if self.new else (181 if kind != Kind.NODE else 3600)
        return sign_record(
            node.key,
            node.cert,
            self._body(node, kind),
            seq=node.seq,
            issued_at=EPOCH + int(self.now),
            ttl_s=ttl,
        )

    def _publish(self, node: SimNode, env: Envelope) -> None:
        held = node.relay.store.records.get(env.slot)
        node.relay.own(env)
        self.tracker.published(env, self.now)
        self.tracker.accepted(node.index, env, held.seq if held else -1, self.now)
        self._forward(node, env, None)

    def _publish_all(self, node: SimNode) -> None:
        if not self.publishing:
            return
        COUNTER.current = node.stats
        for kind in Kind:
            self._publish(node, self._sign(node, kind))
        self.at(
            self.now + sync.LEGACY_INTERVAL_S * self.rng.uniform(0.9, 1.1), self._publish_all, node
        )

    def _arm_publish(self, node: SimNode) -> None:
        node.armed += 1  # a newer arming supersedes any pending one
        self.at(node.schedule.wake_at(self.now), self._publish_due, node, node.armed)

    def _publish_due(self, node: SimNode, token: int) -> None:
        if not self.publishing:
            return
        if token != node.armed:
            return
        COUNTER.current = node.stats
        for kind in node.schedule.due(self.now):
            self._publish(node, self._sign(node, kind))
            node.schedule.published(kind, self.now, self.rng.uniform(0.9, 1.1))
        self._arm_publish(node)

    def change_links(self, node: SimNode) -> None:
        """A neighbour came or went, or a link's cost crossed a step: links is due soon."""
        if self.new:
            node.schedule.change(Kind.LINKS)
            self._arm_publish(node)
        else:
            self._publish(node, self._sign(node, Kind.LINKS))

    def _links_change(self, node: SimNode) -> None:
        if not self.publishing:
            return
        self.change_links(node)
        self.at(self.now + self.rng.expovariate(self.link_change_rate), self._links_change, node)

    # -- relaying -------------------------------------------------------------------------------

    def _receive(
        self, node: SimNode, src: int, raw: bytes, eager: bool, slot: tuple[str, Kind]
    ) -> None:
        held = node.relay.store.records.get(slot)
        topic = record_topic("sim", slot[0], slot[1])
        env = node.relay.offer(self.nodes[src].node_id, topic, raw, self.now)
        if env is None:
            if self.new and eager and node.modes.prune(self.nodes[src].node_id):
                self.send(node, src, "prune", b"{}")
            return
        self.tracker.accepted(node.index, env, held.seq if held else -1, self.now)
        self._forward(node, env, src)

    def _forward(self, node: SimNode, env: Envelope, src: int | None) -> None:
        if not self.new:
            for peer in node.peers:  # the broker fans out to every subscribed neighbour
                self.send(node, peer, "rec", env.raw, env.slot)
            return
        node.modes.arrived(sync.Have(env.node_id, env.kind, env.seq))
        eager = node.modes.eager
        for peer in node.peers:
            if peer != src and self.nodes[peer].node_id in eager:
                self.send(node, peer, "rec", env.raw, env.slot)
        node.have.append(sync.Have(env.node_id, env.kind, env.seq))
        if not node.have_armed:
            node.have_armed = True
            self.at(self.now + sync.HAVE_INTERVAL_S, self._send_have, node)

    def _send_have(self, node: SimNode) -> None:
        node.have_armed = False
        payload = sync.encode_headers("have", node.have)
        node.have = []
        COUNTER.current = node.stats
        for peer in node.peers:
            if self.nodes[peer].node_id in node.modes.lazy:
                self.send(node, peer, "have", payload)

    def _control(self, node: SimNode, src: int, kind: str, payload: bytes) -> None:
        peer_id = self.nodes[src].node_id
        records = node.relay.store.records
        if kind == "prune":
            other = node.modes.pruned_by(peer_id)
            if other is not None:
                self.send(node, self.by_id[other].index, "graft", b"{}")
        elif kind == "graft":
            node.modes.graft(peer_id)
        elif kind in ("have", "digest"):
            headers = sync.decode_headers(kind, payload) or []
            wanted = sync.newer_in(headers, records)
            if kind == "digest":
                if wanted:
                    self.send(node, src, "want", sync.encode_headers("want", wanted))
                return
            for h in wanted:
                node.modes.announced(peer_id, h, self.now)
            if wanted:
                self.at(self.now + sync.GRAFT_AFTER_S + 1e-6, self._graft_check, node)
        elif kind == "want":
            for h in sync.decode_headers("want", payload) or []:
                env = records.get(h.slot)
                if env is not None and env.seq >= h.seq:
                    self.send(node, src, "pull", env.raw, env.slot)

    def _graft_check(self, node: SimNode) -> None:
        COUNTER.current = node.stats
        for peer_id, headers in node.modes.overdue(self.now).items():
            peer = self.by_id[peer_id].index
            if not self.link_up(node.index, peer):
                continue
            self.send(node, peer, "want", sync.encode_headers("want", headers))
            if node.modes.graft(peer_id):
                self.send(node, peer, "graft", b"{}")

    def _anti_entropy(self, node: SimNode) -> None:
        live = [p for p in node.peers if self.link_up(node.index, p)]
        if live:
            COUNTER.current = node.stats
            self._send_digest(node, self.rng.choice(sorted(live)))
        self.at(
            self.now + sync.ANTI_ENTROPY_S * self.rng.uniform(0.9, 1.1), self._anti_entropy, node
        )

    def _send_digest(self, node: SimNode, peer: int) -> None:
        digest = sync.encode_headers("digest", sync.held_headers(node.relay.store.records.values()))
        self.send(node, peer, "digest", digest)

    # -- link cuts ------------------------------------------------------------------------------

    def cut(self, edges: list[tuple[int, int]]) -> None:
        for a, b in edges:
            self.down.add((min(a, b), max(a, b)))
            for x, y in ((a, b), (b, a)):
                node = self.nodes[x]
                COUNTER.current = node.stats
                for peer_id in node.modes.down(self.nodes[y].node_id):
                    self.send(node, self.by_id[peer_id].index, "graft", b"{}")

    def restore(self, edges: list[tuple[int, int]]) -> None:
        for a, b in edges:
            self.down.discard((min(a, b), max(a, b)))
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                node = self.nodes[x]
                COUNTER.current = node.stats
                if self.new:
                    node.modes.up(self.nodes[y].node_id)
                    self._send_digest(node, y)
                else:  # subscribing replays the neighbour's whole retained store to us
                    for env in self.nodes[y].relay.store.records.values():
                        self.send(self.nodes[y], x, "rec", env.raw, env.slot)

    def expect_heal(self) -> None:
        """From now on, track when every node holds every newest record of this moment."""
        newest: dict[tuple[str, Kind], int] = {}
        for node in self.nodes:
            for slot, env in node.relay.store.records.items():
                if newest.get(slot, -1) < env.seq:
                    newest[slot] = env.seq
        t = self.tracker
        t.target = newest
        t.deficit = [
            sum(
                1
                for slot, seq in newest.items()
                if (e := n.relay.store.records.get(slot)) is None or e.seq < seq
            )
            for n in self.nodes
        ]
        t.short = sum(1 for d in t.deficit if d)
        t.healed_at = None if t.short else self.now

    def reset_stats(self) -> None:
        for node in self.nodes:
            node.stats = Stats()
