"""Lab topologies: parse a spec into nodes, links and addresses (pure, no root needed).

Specs are `chain:N`, `ring:N`, `grid:RxC`, `shared:N` (N nodes on one shared radio segment),
`neighbourhood` (the 7-node demo street) or a YAML file.
The address plan is fixed so every lab (and every test) can predict addresses without asking the
kernel, and so that nothing here can ever collide with the host: everything lives in 10.77.0.0/16
and fd77::/48, and those addresses only exist inside the lab's namespaces.

- node *i* (1-based): 10.77.0.i/32 and fd77::i/128 on `lo` (the address babeld announces);
- mesh or uplink link *k* (0-based): 10.77.128.0/17 cut into /30s, `a` end .1, `b` end .2;
- uplink *k* also gets fd77:0:0:f<k>::/64 so a gateway has an IPv6 default next hop;
- shared segment *k* (0-based): 10.77.(64+k).0/24, node *i* has .i on it (IPv6: link-local);
- the "internet" namespace has 10.77.254.1/32 and fd77:0:0:ff::1/128 on `lo` (the traffic sink).

A shared segment stands for one radio channel that several routers hear: a bridge in its own
namespace with one veth port per member. Which members hear each other, and how lossy each pair
is, is set per pair (loss 100 = out of range).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from cli.lab.impair import LAB_HELP, Impairment
from meshd.errors import FixableError

MAX_NODES = 200
MAX_LINKS = 4000
MAX_SEGMENTS = 64
OUT_OF_RANGE = 100.0  # segment pair loss meaning "these two do not hear each other at all"
INTERNET = "internet"
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
INTERNET_V4 = "10.77.254.1"
INTERNET_V6 = "fd77:0:0:ff::1"
MESH_V4 = "10.77.0.0/16"
MESH_V6 = "fd77::/48"
_LINK_BASE = int(ipaddress.IPv4Address("10.77.128.0"))


class TopologyError(FixableError, ValueError):
    """A topology spec or file the user gave cannot be turned into a mesh."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = LAB_HELP) -> None:
        super().__init__(what, where, fix)


@dataclass(frozen=True)
class Node:
    """One router of the mesh; `index` fixes its addresses."""

    name: str
    index: int
    gateway: bool = False

    @property
    def v4(self) -> str:
        return f"10.77.0.{self.index}"

    @property
    def v6(self) -> str:
        return f"fd77::{self.index:x}"


@dataclass(frozen=True)
class Link:
    """A point-to-point link between `a` and `b` (a veth pair, or an uplink to the internet)."""

    index: int
    a: str
    b: str
    kind: str = "mesh"  # "mesh" or "uplink"
    impairment: Impairment = field(default_factory=Impairment)  # applied at start-up

    @property
    def if_a(self) -> str:
        """Interface name on `a`'s side (<= 15 chars: names are <= 10, prefix 3)."""
        return "up0" if self.kind == "uplink" else f"to-{self.b}"

    @property
    def if_b(self) -> str:
        return f"to-{self.a}"

    @property
    def tap_a(self) -> str:
        """Name of the delay relay's TAP on `a`'s side, used while the link is delayed."""
        return f"td-{self.b}"

    @property
    def tap_b(self) -> str:
        return f"td-{self.a}"

    def _addr(self, offset: int) -> str:
        return str(ipaddress.IPv4Address(_LINK_BASE + 4 * self.index + offset))

    @property
    def v4_a(self) -> str:
        return self._addr(1)

    @property
    def v4_b(self) -> str:
        return self._addr(2)

    @property
    def v4_plen(self) -> int:
        return 30

    @property
    def v6_a(self) -> str | None:
        return f"fd77:0:0:f{self.index:03x}::1" if self.kind == "uplink" else None

    @property
    def v6_b(self) -> str | None:
        return f"fd77:0:0:f{self.index:03x}::2" if self.kind == "uplink" else None

    def ends(self) -> tuple[str, str]:
        return (self.a, self.b)

    def joins(self, x: str, y: str) -> bool:
        return {x, y} == {self.a, self.b}

    def side(self, node: str) -> tuple[str, str, str]:
        """(interface, tap interface, v4 address) of this link on `node`'s side."""
        if node == self.a:
            return self.if_a, self.tap_a, self.v4_a
        if node == self.b:
            return self.if_b, self.tap_b, self.v4_b
        raise KeyError(node)

    def peer(self, node: str) -> str:
        return self.b if node == self.a else self.a


