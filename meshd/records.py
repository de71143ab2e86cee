"""The three record kinds and their envelope, with every field checked.

Kinds mirror respondd's split: `node` (what a router is, rarely changes), `links` (one entry per
neighbour), `traffic` (cumulative counters). Bodies are plain JSON on the wire and frozen
dataclasses in code; `to_json` / `from_json` convert, and `from_json` refuses anything out of range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar

from meshd import validate as v

MAX_NEIGHBOURS = 64  # list cap: a router with more one-hop neighbours than this is misconfigured
MAX_ADDRESSES = 16
MAX_ENDPOINTS = 32  # top destinations an endpoint attests, plus "other" for the rest
OTHER_PEER = "other"  # the endpoint bucket for every destination outside the top N


class Kind(StrEnum):
    NODE = "node"
    LINKS = "links"
    TRAFFIC = "traffic"


MEDIA = ("wifi", "veth", "ethernet", "tap", "other")


@dataclass(frozen=True, slots=True)
class Location:
    """Opt-in position; only exported when the node's owner chose to publish it."""

    lat: float
    lon: float

    @classmethod
    def from_json(cls, value: Any, path: str) -> Location:
        o = v.obj(value, path, frozenset({"lat", "lon"}))
        return cls(
            v.number(o["lat"], f"{path}.lat", -90, 90), v.number(o["lon"], f"{path}.lon", -180, 180)
        )

    def to_json(self) -> dict[str, Any]:
        return {"lat": self.lat, "lon": self.lon}


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """The radio/routing settings a node runs with, published so the audit can spot drift."""

    mesh_id: str
    routing: str
    channels: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any, path: str) -> MeshConfig:
        o = v.obj(value, path, frozenset({"mesh_id", "routing", "channels"}))
        chans = v.obj(
            o["channels"], f"{path}.channels", frozenset(), frozenset({"2g", "5g", "6g", "60g"})
        )
        return cls(
            mesh_id=v.string(o["mesh_id"], f"{path}.mesh_id", max_len=32),
            routing=v.choice(o["routing"], f"{path}.routing", ("babel", "batman-adv")),
            channels={
                k: v.integer(c, f"{path}.channels.{k}", 1, 233) for k, c in sorted(chans.items())
            },
        )

    def to_json(self) -> dict[str, Any]:
        return {"mesh_id": self.mesh_id, "routing": self.routing, "channels": dict(self.channels)}


