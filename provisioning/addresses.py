"""Address plan of a community and the per-node allocator.

The community's IPv4 prefix is split in two: the first sixteenth holds one router address per node
(10.N.0.0/20 for a /16), the rest is cut into client /27 blocks. Node slot i gets router address
i+1, client block i, IPv6 router address <ula>::i+1 and client prefix <ula>:i+1::/64.

The preferred slot comes from a hash of the node's key, not from a counter: two admins adding nodes
in separate git branches then rarely pick the same slot, and when they do `node add` and
`community check` see the collision. Linear probing keeps it deterministic for a given registry.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from meshd.errors import FixableError

CLIENT_PREFIXLEN = 27
IPV6_CLIENT_PREFIXLEN = 64


class PoolFull(FixableError):
    """No free slot is left in the community's address plan (str(): what and fix on one line)."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(what, "ipv4.prefix", fix)
        self.args = (f"{what}; {fix}",)


@dataclass(frozen=True, slots=True)
class NodeAddresses:
    slot: int
    ipv4: ipaddress.IPv4Address  # router address, announced as /32 on the mesh
    ipv4_client: ipaddress.IPv4Network  # the node's DHCP block
    ipv6: ipaddress.IPv6Address
    ipv6_client: ipaddress.IPv6Network

    def to_json(self) -> dict[str, object]:
        return {
            "slot": self.slot,
            "ipv4": str(self.ipv4),
            "ipv4_client": str(self.ipv4_client),
            "ipv6": str(self.ipv6),
            "ipv6_client": str(self.ipv6_client),
        }


class AddressPlan:
    def __init__(self, ipv4: ipaddress.IPv4Network, ipv6: ipaddress.IPv6Network) -> None:
        if ipv4.prefixlen > 24:
            raise ValueError("the IPv4 prefix must be /24 or larger")
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.router_block = next(ipv4.subnets(new_prefix=ipv4.prefixlen + 4))
        first_client = int(self.router_block.broadcast_address) + 1
        self._client_base = first_client - first_client % (1 << (32 - CLIENT_PREFIXLEN))
        if self._client_base < first_client:
            self._client_base += 1 << (32 - CLIENT_PREFIXLEN)
        client_blocks = (int(ipv4.broadcast_address) + 1 - self._client_base) >> (
            32 - CLIENT_PREFIXLEN
        )
        router_addrs = self.router_block.num_addresses - 2
        v6_slots = (1 << (IPV6_CLIENT_PREFIXLEN - ipv6.prefixlen)) - 1
        self.capacity = min(client_blocks, router_addrs, v6_slots)

    def addresses(self, slot: int) -> NodeAddresses:
        if not 0 <= slot < self.capacity:
            raise ValueError(f"slot {slot} outside 0..{self.capacity - 1}")
        block = 1 << (32 - CLIENT_PREFIXLEN)
        v6_step = 1 << (128 - IPV6_CLIENT_PREFIXLEN)
        return NodeAddresses(
            slot=slot,
            ipv4=self.router_block.network_address + slot + 1,
            ipv4_client=ipaddress.IPv4Network((self._client_base + slot * block, CLIENT_PREFIXLEN)),
            ipv6=self.ipv6.network_address + slot + 1,
            ipv6_client=ipaddress.IPv6Network(
                (int(self.ipv6.network_address) + (slot + 1) * v6_step, IPV6_CLIENT_PREFIXLEN)
            ),
        )

    def preferred_slot(self, key: bytes) -> int:
        digest = hashlib.sha256(b"mutualmesh-slot\0" + key).digest()
        return int.from_bytes(digest[:8], "big") % self.capacity

    def allocate(self, key: bytes, used: Iterable[int]) -> NodeAddresses:
        """The first free slot from the key's preferred one on; PoolFull when none is left."""
        taken = set(used)
        if len(taken) >= self.capacity:
            raise PoolFull(
                f"all {self.capacity} node slots of {self.ipv4} are used",
                "widen ipv4.prefix (e.g. a /15) or remove old nodes from nodes.yaml",
            )
        start = self.preferred_slot(key)
        for step in range(self.capacity):
            slot = (start + step) % self.capacity
            if slot not in taken:
                return self.addresses(slot)
        raise PoolFull(f"no free slot in {self.ipv4}", "widen ipv4.prefix")  # unreachable
