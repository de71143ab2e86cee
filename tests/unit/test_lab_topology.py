"""Topology parsing and the lab's address plan (pure: no root, no namespaces)."""

from __future__ import annotations

import ipaddress

import pytest

from cli.lab.topology import (
    INTERNET,
    Topology,
    TopologyError,
    chain,
    from_yaml_text,
    grid,
    neighbourhood,
    parse,
    ring,
)


def _pairs(topo: Topology) -> set[frozenset[str]]:
    return {frozenset(link.ends()) for link in topo.mesh_links()}


def test_chain_links_consecutive_nodes():
    topo = parse("chain:5")
    assert topo.names == ["n1", "n2", "n3", "n4", "n5"]
    assert _pairs(topo) == {frozenset((f"n{i}", f"n{i + 1}")) for i in range(1, 5)}
    assert topo.is_connected()


def test_ring_closes_the_loop():
    topo = parse("ring:4")
    assert len(topo.mesh_links()) == 4
    assert frozenset(("n4", "n1")) in _pairs(topo)
    assert all(len(topo.neighbours(n)) == 2 for n in topo.names)


def test_grid_has_right_and_down_links():
    topo = parse("grid:2x3")
    assert len(topo.nodes) == 6
    # 2 rows x 2 horizontal + 3 vertical
    assert len(topo.mesh_links()) == 7
    assert frozenset(("n1", "n4")) in _pairs(topo)
    assert frozenset(("n3", "n4")) not in _pairs(topo)  # no wrap-around at a row end
    assert topo.is_connected()


def test_neighbourhood_is_seven_nodes_with_one_gateway():
    topo = neighbourhood()
    assert len(topo.nodes) == 7
    assert topo.gateways == ["n1"]
    assert topo.is_connected()
    uplink = topo.uplink("n1")
    assert uplink is not None
    assert uplink.b == INTERNET
    assert parse("neighbourhood") == topo


@pytest.mark.parametrize(
    "spec",
    ["chain:1", "ring:2", "grid:3", "grid:1x1", "grid:ax2", "star:5", "chain:", "chain:999", ""],
)
def test_bad_specs_are_rejected_with_a_reason(spec):
    with pytest.raises(TopologyError):
        parse(spec)


def test_addresses_are_unique_and_inside_the_lab_ranges():
    topo = grid(10, 10).with_gateways(["n1", "n100"])
    v4 = [n.v4 for n in topo.nodes] + [x for k in topo.links for x in (k.v4_a, k.v4_b)]
    assert len(v4) == len(set(v4))
    for a in v4:
        assert ipaddress.IPv4Address(a) in ipaddress.IPv4Network("10.77.0.0/16")
    for n in topo.nodes:
        assert ipaddress.IPv6Address(n.v6) in ipaddress.IPv6Network("fd77::/48")
    for k in topo.links:
        net = ipaddress.IPv4Network(f"{k.v4_a}/{k.v4_plen}", strict=False)
        assert ipaddress.IPv4Address(k.v4_b) in net


def test_interface_names_fit_the_kernel_limit():
    topo = from_yaml_text("links: [[abcdefghij, bcdefghijk]]\ngateways: [abcdefghij]\n")
    for k in topo.links:
        for name in (k.if_a, k.if_b, k.tap_a, k.tap_b):
            assert len(name) <= 15
    assert len({k.side("abcdefghij")[0] for k in topo.links}) == 2  # mesh link + uplink differ


def test_uplinks_come_after_mesh_links_and_keep_their_indices():
    base = ring(5)
    topo = base.with_gateways(["n2"]).with_gateways(["n4"])
    assert topo.gateways == ["n2", "n4"]
    assert [k.index for k in topo.links] == list(range(len(topo.links)))
    assert topo.mesh_links() == base.mesh_links()


def test_unknown_gateway_is_an_error():
    with pytest.raises(TopologyError, match="n9"):
        chain(3).with_gateways(["n9"])