@dataclass(frozen=True, slots=True)
class NodeBody:
    """What a router is: name, hardware, software, addresses, what it offers."""

    kind: ClassVar[Kind] = Kind.NODE
    hostname: str
    model: str
    software: str
    addresses: tuple[str, ...]
    gateway_kbit: int | None = None  # uplink capacity offered to the mesh; None = not a gateway
    location: Location | None = None
    contact: str | None = None
    config: MeshConfig | None = None

    _FIELDS: ClassVar[frozenset[str]] = frozenset({"hostname", "model", "software", "addresses"})
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset(
        {"gateway_kbit", "location", "contact", "config"}
    )

    @classmethod
    def from_json(cls, value: Any, path: str = "body") -> NodeBody:
        o = v.obj(value, path, cls._FIELDS, cls._OPTIONAL)
        addrs = v.array(o["addresses"], f"{path}.addresses", MAX_ADDRESSES)
        return cls(
            hostname=v.hostname(o["hostname"], f"{path}.hostname"),
            model=v.string(o["model"], f"{path}.model", max_len=64),
            software=v.string(o["software"], f"{path}.software", max_len=64),
            addresses=tuple(v.ip_address(a, f"{path}.addresses[{i}]") for i, a in enumerate(addrs)),
            gateway_kbit=v.opt_integer(o.get("gateway_kbit"), f"{path}.gateway_kbit", 0, 10**9),
            location=None
            if o.get("location") is None
            else Location.from_json(o["location"], f"{path}.location"),
            contact=v.opt_string(o.get("contact"), f"{path}.contact", max_len=128),
            config=None
            if o.get("config") is None
            else MeshConfig.from_json(o["config"], f"{path}.config"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hostname": self.hostname,
            "model": self.model,
            "software": self.software,
            "addresses": list(self.addresses),
        }
        if self.gateway_kbit is not None:
            out["gateway_kbit"] = self.gateway_kbit
        if self.location is not None:
            out["location"] = self.location.to_json()
        if self.contact is not None:
            out["contact"] = self.contact
        if self.config is not None:
            out["config"] = self.config.to_json()
        return out


def _measured(whole: bool, lo: float, hi: float) -> Any:
    """An optional measurement of a link: None when unknown (and then left off the wire)."""
    return field(default=None, metadata={"range": (whole, lo, hi)})


@dataclass(frozen=True, slots=True)
class LinkEntry:
    """One neighbour as this node sees it. Unknown measurements are None, never guessed.

    The field list below is the one table: validation, `from_json` and `to_json` are derived
    from it (`_LINK_RANGES` and friends after the class), so a new measurement is one line here.
    """

    neighbour: str
    iface: str
    medium: str = "other"
    up: bool = True
    rxcost: int | None = _measured(True, 0, 65535)  # babeld's view
    txcost: int | None = _measured(True, 0, 65535)
    rtt_ms: float | None = _measured(False, 0, 600_000)
    delivery_rx: float | None = _measured(False, 0, 1)  # probe delivery ratio neighbour -> us
    delivery_tx: float | None = _measured(False, 0, 1)  # probe delivery ratio us -> neighbour
    loss: float | None = _measured(False, 0, 1)
    etx: float | None = _measured(False, 1, 65535)
    signal_dbm: int | None = _measured(True, -150, 30)
    tx_bitrate_mbit: float | None = _measured(False, 0, 1_000_000)
    expected_throughput_mbit: float | None = _measured(False, 0, 1_000_000)

    @classmethod
    def from_json(cls, value: Any, path: str) -> LinkEntry:
        o = v.obj(value, path, _LINK_REQUIRED, _LINK_OPTIONAL)
        measured: dict[str, Any] = {}
        # One loop over the measurements: a links record has many entries and the audit
        # decodes tens of thousands of them.
        for name, whole, lo, hi in _LINK_RANGES:
            x = o.get(name)
            if x is None:
                continue
            measured[name] = (
                v.integer(x, f"{path}.{name}", int(lo), int(hi))
                if whole
                else v.number(x, f"{path}.{name}", lo, hi)
            )
        return cls(
            neighbour=v.node_id(o["neighbour"], f"{path}.neighbour"),
            iface=v.iface(o["iface"], f"{path}.iface"),
            medium=v.choice(o.get("medium", "other"), f"{path}.medium", MEDIA),
            up=v.boolean(o.get("up", True), f"{path}.up"),
            **measured,
        )

    @classmethod
    def from_verified(cls, o: Mapping[str, Any]) -> LinkEntry:
        """What `from_json` gives for an entry it accepted, without checking it again."""
        if not o.keys() <= _LINK_FIELDS:  # a newer field: the full path
            return cls.from_json(o, "body.links[]")
        measured: dict[str, Any] = {
            name: (x if whole else float(x))
            for name, whole, _, _ in _LINK_RANGES
            if (x := o.get(name)) is not None
        }
        medium, up = o.get("medium", "other"), o.get("up", True)
        return cls(o["neighbour"], o["iface"], medium, up, **measured)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "neighbour": self.neighbour,
            "iface": self.iface,
            "medium": self.medium,
            "up": self.up,
        }
        for name, *_ in _LINK_RANGES:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


