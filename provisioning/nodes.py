"""The node registry (nodes.yaml): every enrolled node, its key, slot, addresses and certificate.

Everything a bundle needs except the node's private key lives here, so rendering is a pure
function of (community.yaml, nodes.yaml entry, key file) and can be repeated byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshd import validate as v
from meshd.errors import KeyFormatError
from meshd.ids import PublicKey
from meshd.trust import Enrollment
from provisioning.addresses import AddressPlan, NodeAddresses
from provisioning.community import NODES_FILE, ProvisionError, dump_yaml, load_yaml

MAX_UPLINK_KBIT = 100_000_000  # 100 Gbit/s: anything above is a typo


@dataclass(frozen=True, slots=True)
class NodeEntry:
    hostname: str
    key: PublicKey
    model: str
    gateway: bool
    location: tuple[float, float] | None
    addresses: NodeAddresses
    cert: Enrollment
    uplink_kbit: int | None = None  # a gateway's shareable uplink, announced as gateway_kbit

    @property
    def node_id(self) -> str:
        return self.key.node_id

    def to_json(self) -> dict[str, Any]:
        data = {
            "hostname": self.hostname,
            "node_id": self.node_id,
            "key": self.key.text,
            "model": self.model,
            "gateway": self.gateway,
            "location": list(self.location) if self.location else None,
            "addresses": self.addresses.to_json(),
            "cert": self.cert.to_json(),
        }
        if self.uplink_kbit is not None:
            data["uplink_kbit"] = self.uplink_kbit
        return data

    @classmethod
    def from_json(cls, value: Any, path: str, plan: AddressPlan) -> NodeEntry:
        o = v.obj(
            value,
            path,
            frozenset({"hostname", "node_id", "key", "model", "gateway", "addresses", "cert"}),
            frozenset({"location", "uplink_kbit"}),
        )
        try:
            key = PublicKey.from_text(o["key"], f"{path}.key")
        except KeyFormatError as exc:
            raise v.Invalid(f"{path}.key", str(exc)) from None
        if v.node_id(o["node_id"], f"{path}.node_id") != key.node_id:
            raise v.Invalid(f"{path}.node_id", "does not match the key")
        loc = o.get("location")
        location = None
        if loc is not None:
            items = v.array(loc, f"{path}.location", 2)
            location = (
                v.number(items[0], f"{path}.location[0]", -90, 90),
                v.number(items[1], f"{path}.location[1]", -180, 180),
            )
        addr = v.obj(
            o["addresses"],
            f"{path}.addresses",
            frozenset({"slot", "ipv4", "ipv4_client", "ipv6", "ipv6_client"}),
        )
        slot = v.integer(addr["slot"], f"{path}.addresses.slot", 0, max(0, plan.capacity - 1))
        expected = plan.addresses(slot)
        if expected.to_json() != dict(addr):
            raise v.Invalid(
                f"{path}.addresses", f"do not match slot {slot} of the community's address plan"
            )
        cert = Enrollment.from_json(o["cert"], f"{path}.cert")
        hostname = v.hostname(o["hostname"], f"{path}.hostname")
        if cert.hostname != hostname or cert.key != key:
            raise v.Invalid(f"{path}.cert", "is for another hostname or key")
        gateway = v.boolean(o["gateway"], f"{path}.gateway")
        uplink = o.get("uplink_kbit")
        if uplink is not None:
            uplink = v.integer(uplink, f"{path}.uplink_kbit", 1, MAX_UPLINK_KBIT)
            if not gateway:
                raise v.Invalid(f"{path}.uplink_kbit", "only a gateway has an uplink to share")
        return cls(
            hostname=hostname,
            key=key,
            model=v.string(o["model"], f"{path}.model", max_len=64, min_len=1),
            gateway=gateway,
            location=location,
            addresses=expected,
            cert=cert,
            uplink_kbit=uplink,
        )


def parse_location(text: str) -> tuple[float, float]:
    """'LAT,LON' in degrees; ValueError with a readable message otherwise."""
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError("write it as LAT,LON, e.g. 52.52,13.40")
    try:
        lat, lon = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError("LAT and LON must be decimal numbers, e.g. 52.52,13.40") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError("latitude must be within ±90 and longitude within ±180")
    return (lat, lon)


class Registry:
    """nodes.yaml, checked on load: no duplicate hostnames, keys or slots.

    `nodes` are the enrolled nodes by hostname (a revoked one stays there until its hostname is
    reused). `retired` are revoked nodes whose hostname went to a new key (`node add --replace`):
    they keep their key and address slot for good, because their signed records may still
    circulate and a new node at the same address would be confused with them.
    """

    def __init__(
        self, plan: AddressPlan, nodes: Iterable[NodeEntry] = (), retired: Iterable[NodeEntry] = ()
    ) -> None:
        self.plan = plan
        self.nodes: dict[str, NodeEntry] = {}
        self.retired: list[NodeEntry] = []
        for node in retired:
            self._check_unique(node)
            self.retired.append(node)
        for node in nodes:
            self.add(node)

    def add(self, node: NodeEntry) -> None:
        if node.hostname in self.nodes:
            raise ValueError(f"hostname {node.hostname!r} is already in the registry")
        self._check_unique(node)
        self.nodes[node.hostname] = node

    def retire(self, hostname: str) -> NodeEntry:
        """Move a (revoked) node out of the way of its hostname; its key and slot stay taken."""
        node = self.nodes.pop(hostname)
        self.retired.append(node)
        return node

    def _check_unique(self, node: NodeEntry) -> None:
        for other in [*self.nodes.values(), *self.retired]:
            if other.key == node.key:
                raise ValueError(f"{node.hostname}: same key as {other.hostname}")
            if other.addresses.slot == node.addresses.slot:
                raise ValueError(
                    f"{node.hostname}: address slot {node.addresses.slot} already used by "
                    f"{other.hostname}"
                )

    def used_slots(self) -> set[int]:
        return {n.addresses.slot for n in [*self.nodes.values(), *self.retired]}

    def to_yaml(self) -> str:
        data: dict[str, Any] = {"nodes": [self.nodes[h].to_json() for h in sorted(self.nodes)]}
        if self.retired:
            data["retired"] = [n.to_json() for n in self.retired]
        return dump_yaml(data)

    @classmethod
    def load(cls, directory: Path, plan: AddressPlan) -> Registry:
        path = directory / NODES_FILE
        if not path.exists():
            return cls(plan)
        data = load_yaml(path)
        if data is None:
            return cls(plan)
        where = str(path)
        try:
            top = v.obj(data, "nodes.yaml", frozenset({"nodes"}), frozenset({"retired"}))
            items = v.array(top["nodes"], "nodes", 1_000_000)
            old = v.array(top.get("retired", []), "retired", 1_000_000)
            registry = cls(
                plan,
                retired=[NodeEntry.from_json(o, f"retired[{i}]", plan) for i, o in enumerate(old)],
            )
            for i, item in enumerate(items):
                registry.add(NodeEntry.from_json(item, f"nodes[{i}]", plan))
        except v.Invalid as exc:
            raise ProvisionError(
                str(exc), where, "restore nodes.yaml from git, or fix the entry by hand"
            ) from None
        except ValueError as exc:
            raise ProvisionError(
                str(exc), where, "remove the duplicate entry (git history shows which is newer)"
            ) from None
        return registry
