"""The mesh as a graph, built from verified records: nodes, links and their states.

The graph maths over its adjacency (components, cut points, paths, betweenness) is in
`meshd.graph`.

A link enters the graph only when both ends report it up (babel itself needs hellos both ways);
when one end has published no `links` record at all, its neighbour's word is taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from meshd.codec import Envelope
from meshd.records import Body, Kind, LinkEntry, LinksBody, NodeBody, TrafficBody

DEFAULT_COST = 256  # babel's cost of a perfect wired hop; used when no side reports a cost
UNREACHABLE_COST = 0xFFFF


class LinkState(StrEnum):
    GOOD = "good"
    LOSSY = "lossy"
    ASYMMETRIC = "asymmetric"
    ONE_SIDED = "one-sided"
    FLAPPING = "flapping"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class LinkThresholds:
    """When a link stops being called good. Loss is per direction, 0..1."""

    lossy_loss: float = 0.10
    lossy_etx: float = 1.5
    asymmetric_loss_gap: float = 0.20  # one direction loses this much more than the other
    asymmetric_cost_ratio: float = 2.0
    flapping_changes: int = 3  # up/down changes seen across the archived history


@dataclass(frozen=True, slots=True)
class Direction:
    """One direction of a link, `src` -> `dst`, from what both ends reported."""

    src: str
    dst: str
    entry: LinkEntry | None  # the sender's own entry about the receiver
    reverse: LinkEntry | None  # the receiver's entry about the sender

    @property
    def reported(self) -> bool:
        return self.entry is not None and self.entry.up

    @property
    def loss(self) -> float | None:
        """Loss src -> dst: the sender's delivery_tx, else the receiver's delivery_rx."""
        if self.entry is not None and self.entry.delivery_tx is not None:
            return 1.0 - self.entry.delivery_tx
        if self.reverse is not None and self.reverse.delivery_rx is not None:
            return 1.0 - self.reverse.delivery_rx
        if self.entry is not None and self.entry.loss is not None:
            return self.entry.loss
        return None

    @property
    def cost(self) -> int | None:
        """Babel's cost of sending src -> dst as src sees it (txcost, else rxcost)."""
        if self.entry is None:
            return None
        return self.entry.txcost if self.entry.txcost is not None else self.entry.rxcost

    @property
    def etx(self) -> float | None:
        return None if self.entry is None else self.entry.etx

    @property
    def rtt_ms(self) -> float | None:
        return None if self.entry is None else self.entry.rtt_ms

    @property
    def signal_dbm(self) -> int | None:
        return None if self.entry is None else self.entry.signal_dbm

    @property
    def bitrate_mbit(self) -> float | None:
        return None if self.entry is None else self.entry.tx_bitrate_mbit


@dataclass(frozen=True, slots=True)
class Link:
    """An undirected link a < b with both directions and a one-word state."""

    a: str
    b: str
    ab: Direction
    ba: Direction
    state: LinkState
    reason: str
    in_graph: bool

    @property
    def cost(self) -> int:
        """Graph weight: the worse of the two directions' babel costs (routes need both)."""
        costs = [c for c in (self.ab.cost, self.ba.cost) if c is not None]
        return max(costs) if costs else DEFAULT_COST

    @property
    def worst_loss(self) -> float | None:
        losses = [x for x in (self.ab.loss, self.ba.loss) if x is not None]
        return max(losses) if losses else None

    def badness(self) -> float:
        """Sort key for `links --worst`: states first, then loss and cost."""
        rank = {
            LinkState.DOWN: 6,
            LinkState.ONE_SIDED: 5,
            LinkState.FLAPPING: 4,
            LinkState.ASYMMETRIC: 3,
            LinkState.LOSSY: 2,
            LinkState.GOOD: 0,
        }[self.state]
        return rank * 10.0 + (self.worst_loss or 0.0) * 5 + min(self.cost, 4096) / 4096