#: The measurements of a link (field, integer?, lowest, highest), in declaration order.
_LINK_RANGES: tuple[tuple[str, bool, float, float], ...] = tuple(
    (f.name, *f.metadata["range"]) for f in fields(LinkEntry) if "range" in f.metadata
)
_LINK_REQUIRED = frozenset(f.name for f in fields(LinkEntry) if f.default is MISSING)
_LINK_FIELDS = frozenset(f.name for f in fields(LinkEntry))
_LINK_OPTIONAL = _LINK_FIELDS - _LINK_REQUIRED


@dataclass(frozen=True, slots=True)
class LinksBody:
    kind: ClassVar[Kind] = Kind.LINKS
    links: tuple[LinkEntry, ...]

    @classmethod
    def from_json(cls, value: Any, path: str = "body") -> LinksBody:
        o = v.obj(value, path, frozenset({"links"}))
        items = v.array(o["links"], f"{path}.links", MAX_NEIGHBOURS)
        return cls(tuple(LinkEntry.from_json(x, f"{path}.links[{i}]") for i, x in enumerate(items)))

    @classmethod
    def from_verified(cls, value: Mapping[str, Any]) -> LinksBody:
        if value.keys() != {"links"}:  # a field this fast path does not know: the full path
            return cls.from_json(value)
        return cls(tuple(LinkEntry.from_verified(x) for x in value["links"]))

    def to_json(self) -> dict[str, Any]:
        return {"links": [entry.to_json() for entry in self.links]}


#: Cumulative counters of one neighbour, and a node's transit counters, in wire order.
_PAIR_COUNTERS = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")
_TRANSIT_COUNTERS = ("forwarded_bytes", "forwarded_packets", "gateway_bytes", "client_bytes")


def _counters(o: Mapping[str, Any], path: str, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: v.integer(o[name], f"{path}.{name}") for name in names}


@dataclass(frozen=True, slots=True)
class NeighbourCounters:
    """Cumulative bytes and packets exchanged with one neighbour over one interface."""

    neighbour: str
    iface: str
    rx_bytes: int = 0
    tx_bytes: int = 0
    rx_packets: int = 0
    tx_packets: int = 0

    @classmethod
    def from_json(cls, value: Any, path: str) -> NeighbourCounters:
        o = v.obj(value, path, frozenset({"neighbour", "iface", *_PAIR_COUNTERS}))
        return cls(
            neighbour=v.node_id(o["neighbour"], f"{path}.neighbour"),
            iface=v.iface(o["iface"], f"{path}.iface"),
            **_counters(o, path, _PAIR_COUNTERS),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "neighbour": self.neighbour,
            "iface": self.iface,
            **{name: getattr(self, name) for name in _PAIR_COUNTERS},
        }