def pair_key(a: str, b: str) -> str:
    """Canonical name of an unordered node pair, e.g. `n1-n3` (sorted)."""
    x, y = sorted((a, b))
    return f"{x}-{y}"


@dataclass(frozen=True)
class Segment:
    """A shared radio segment: every member attaches to one bridge; `loss` is per pair.

    `loss` maps `pair_key(a, b)` to the round-trip loss in percent between those two members;
    100 means they are out of each other's range. Pairs not listed hear each other perfectly.
    """

    name: str
    index: int
    nodes: tuple[str, ...]
    loss: tuple[tuple[str, float], ...] = ()

    @property
    def iface(self) -> str:
        """Interface name of the segment on every member node (<= 15 chars)."""
        return f"sg-{self.name}"

    @property
    def bridge_ns(self) -> str:
        """Namespace suffix of the segment's bridge (a hyphen: never a node name)."""
        return f"seg-{self.name}"

    @staticmethod
    def port(node: str) -> str:
        """Bridge port of `node`, inside the bridge namespace."""
        return f"p-{node}"

    def addr(self, node: Node) -> str:
        return f"10.77.{64 + self.index}.{node.index}"

    @property
    def v4_plen(self) -> int:
        return 24

    def loss_of(self, a: str, b: str) -> float:
        return dict(self.loss).get(pair_key(a, b), 0.0)

    def in_range(self, a: str, b: str) -> bool:
        return a != b and a in self.nodes and b in self.nodes and self.loss_of(a, b) < OUT_OF_RANGE

    def peers(self, node: str) -> list[str]:
        """Members `node` can hear on this segment."""
        return [m for m in self.nodes if self.in_range(node, m)]


@dataclass(frozen=True)
class Topology:
    """The whole mesh; links never include the uplinks until `with_gateways` adds them."""

    spec: str
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    segments: tuple[Segment, ...] = ()

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(name)

    def segments_of(self, node: str) -> list[Segment]:
        return [seg for seg in self.segments if node in seg.nodes]

    def shared_segment(self, x: str, y: str) -> Segment:
        """The first segment both `x` and `y` are members of (KeyError if none)."""
        for seg in self.segments:
            if x != y and x in seg.nodes and y in seg.nodes:
                return seg
        raise KeyError(f"{x}-{y}")

    def mesh_ifaces(self, node: str) -> list[str]:
        """Every mesh interface of `node`: its point-to-point links, then its segments."""
        return [k.side(node)[0] for k in self.mesh_links(node)] + [
            seg.iface for seg in self.segments_of(node)
        ]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def gateways(self) -> list[str]:
        return [n.name for n in self.nodes if n.gateway]

    def mesh_links(self, node: str | None = None) -> list[Link]:
        return [
            link
            for link in self.links
            if link.kind == "mesh" and (node is None or node in link.ends())
        ]

    def link_between(self, x: str, y: str) -> Link:
        for link in self.links:
            if link.joins(x, y):
                return link
        raise KeyError(f"{x}-{y}")

    def uplink(self, node: str) -> Link | None:
        for link in self.links:
            if link.kind == "uplink" and link.a == node:
                return link
        return None

    def with_gateways(self, gateways: list[str] | tuple[str, ...]) -> Topology:
        """Mark nodes as gateways and add one uplink each to the internet namespace."""
        wanted = list(dict.fromkeys(list(self.gateways) + list(gateways)))
        for gw in wanted:
            if gw not in self.names:
                raise TopologyError(f"gateway {gw!r} is not a node of {self.spec}")
        nodes = tuple(Node(n.name, n.index, gateway=n.name in wanted) for n in self.nodes)
        links = [link for link in self.links if link.kind == "mesh"]
        for gw in wanted:
            links.append(Link(len(links), gw, INTERNET, kind="uplink"))
        return Topology(self.spec, nodes, tuple(links), self.segments)

    def neighbours(self, node: str) -> list[str]:
        """Nodes `node` hears directly: over its links and, in range, on its segments."""
        out = [link.peer(node) for link in self.mesh_links(node)]
        for seg in self.segments_of(node):
            out += [m for m in seg.peers(node) if m not in out]
        return out

    def is_connected(self) -> bool:
        if not self.nodes:
            return False
        seen = {self.nodes[0].name}
        todo = [self.nodes[0].name]
        while todo:
            for peer in self.neighbours(todo.pop()):
                if peer not in seen:
                    seen.add(peer)
                    todo.append(peer)
        return len(seen) == len(self.nodes)


