"""Lab topologies from YAML files: nodes, links with start-up impairments, shared segments."""

from __future__ import annotations

from typing import Any

from cli.lab.impair import BY_NAME, ImpairError, Impairment
from cli.lab.topology import (
    INTERNET,
    MAX_LINKS,
    MAX_NODES,
    MAX_SEGMENTS,
    NODE_NAME_RE,
    OUT_OF_RANGE,
    Link,
    Node,
    Segment,
    Topology,
    TopologyError,
    pair_key,
)


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not NODE_NAME_RE.match(name) or name == INTERNET:
        raise TopologyError(
            f"{where}: node name {name!r} must be 1-10 lowercase letters/digits starting with a"
            f" letter (and not {INTERNET!r})"
        )
    return name


def _impairment(entry: dict[str, Any], where: str) -> Impairment:
    try:
        return Impairment.from_mapping(entry, where)
    except ImpairError as exc:
        raise TopologyError(str(exc)) from None


def parse_yaml(text: str, spec: str = "<yaml>") -> Topology:
    """Parse a YAML topology.

    ```yaml
    nodes: [alice, bob, carol]          # optional: nodes named by links are added in order
    links:
      - [alice, bob]
      - {a: bob, b: carol, loss: 10, rate: 5mbit, delay: 20, jitter: 5, one_way: false}
    segments:                           # shared radio segments (a bridge; per-pair range/loss)
      - {name: s1, nodes: [carol, dave, erin], loss: {carol-erin: 100, dave-erin: 20}}
    gateways: [alice]
    ```
    `links` or `segments` (or both) must be given.
    """
    import yaml  # local: the pure parsers above must not need PyYAML

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(f"{spec}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise TopologyError(f"{spec}: expected a mapping with 'links' (and optional 'nodes')")
    unknown = set(data) - {"nodes", "links", "gateways", "segments"}
    if unknown:
        raise TopologyError(f"{spec}: unknown keys {sorted(unknown)}")
    names: list[str] = []
    raw_nodes = data.get("nodes") or []
    if not isinstance(raw_nodes, list):
        raise TopologyError(f"{spec}: 'nodes' must be a list of names")
    for n in raw_nodes:
        name = _check_name(n, spec)
        if name in names:
            raise TopologyError(f"{spec}: node {name!r} listed twice")
        names.append(name)
    raw_links = data.get("links")
    raw_segments = data.get("segments")
    if raw_links is None and raw_segments:
        raw_links = []
    if not isinstance(raw_links, list) or (not raw_links and not raw_segments):
        raise TopologyError(f"{spec}: 'links' must be a non-empty list (or give 'segments')")
    links: list[Link] = []
    seen: set[frozenset[str]] = set()
    for i, entry in enumerate(raw_links):
        where = f"{spec}: links[{i}]"
        if isinstance(entry, list) and len(entry) == 2:
            a, b, imp = entry[0], entry[1], Impairment()
        elif isinstance(entry, dict) and "a" in entry and "b" in entry:
            extra = set(entry) - {"a", "b", "one_way", *BY_NAME}
            if extra:
                raise TopologyError(f"{where}: unknown keys {sorted(extra)}")
            a, b, imp = entry["a"], entry["b"], _impairment(entry, where)
        else:
            raise TopologyError(f"{where}: write a link as [a, b] or {{a: .., b: ..}}")
        a, b = _check_name(a, where), _check_name(b, where)
        if a == b:
            raise TopologyError(f"{where}: a link needs two different nodes")
        pair = frozenset((a, b))
        if pair in seen:
            raise TopologyError(f"{where}: {a}-{b} is listed twice (parallel links unsupported)")
        seen.add(pair)
        for name in (a, b):
            if name not in names:
                names.append(name)
        links.append(Link(len(links), a, b, impairment=imp))
    segments = _segments(raw_segments, spec, names)
    if len(names) > MAX_NODES or len(links) > MAX_LINKS:
        raise TopologyError(f"{spec}: at most {MAX_NODES} nodes and {MAX_LINKS} links")
    nodes = tuple(Node(name, i + 1) for i, name in enumerate(names))
    topo = Topology(spec, nodes, tuple(links), segments)
    gateways = data.get("gateways") or []
    if not isinstance(gateways, list):
        raise TopologyError(f"{spec}: 'gateways' must be a list of node names")
    return topo.with_gateways([_check_name(g, spec) for g in gateways]) if gateways else topo


def _segments(raw: object, spec: str, names: list[str]) -> tuple[Segment, ...]:
    """Parse `segments:`; member nodes not seen yet are appended to `names`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TopologyError(f"{spec}: 'segments' must be a list of {{name, nodes, loss}}")
    if len(raw) > MAX_SEGMENTS:
        raise TopologyError(f"{spec}: at most {MAX_SEGMENTS} segments")
    out: list[Segment] = []
    for i, entry in enumerate(raw):
        where = f"{spec}: segments[{i}]"
        if not isinstance(entry, dict):
            raise TopologyError(f"{where}: write a segment as {{name: s1, nodes: [a, b, c]}}")
        extra = set(entry) - {"name", "nodes", "loss"}
        if extra:
            raise TopologyError(f"{where}: unknown keys {sorted(extra)}")
        name = entry.get("name", f"s{i + 1}")
        if not isinstance(name, str) or not NODE_NAME_RE.match(name):
            raise TopologyError(
                f"{where}: segment name {name!r} must be 1-10 lowercase letters/digits"
                " starting with a letter"
            )
        if any(seg.name == name for seg in out):
            raise TopologyError(f"{where}: segment {name!r} is listed twice")
        members = entry.get("nodes")
        if not isinstance(members, list) or len(members) < 2:
            raise TopologyError(f"{where}: 'nodes' must list at least two nodes")
        members = [_check_name(m, where) for m in members]
        if len(set(members)) != len(members):
            raise TopologyError(f"{where}: a node is listed twice")
        loss: dict[str, float] = {}
        raw_loss = entry.get("loss") or {}
        if not isinstance(raw_loss, dict):
            raise TopologyError(f"{where}: 'loss' must map pairs like n1-n3 to a percentage")
        for pair, pct in raw_loss.items():
            a, sep, b = str(pair).partition("-")
            if not sep or a not in members or b not in members or a == b:
                raise TopologyError(
                    f"{where}: loss key {pair!r} must be two different members joined by '-',"
                    f" e.g. {members[0]}-{members[1]}"
                )
            if not isinstance(pct, int | float) or not 0 <= pct <= OUT_OF_RANGE:
                raise TopologyError(
                    f"{where}: loss of {pair} must be a percentage in [0, 100] (100 = out of range)"
                )
            loss[pair_key(a, b)] = float(pct)
        for m in members:
            if m not in names:
                names.append(m)
        out.append(Segment(name, i, tuple(members), tuple(sorted(loss.items()))))
    return tuple(out)