@dataclass(frozen=True, slots=True)
class EndpointFlow:
    """Bytes this node's own clients exchanged end to end with one mesh destination; the
    admin side checks relays' claims against these (see `meshd.contrib`)."""

    peer: str  # a node id, or OTHER_PEER
    sent_bytes: int = 0  # originated here towards the peer
    received_bytes: int = 0  # terminated here, from the peer

    @classmethod
    def from_json(cls, value: Any, path: str) -> EndpointFlow:
        o = v.obj(value, path, frozenset({"peer", "sent_bytes", "received_bytes"}))
        peer = o["peer"]
        return cls(
            peer=OTHER_PEER if peer == OTHER_PEER else v.node_id(peer, f"{path}.peer"),
            sent_bytes=v.integer(o["sent_bytes"], f"{path}.sent_bytes"),
            received_bytes=v.integer(o["received_bytes"], f"{path}.received_bytes"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "sent_bytes": self.sent_bytes,
            "received_bytes": self.received_bytes,
        }


@dataclass(frozen=True, slots=True)
class TrafficBody:
    """Cumulative counters since `since`; they survive agent restarts and reboots (see boot_id)."""

    kind: ClassVar[Kind] = Kind.TRAFFIC
    boot_id: str
    uptime_s: int
    since: int  # unix time the cumulative counting began
    neighbours: tuple[NeighbourCounters, ...] = ()
    forwarded_bytes: int = 0  # transit: carried for others, neither from nor to this node
    forwarded_packets: int = 0
    gateway_bytes: int = 0  # from the mesh to the uplink, on behalf of other nodes
    # to and from this node's clients, plus the router's own traffic on its mesh links (control
    # plane aside: broker, probes, babel, mDNS): everything this node consumes, both directions
    client_bytes: int = 0
    endpoints: tuple[EndpointFlow, ...] = ()  # optional; omitted from the wire when empty

    _FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"boot_id", "uptime_s", "since", "neighbours", *_TRANSIT_COUNTERS}
    )
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"endpoints"})

    @classmethod
    def from_json(cls, value: Any, path: str = "body") -> TrafficBody:
        o = v.obj(value, path, cls._FIELDS, cls._OPTIONAL)
        items = v.array(o["neighbours"], f"{path}.neighbours", MAX_NEIGHBOURS)
        flows = v.array(o.get("endpoints", []), f"{path}.endpoints", MAX_ENDPOINTS + 1)
        return cls(
            boot_id=v.string(o["boot_id"], f"{path}.boot_id", max_len=64, min_len=1),
            uptime_s=v.integer(o["uptime_s"], f"{path}.uptime_s"),
            since=v.integer(o["since"], f"{path}.since"),
            neighbours=tuple(
                NeighbourCounters.from_json(x, f"{path}.neighbours[{i}]")
                for i, x in enumerate(items)
            ),
            **_counters(o, path, _TRANSIT_COUNTERS),
            endpoints=tuple(
                EndpointFlow.from_json(x, f"{path}.endpoints[{i}]") for i, x in enumerate(flows)
            ),
        )

    @classmethod
    def from_verified(cls, value: Mapping[str, Any]) -> TrafficBody:
        """What `from_json` gives for a body it accepted, without checking it again."""
        if value.keys() != cls._FIELDS:  # an optional or newer field: the full path
            return cls.from_json(value)
        pairs = tuple(
            NeighbourCounters(x["neighbour"], x["iface"], *(x[n] for n in _PAIR_COUNTERS))
            for x in value["neighbours"]
        )
        head = (value["boot_id"], value["uptime_s"], value["since"], pairs)
        return cls(*head, *(value[n] for n in _TRANSIT_COUNTERS))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "boot_id": self.boot_id,
            "uptime_s": self.uptime_s,
            "since": self.since,
            "neighbours": [n.to_json() for n in self.neighbours],
            **{name: getattr(self, name) for name in _TRANSIT_COUNTERS},
        }
        if self.endpoints:
            out["endpoints"] = [e.to_json() for e in self.endpoints]
        return out


Body = NodeBody | LinksBody | TrafficBody
BODY_TYPES: dict[Kind, type[NodeBody] | type[LinksBody] | type[TrafficBody]] = {
    Kind.NODE: NodeBody,
    Kind.LINKS: LinksBody,
    Kind.TRAFFIC: TrafficBody,
}


def parse_body(kind: Kind, value: Any) -> Body:
    """Typed body for a kind; raises `validate.Invalid` naming the bad field."""
    return BODY_TYPES[kind].from_json(value)


def parse_verified_body(kind: Kind, value: Any) -> Body:
    """The body of a record that already passed `parse_body`, parsed again for a reader.

    Links and traffic bodies, the large ones, skip the range checks they passed already (a
    third of the cost); node bodies are normalised on the way in (addresses), so they take
    the full path. Only for bytes that were verified: never on anything from the wire.
    """
    if kind is Kind.LINKS:
        return LinksBody.from_verified(value)
    if kind is Kind.TRAFFIC:
        return TrafficBody.from_verified(value)
    return BODY_TYPES[kind].from_json(value)