def _numbered(n: int) -> list[Node]:
    return [Node(f"n{i}", i) for i in range(1, n + 1)]


def _count(text: str, spec: str, low: int) -> int:
    if not text.isdigit():
        raise TopologyError(f"{spec!r}: {text!r} is not a whole number")
    n = int(text)
    if n < low:
        raise TopologyError(f"{spec!r}: needs at least {low} nodes")
    if n > MAX_NODES:
        raise TopologyError(f"{spec!r}: at most {MAX_NODES} nodes")
    return n


def _from_pairs(spec: str, nodes: list[Node], pairs: list[tuple[str, str]]) -> Topology:
    links = tuple(Link(k, a, b) for k, (a, b) in enumerate(pairs))
    return Topology(spec, tuple(nodes), links)


def chain(n: int) -> Topology:
    nodes = _numbered(n)
    return _from_pairs(f"chain:{n}", nodes, [(f"n{i}", f"n{i + 1}") for i in range(1, n)])


def ring(n: int) -> Topology:
    nodes = _numbered(n)
    pairs = [(f"n{i}", f"n{i + 1}") for i in range(1, n)] + [(f"n{n}", "n1")]
    return _from_pairs(f"ring:{n}", nodes, pairs)


def grid(rows: int, cols: int) -> Topology:
    """Row-major numbering: node n(r*cols+c+1), links to the right and downwards."""
    nodes = _numbered(rows * cols)
    pairs: list[tuple[str, str]] = []
    for r in range(rows):
        for c in range(cols):
            here = r * cols + c + 1
            if c + 1 < cols:
                pairs.append((f"n{here}", f"n{here + 1}"))
            if r + 1 < rows:
                pairs.append((f"n{here}", f"n{here + cols}"))
    return _from_pairs(f"grid:{rows}x{cols}", nodes, pairs)


def shared(n: int) -> Topology:
    """N nodes on one shared segment `s1`, all in range of each other (no point-to-point links)."""
    nodes = _numbered(n)
    seg = Segment("s1", 0, tuple(x.name for x in nodes))
    return Topology(f"shared:{n}", tuple(nodes), (), (seg,))


def neighbourhood() -> Topology:
    """The demo street: a ring of six houses with a seventh across the road linking n3 and n6."""
    nodes = _numbered(7)
    pairs = [(f"n{i}", f"n{i % 6 + 1}") for i in range(1, 7)] + [("n3", "n7"), ("n7", "n6")]
    return _from_pairs("neighbourhood", nodes, pairs).with_gateways(["n1"])


def parse(spec: str) -> Topology:
    """Turn `chain:N`, `ring:N`, `grid:RxC`, `shared:N`, `neighbourhood` or a YAML path into one."""
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    if kind == "chain" and arg:
        return chain(_count(arg, spec, 2))
    if kind == "ring" and arg:
        return ring(_count(arg, spec, 3))
    if kind == "grid" and arg:
        rows, x, cols = arg.partition("x")
        if not x:
            raise TopologyError(f"{spec!r}: write a grid as grid:RxC, e.g. grid:2x3")
        r, c = _count(rows, spec, 1), _count(cols, spec, 1)
        if r * c < 2 or r * c > MAX_NODES:
            raise TopologyError(f"{spec!r}: a grid needs 2 to {MAX_NODES} nodes")
        return grid(r, c)
    if kind == "shared" and arg:
        return shared(_count(arg, spec, 2))
    if spec == "neighbourhood":
        return neighbourhood()
    if spec.endswith((".yaml", ".yml")) or "/" in spec:
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TopologyError(f"cannot read {spec}: {exc.strerror}") from exc
        return from_yaml_text(text, spec)
    raise TopologyError(
        f"unknown topology {spec!r}: use chain:N, ring:N, grid:RxC, shared:N, neighbourhood"
        " or FILE.yaml"
    )


def from_yaml_text(text: str, spec: str = "<yaml>") -> Topology:
    """Parse a YAML topology (the format is described in `cli.lab.topology_file`)."""
    from cli.lab.topology_file import parse_yaml

    return parse_yaml(text, spec)
