"""Address allocation: never a collision, deterministic, and a clear error when full."""

from __future__ import annotations

import ipaddress

import pytest

from provisioning.addresses import AddressPlan, PoolFull
from provisioning.community import AVOID_SECOND_OCTET, ipv4_prefix_for, random_ula


def keys(n):
    return [i.to_bytes(32, "big") for i in range(n)]


def test_5000_allocations_never_collide():
    plan = AddressPlan(ipaddress.IPv4Network("10.64.0.0/14"), ipaddress.IPv6Network("fd00:1::/48"))
    used: set[int] = set()
    seen_v4, seen_clients, seen_v6, seen_v6_clients = set(), set(), set(), set()
    for key in keys(5000):
        a = plan.allocate(key, used)
        used.add(a.slot)
        assert a.ipv4 not in seen_v4
        assert a.ipv6 not in seen_v6
        assert a.ipv4_client not in seen_clients
        assert a.ipv6_client not in seen_v6_clients
        assert a.ipv4 in plan.router_block
        assert a.ipv4_client.subnet_of(plan.ipv4)
        assert not a.ipv4_client.overlaps(plan.router_block)
        assert a.ipv6_client.subnet_of(plan.ipv6)
        seen_v4.add(a.ipv4)
        seen_clients.add(a.ipv4_client)
        seen_v6.add(a.ipv6)
        seen_v6_clients.add(a.ipv6_client)
    assert len(used) == 5000


def test_allocation_is_deterministic_for_the_same_registry():
    plan = AddressPlan(ipaddress.IPv4Network("10.174.0.0/16"), ipaddress.IPv6Network("fd00::/48"))
    used = {3, 7, 11}
    assert plan.allocate(b"k" * 32, used) == plan.allocate(b"k" * 32, set(used))


def test_full_pool_gives_a_clear_error():
    plan = AddressPlan(ipaddress.IPv4Network("10.174.3.0/24"), ipaddress.IPv6Network("fd00::/48"))
    used: set[int] = set()
    for key in keys(plan.capacity):
        used.add(plan.allocate(key, used).slot)
    with pytest.raises(PoolFull, match=r"all \d+ node slots of 10.174.3.0/24 are used; widen"):
        plan.allocate(b"x" * 32, used)


def test_ipv4_prefix_avoids_common_home_ranges_and_is_stable():
    for name in [f"community-{i}" for i in range(300)]:
        net = ipv4_prefix_for(name)
        assert net.prefixlen == 16
        assert net.subnet_of(ipaddress.IPv4Network("10.0.0.0/8"))
        assert net.network_address.packed[1] not in AVOID_SECOND_OCTET
        assert ipv4_prefix_for(name) == net


def test_ula_is_rfc4193():
    nets = {random_ula() for _ in range(20)}
    assert len(nets) == 20  # 40 random bits each
    for net in nets:
        assert net.prefixlen == 48
        assert net.subnet_of(ipaddress.IPv6Network("fd00::/8"))