def test_yaml_topology_with_impairments(tmp_path):
    path = tmp_path / "street.yaml"
    path.write_text(
        "nodes: [alice, bob]\n"
        "links:\n"
        "  - [alice, bob]\n"
        "  - {a: bob, b: carol, loss: 10, rate: 5mbit, delay: 20}\n"
        "gateways: [carol]\n"
    )
    topo = parse(str(path))
    assert topo.names == ["alice", "bob", "carol"]
    assert topo.node("carol").gateway
    link = topo.link_between("carol", "bob")
    assert link.impairment.loss == 10
    assert link.impairment.rate_bps == 5_000_000
    assert link.impairment.delay_ms == 20


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("links: [[a, a]]", "two different"),
        ("links: [[a, b], [b, a]]", "twice"),
        ("links: [[A, b]]", "lowercase"),
        ("links: [[internet, b]]", "internet"),
        ("links: []", "non-empty"),
        ("links: [[a, b]]\nextra: 1", "unknown keys"),
        ("links: [{a: a, b: b, loss: 150}]", "loss"),
        ("links: [[a, b]]\ngateways: [zz]", "zz"),
        ("- just a list", "mapping"),
        ("links: [[a, b]", "YAML"),
    ],
)
def test_bad_yaml_says_what_is_wrong(text, needle):
    with pytest.raises(TopologyError, match=needle):
        from_yaml_text(text)


def test_missing_yaml_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        parse(str(tmp_path / "nope.yaml"))


SEGMENT_YAML = """
links: [[n0, n1]]
segments:
  - {name: s1, nodes: [n1, n2, n3], loss: {n3-n1: 100, n1-n2: 20}}
gateways: [n0]
"""


def test_yaml_segment_members_ranges_and_addresses():
    topo = from_yaml_text(SEGMENT_YAML)
    assert topo.names == ["n0", "n1", "n2", "n3"]
    seg = topo.segment("s1")
    assert seg.loss_of("n1", "n3") == 100  # keys are normalised, either order
    assert seg.loss_of("n2", "n1") == 20
    assert not seg.in_range("n1", "n3")
    assert seg.peers("n1") == ["n2"]
    assert topo.neighbours("n1") == ["n0", "n2"]
    assert topo.neighbours("n3") == ["n2"]
    assert topo.mesh_ifaces("n1") == ["to-n0", "sg-s1"]
    assert topo.shared_segment("n3", "n1") is seg
    assert topo.is_connected()
    assert topo.gateways == ["n0"]
    assert topo.segments == (seg,), "with_gateways keeps the segments"
    addrs = [seg.addr(topo.node(m)) for m in seg.nodes]
    assert addrs == ["10.77.64.2", "10.77.64.3", "10.77.64.4"]
    link_addrs = {x for k in topo.links for x in (k.v4_a, k.v4_b)}
    assert not link_addrs & set(addrs)


def test_shared_spec_puts_every_node_on_one_segment():
    topo = parse("shared:4")
    assert topo.links == ()
    assert topo.segment("s1").nodes == ("n1", "n2", "n3", "n4")
    assert topo.neighbours("n1") == ["n2", "n3", "n4"]
    assert len(topo.segment("s1").iface) <= 15


def test_a_segment_with_everyone_out_of_range_is_not_connected():
    topo = from_yaml_text("segments: [{nodes: [a, b], loss: {a-b: 100}}]")
    assert topo.segment("s1").nodes == ("a", "b")
    assert not topo.is_connected()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("segments: [{name: s1, nodes: [a]}]", "at least two"),
        ("segments: [{name: s1, nodes: [a, a]}]", "twice"),
        ("segments: [{name: S-1, nodes: [a, b]}]", "segment name"),
        ("segments: [{name: s1, nodes: [a, b]}, {name: s1, nodes: [b, c]}]", "listed twice"),
        ("segments: [{name: s1, nodes: [a, b], loss: {a-c: 10}}]", "two different members"),
        ("segments: [{name: s1, nodes: [a, b], loss: {a-b: 101}}]", r"\[0, 100\]"),
        ("segments: [{name: s1, nodes: [a, b], range: 3}]", "unknown keys"),
        ("segments: {s1: [a, b]}", "list"),
    ],
)
def test_bad_segments_say_what_is_wrong(text, needle):
    with pytest.raises(TopologyError, match=needle):
        from_yaml_text(text)
