"""N relays over an in-memory bus in simulated time: the agent's own relay cores, unchanged.

Used by `bench/relay_scale.py` (the numbers) and `tests/unit/test_relay_sim.py` (correctness at
N = 100). Each node runs the class the agent runs and the simulation performs its actions the
way the agent's MQTT shell (`node_agent/relay.py`) does. Two protocols run on the same
topology, keys and bodies:

- `old`: the agent before docs/protocol.md §8. `RelayCore` flooding, every kind signed every
  60 s, no header triage (every copy decoded and verified); every record a node accepts goes
  into its broker, so every neighbour (each subscribed to the whole community there) receives
  it, including the one it came from; a (re)connect replays the whole retained store.
- `new`: §8 as the agent runs it with `--replication push`: `PushCore` (header triage, eager
  pushes on a self-pruning tree (each relay writes them into its own broker for the
  neighbour to read), header batches to lazy links,
  pulls, digests on connect and anti-entropy, `tick` every `TICK_S`), and the agent's publish
  schedule for a community of N nodes at its default 60 s interval (`sync.agent_policy`);
  a neighbour still reads each node's *own* topics on its broker, as the shell subscribes.

Signatures are real; decode and verify calls are counted per node and run once per distinct
record (`bench/relay_counting.py`), their cost measured in the same run.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.benchkit import measured_link
from bench.relay_counting import COUNTER, Stats
from bench.relay_topology import Graph
from meshd import defaults, sync
from meshd.codec import Envelope, peek_header, sign_record
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
from meshd.topics import control_topic, push_topic
from meshd.trust import Enrollment, Trust
from node_agent.relay_core import (
    Action,
    Control,
    Drop,
    Publish,
    Push,
    RelayCore,
    Source,
    Stored,
)
from node_agent.relay_push import TICK_S, PushCore

EPOCH = 1_800_000_000  # sim time 0 as unix time

MQTT_OVERHEAD = 8  # fixed header, packet id, properties length: bytes per PUBLISH besides topic
Slot = tuple[str, Kind]


# -- nodes --------------------------------------------------------------------------------------


@dataclass
class SimNode:
    index: int
    key: SigningKey
    cert: Enrollment
    relay: RelayCore  # or PushCore: the agent's own class
    peers: set[int]
    seq: int = 0
    stats: Stats = field(default_factory=Stats)
    schedule: sync.PublishSchedule = field(default_factory=sync.PublishSchedule)
    drops: Counter[str] = field(default_factory=Counter)  # other than duplicate / stale
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
            core = (PushCore if self.new else RelayCore)(RecordStore(trust), key.node_id)
            node = SimNode(i, key, cert, core, graph[i])
            # the agent's own schedule at its default interval, for a community of this size
            policy = sync.agent_policy(defaults.PUBLISH_INTERVAL_S, len(graph))
            node.schedule = sync.PublishSchedule(policy)
            self.nodes.append(node)
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

    def send(self, src: SimNode, dst: int, topic: str, payload: bytes) -> None:
        """One MQTT message from `src`'s broker to `dst`, which reads it over its connection."""
        size = len(payload) + MQTT_OVERHEAD + len(topic)
        src.stats.msgs_out += 1
        src.stats.bytes_out += size
        if not self.link_up(src.index, dst):
            return
        delay = self.latency[(min(src.index, dst), max(src.index, dst))]
        rto = 0.2  # MQTT runs over TCP: a lost segment arrives late, after a retransmission
        while self.loss and self.rng.random() < self.loss:
            delay += rto
            rto *= 2
        self.at(self.now + delay, self._deliver, src.index, dst, topic, payload, size)

    def _deliver(self, src: int, dst: int, topic: str, payload: bytes, size: int) -> None:
        if not self.link_up(src, dst):
            return  # the connection broke while it was in flight
        node = self.nodes[dst]
        node.stats.msgs_in += 1
        node.stats.bytes_in += size
        sender = self.nodes[src].node_id
        source = Source(sender, sender)  # the link, and the neighbour verified on it
        COUNTER.current = node.stats
        head = peek_header(payload)
        held = None if head is None else node.relay.store.records.get((head.node_id, head.kind))
        actions = node.relay.on_message(source, topic, payload, EPOCH + self.now)
        self._perform(node, actions, -1 if held is None else held.seq)

    def _perform(self, node: SimNode, actions: list[Action], prev_seq: int = -1) -> None:
        """What the agent's shell does with the core's actions, on the simulated bus."""
        for a in actions:
            if isinstance(a, Publish):
                # into our own broker; neighbours read it there: all of it when flooding, only
                # our own records (and revocations) with push replication
                if a.payload and (not self.new or a.topic.split("/")[3] == node.node_id):
                    for peer in sorted(node.peers):
                        self.send(node, peer, a.topic, a.payload)
            elif isinstance(a, Push):  # on _push/<neighbour> of our broker, where it reads
                peer = self.by_id[a.neighbour]
                self.send(node, peer.index, push_topic("sim", peer.node_id), a.payload)
            elif isinstance(a, Control):
                peer = self.by_id[a.neighbour]
                self.send(node, peer.index, control_topic("sim", peer.node_id), a.message)
            elif isinstance(a, Drop):
                if a.reason not in ("duplicate", "stale"):
                    node.drops[a.reason] += 1
            elif isinstance(a, Stored):
                env = a.envelope
                if env.node_id != node.node_id:
                    self.tracker.accepted(node.index, env, prev_seq, self.now)

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
            if isinstance(node.relay, PushCore):
                for peer in sorted(node.peers):  # connected: the digests find nothing to send
                    node.relay.modes.up(self.nodes[peer].node_id)
                self.at(self.rng.uniform(0, TICK_S), self._core_tick, node)
                for kind, p in node.schedule.policy.items():
                    node.schedule.published(kind, -self.rng.uniform(0, p.refresh_s))
                node.relay.next_anti_entropy = EPOCH + self.rng.uniform(0, sync.ANTI_ENTROPY_S)
                self._arm_publish(node)
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
        self.tracker.published(env, self.now)
        self.tracker.accepted(node.index, env, held.seq if held else -1, self.now)
        self._perform(node, node.relay.own(env))

    def _core_tick(self, node: SimNode) -> None:
        COUNTER.current = node.stats
        self._perform(node, node.relay.tick(EPOCH + self.now))
        self.at(self.now + TICK_S, self._core_tick, node)

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

    # -- link cuts ------------------------------------------------------------------------------

    def cut(self, edges: list[tuple[int, int]]) -> None:
        """The links go down: each end's connection to the other's broker breaks."""
        for a, b in edges:
            self.down.add((min(a, b), max(a, b)))
            for x, y in ((a, b), (b, a)):
                node = self.nodes[x]
                COUNTER.current = node.stats
                self._perform(node, node.relay.peer_down(self.nodes[y].node_id))

    def restore(self, edges: list[tuple[int, int]]) -> None:
        """The links are back: each end reconnects to the other's broker."""
        for a, b in edges:
            self.down.discard((min(a, b), max(a, b)))
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                node = self.nodes[x]
                COUNTER.current = node.stats
                if self.new:  # the core sends its digest instead of a replay
                    self._perform(node, node.relay.peer_up(self.nodes[y].node_id, EPOCH + self.now))
                else:  # subscribing replays the neighbour's whole retained store to us
                    peer = self.nodes[y]
                    for p in peer.relay.held():
                        self.send(peer, x, p.topic, p.payload)

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
