"""Properties of the record codec and the store's merge (Hypothesis)."""

from __future__ import annotations

import contextlib
import json
from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from meshd.codec import Envelope, decode, node_hostname, peek_header
from meshd.errors import RecordRejected
from meshd.records import LinkEntry, LinksBody, NodeBody, TrafficBody, parse_body
from meshd.store import RecordStore
from tests.corekit import NOW, CommunityKit, NodeKit, links_body, traffic_body


@cache
def world() -> tuple[CommunityKit, tuple[NodeKit, ...]]:
    community = CommunityKit()
    return community, tuple(community.enroll(f"n{i}") for i in range(3))


hostnames = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
texts = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_categories=("Cs",)), max_size=40
)
ratios = st.none() | st.floats(0, 1, allow_nan=False)


@st.composite
def bodies(draw: st.DrawFn) -> NodeBody | LinksBody | TrafficBody:
    _, nodes = world()
    which = draw(st.sampled_from(["node", "links", "traffic"]))
    if which == "node":
        return NodeBody(
            hostname=draw(hostnames),
            model=draw(texts),
            software=draw(texts),
            addresses=tuple(draw(st.lists(st.ip_addresses().map(str), max_size=4))),
            gateway_kbit=draw(st.none() | st.integers(0, 10**9)),
            contact=draw(st.none() | texts),
        )
    if which == "links":
        entries = draw(
            st.lists(
                st.builds(
                    LinkEntry,
                    neighbour=st.sampled_from([n.node_id for n in nodes]),
                    iface=st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True),
                    rxcost=st.none() | st.integers(0, 65535),
                    delivery_rx=ratios,
                    loss=ratios,
                    etx=st.none() | st.floats(1, 1000, allow_nan=False),
                ),
                max_size=5,
            )
        )
        return LinksBody(tuple(entries))
    return traffic_body(nodes[1].node_id, forwarded=draw(st.integers(0, 2**63 - 1)))


@given(bodies(), st.integers(0, 2**40))
def test_decode_encode_round_trip(body: NodeBody | LinksBody | TrafficBody, seq: int) -> None:
    _, nodes = world()
    node = nodes[0]
    if isinstance(body, NodeBody):
        node = NodeKit(body.hostname, node.key, node.cert)
    env = node.sign(body, seq=seq)
    again = decode(env.raw)
    assert again == env
    assert again.body == body
    head = ("kind", "node_id", "community", "seq", "issued_at", "ttl_s", "key", "cert", "sig")
    assert [getattr(again, f) for f in head] == [getattr(env, f) for f in head]
    # held, the body is parsed again from the verified bytes: the very same values and types
    again.release_body()
    assert repr(again.body) == repr(parse_body(env.kind, json.loads(env.raw)["body"]))
    if isinstance(body, NodeBody):  # the store's hostname check reads it from the bytes
        assert node_hostname(again) == body.hostname


@given(st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    community, nodes = world()
    env = nodes[0].sign(links_body(nodes[1].node_id), seq=7)
    raw = bytearray(env.raw)
    index = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda b: b != raw[index]))
    raw[index] = value
    store = community.store()
    try:
        store.offer(bytes(raw), NOW)
    except RecordRejected:
        pass
    else:
        raise AssertionError(f"byte {index} changed to {value} and the record was accepted")
    assert len(store) == 0
    with contextlib.suppress(RecordRejected):
        assert_peek_agrees(decode(bytes(raw)))


def assert_peek_agrees(env: Envelope) -> None:
    """Whenever bytes decode, the cheap header read from them is the envelope's own."""
    header = peek_header(env.raw)
    if header is not None:
        got = (header.kind, header.node_id, header.community, header.seq, header.issued_at)
        assert got == (env.kind, env.node_id, env.community, env.seq, env.issued_at)
        assert header.ttl_s == env.ttl_s


@given(bodies(), st.integers(0, 2**40), st.integers(0, 2**33), st.integers(1, 7 * 86400))
def test_peek_reads_every_valid_record(
    body: NodeBody | LinksBody | TrafficBody, seq: int, issued_at: int, ttl_s: int
) -> None:
    _, nodes = world()
    node = nodes[0]
    if isinstance(body, NodeBody):
        node = NodeKit(body.hostname, node.key, node.cert)
    env = node.sign(body, seq=seq, issued_at=issued_at, ttl_s=ttl_s)
    assert peek_header(env.raw) is not None
    assert_peek_agrees(env)


def _records() -> list[bytes]:
    _community, nodes = world()
    out = []
    for node in nodes:
        for seq in (1, 2, 3):
            out.append(node.sign(links_body(nodes[0].node_id), seq=seq).raw)
            out.append(node.sign(traffic_body(nodes[0].node_id, forwarded=seq), seq=seq).raw)
    # two different records with the same seq: the tie must be broken the same way everywhere
    out.append(nodes[0].sign(traffic_body(nodes[1].node_id, forwarded=99), seq=3).raw)
    return out


RECORDS = _records()


def fill(order: list[int]) -> RecordStore:
    community, _ = world()
    store = community.store()
    for i in order:
        with contextlib.suppress(RecordRejected):
            store.offer(RECORDS[i], NOW)
    return store


indices = st.lists(st.integers(0, len(RECORDS) - 1), max_size=40)


@given(indices, st.integers(0, len(RECORDS) - 1), st.integers(-700, 700))
def test_triage_refuses_only_what_the_full_check_refuses(
    order: list[int], pick: int, skew: int
) -> None:
    store = fill(order)
    data = RECORDS[pick]
    header = peek_header(data)
    assert header is not None
    early = store.triage(header, NOW + skew)
    env = decode(data)
    try:
        store.check(env, NOW + skew)
        accepted = store.merge(env)
    except RecordRejected:
        accepted = False
    assert early is None or not accepted, early


@given(indices, st.randoms(use_true_random=False))
def test_merge_is_order_free_and_idempotent(order: list[int], rnd: object) -> None:
    shuffled = list(order) * 2  # replays and duplicates
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fill(order).state() == fill(shuffled).state()


@given(indices, indices, indices)
def test_merge_of_stores_is_commutative_and_associative(
    a: list[int], b: list[int], c: list[int]
) -> None:
    sa, sb, sc = fill(a), fill(b), fill(c)

    def joined(*stores: RecordStore) -> dict[object, bytes]:
        target = world()[0].store()
        for s in stores:
            target.merge_all(list(s))
        return target.state()

    assert joined(sa, sb) == joined(sb, sa)
    assert joined(joined_store(sa, sb), sc) == joined(sa, joined_store(sb, sc))
    assert joined(sa, sa) == sa.state()


def joined_store(x: RecordStore, y: RecordStore) -> RecordStore:
    target = world()[0].store()
    target.merge_all(list(x))
    target.merge_all(list(y))
    return target


def test_record_json_is_what_was_signed() -> None:
    _, nodes = world()
    env = nodes[0].sign(links_body(nodes[1].node_id), seq=1)
    assert json.loads(env.raw)["seq"] == 1