@dataclass(slots=True)
class NodeView:
    """Everything the store holds about one node."""

    node_id: str
    node: Envelope | None = None
    links: Envelope | None = None
    traffic: Envelope | None = None
    status: str | None = None  # retained online/offline from MQTT, when read from a broker
    # A held envelope parses its body on each access (the store keeps bytes, not parses), so
    # the view keeps the bodies it read, for as long as it lives, per envelope it holds.
    _bodies: dict[Kind, tuple[Envelope, Body]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _body(self, env: Envelope | None) -> Body | None:
        if env is None:
            return None
        hit = self._bodies.get(env.kind)
        if hit is None or hit[0] is not env:
            hit = self._bodies[env.kind] = (env, env.body)
        return hit[1]

    @property
    def info(self) -> NodeBody | None:
        body = self._body(self.node)
        return body if isinstance(body, NodeBody) else None

    @property
    def link_entries(self) -> tuple[LinkEntry, ...]:
        body = self._body(self.links)
        return body.links if isinstance(body, LinksBody) else ()

    @property
    def counters(self) -> TrafficBody | None:
        body = self._body(self.traffic)
        return body if isinstance(body, TrafficBody) else None

    @property
    def hostname(self) -> str:
        info = self.info
        if info is not None:
            return info.hostname
        for env in (self.links, self.traffic):
            if env is not None:
                return env.cert.hostname
        return self.node_id

    @property
    def last_seen(self) -> int:
        return max((e.issued_at for e in (self.node, self.links, self.traffic) if e), default=0)

    @property
    def is_gateway(self) -> bool:
        return self.info is not None and bool(self.info.gateway_kbit)


@dataclass
class MeshView:
    """Nodes and links of one community at one moment, from verified records only."""

    now: float
    nodes: dict[str, NodeView] = field(default_factory=dict)
    links: dict[tuple[str, str], Link] = field(default_factory=dict)
    adjacency: dict[str, dict[str, int]] = field(default_factory=dict)
    unknown_neighbours: dict[str, set[str]] = field(default_factory=dict)  # id -> who reports it

    @classmethod
    def build(
        cls,
        envelopes: Iterable[Envelope],
        now: float,
        *,
        statuses: Mapping[str, str] | None = None,
        flaps: Mapping[tuple[str, str], int] | None = None,
        thresholds: LinkThresholds = LinkThresholds(),
    ) -> MeshView:
        view = cls(now)
        for env in envelopes:
            nv = view.nodes.get(env.node_id)
            if nv is None:
                nv = view.nodes[env.node_id] = NodeView(env.node_id)
            if env.kind is Kind.NODE:
                nv.node = env
            elif env.kind is Kind.LINKS:
                nv.links = env
            else:
                nv.traffic = env
        for node_id, status in (statuses or {}).items():
            if node_id in view.nodes:
                view.nodes[node_id].status = status
        view._build_links(flaps or {}, thresholds)
        return view

    def _build_links(
        self, flaps: Mapping[tuple[str, str], int], thresholds: LinkThresholds
    ) -> None:
        entries: dict[tuple[str, str], LinkEntry] = {}
        for nv in self.nodes.values():
            for entry in nv.link_entries:
                if entry.neighbour == nv.node_id:
                    continue
                held = entries.get((nv.node_id, entry.neighbour))
                # several interfaces to one neighbour: keep the best (up, then cheapest)
                if held is None or _better(entry, held):
                    entries[(nv.node_id, entry.neighbour)] = entry
        nodes, links = self.nodes, self.links
        adjacency: dict[str, dict[str, int]] = {node_id: {} for node_id in nodes}
        for src, dst in entries:
            if dst not in nodes:
                self.unknown_neighbours.setdefault(dst, set()).add(src)
                continue
            a, b = (src, dst) if src < dst else (dst, src)
            if (a, b) in links:
                continue
            e_ab, e_ba = entries.get((a, b)), entries.get((b, a))
            ab = Direction(a, b, e_ab, e_ba)
            ba = Direction(b, a, e_ba, e_ab)
            silent = (nodes[a].links is None) or (nodes[b].links is None)
            up_ab = e_ab is not None and e_ab.up
            up_ba = e_ba is not None and e_ba.up
            in_graph = (up_ab and up_ba) or (silent and (up_ab or up_ba))
            state, reason = classify(ab, ba, flaps.get((a, b), 0), thresholds, silent)
            link = Link(a, b, ab, ba, state, reason, in_graph)
            links[(a, b)] = link
            if in_graph:
                adjacency[a][b] = adjacency[b][a] = link.cost
        self.adjacency = adjacency

    # -- lookups ----------------------------------------------------------------------------

    def find(self, name: str) -> NodeView | None:
        """A node by hostname, full node id or unique node-id prefix."""
        if name in self.nodes:
            return self.nodes[name]
        by_host = [n for n in self.nodes.values() if n.hostname == name]
        if len(by_host) == 1:
            return by_host[0]
        by_prefix = [n for i, n in self.nodes.items() if len(name) >= 4 and i.startswith(name)]
        return by_prefix[0] if len(by_prefix) == 1 else None

    def link(self, x: str, y: str) -> Link | None:
        return self.links.get((x, y) if x < y else (y, x))

    def neighbours(self, node_id: str) -> list[str]:
        return sorted(self.adjacency.get(node_id, {}))

    def name(self, node_id: str) -> str:
        nv = self.nodes.get(node_id)
        return nv.hostname if nv is not None else node_id


def _better(new: LinkEntry, held: LinkEntry) -> bool:
    if new.up != held.up:
        return new.up
    new_cost = new.txcost if new.txcost is not None else UNREACHABLE_COST
    held_cost = held.txcost if held.txcost is not None else UNREACHABLE_COST
    return new_cost < held_cost


def _max2(x: float | None, y: float | None) -> float | None:
    if x is None:
        return y
    if y is None:
        return x
    return x if x > y else y


def classify(
    ab: Direction, ba: Direction, flaps: int, t: LinkThresholds, silent: bool = False
) -> tuple[LinkState, str]:
    """One word for a link, plus the plain reason behind it."""
    if not ab.reported and not ba.reported:
        return LinkState.DOWN, "both ends report the link down"
    if not (ab.reported and ba.reported):
        if silent:
            return LinkState.ONE_SIDED, "only one end has published its links yet"
        lone = ab if ab.reported else ba
        return LinkState.ONE_SIDED, f"only {lone.src} reports this link; {lone.dst} does not"
    if flaps >= t.flapping_changes:
        return LinkState.FLAPPING, f"went up and down {flaps} times in the recorded history"
    la, lb = ab.loss, ba.loss
    if la is not None and lb is not None and abs(la - lb) >= t.asymmetric_loss_gap:
        return LinkState.ASYMMETRIC, f"loss {la:.0%} one way, {lb:.0%} the other"
    ca, cb = ab.cost, ba.cost
    if ca and cb and max(ca, cb) / min(ca, cb) >= t.asymmetric_cost_ratio:
        return LinkState.ASYMMETRIC, f"babel cost {ca} one way, {cb} the other"
    worst = _max2(la, lb)
    if worst is not None and worst >= t.lossy_loss:
        return LinkState.LOSSY, f"{worst:.0%} of packets lost"
    etx = _max2(ab.etx, ba.etx)
    if etx is not None and etx >= t.lossy_etx:
        return LinkState.LOSSY, f"ETX {etx:.2f}"
    return LinkState.GOOD, "both directions deliver"
