"""Table tests of push replication (docs/protocol.md §8.3-8.4) in the pure core, no broker."""

from __future__ import annotations

import json

import pytest

from meshd.records import Kind
from meshd.sync import (
    GRAFT_AFTER_S,
    HAVE_INTERVAL_S,
    MAX_HEADERS,
    TREE_FROM_NODES,
    Have,
    encode_headers,
)
from meshd.topics import control_topic, parse_topic, push_topic, record_topic
from node_agent.relay_core import (
    LOCAL,
    Control,
    Drop,
    Publish,
    Push,
    RelayCore,
    Source,
    Stored,
)
from node_agent.relay_push import GRAFT, PRUNE, PushCore
from tests.corekit import NOW, CommunityKit

KIT = CommunityKit()
A = KIT.enroll("a")  # the node the core runs on
B = KIT.enroll("b")  # neighbours
C = KIT.enroll("c")
D = KIT.enroll("d")  # a node further away


def core(*peers: str) -> PushCore:
    """A core whose links form a tree at any size (the default waits for TREE_FROM_NODES)."""
    c = PushCore(KIT.store(), A.node_id, tree_from_nodes=0)
    for p in peers:
        c.peer_up(p, NOW)
    return c


def link(sender: str) -> Source:
    """Our connection to `sender`'s broker: pushes for us are read there."""
    return Source(f"fe80::{sender[:4]}%mesh0", sender)


def push(c: PushCore, sender: str, raw: bytes, now: float = NOW) -> list[object]:
    return list(c.on_message(link(sender), push_topic(KIT.name, A.node_id), raw, now))


def ctl(c: PushCore, sender: str, message: bytes, now: float = NOW) -> list[object]:
    return list(c.on_message(link(sender), control_topic(KIT.name, A.node_id), message, now))


def controls(actions: list[object]) -> list[tuple[str, dict[str, object]]]:
    return [(a.neighbour, json.loads(a.message)) for a in actions if isinstance(a, Control)]


def pushes(actions: list[object]) -> list[str]:
    return [a.neighbour for a in actions if isinstance(a, Push)]


def test_topics_parse_strictly():
    c = KIT.name
    assert parse_topic(push_topic(c, B.node_id)) == (c, "_push", B.node_id)
    assert parse_topic(control_topic(c, B.node_id)) == (c, "_ctl", B.node_id)
    for bad in (f"mesh/v1/{c}/_push/NOT-AN-ID", f"mesh/v1/{c}/_push/{B.node_id}/x", "_push"):
        assert parse_topic(bad) is None


def test_a_new_push_is_stored_published_and_pushed_on_to_other_eager_links():
    c = core(B.node_id, C.node_id)
    env = D.sign(D.node_body(), seq=3)
    out = push(c, B.node_id, env.raw)
    assert out[:2] == [Stored(env), Publish(record_topic(KIT.name, D.node_id, Kind.NODE), env.raw)]
    assert pushes(out) == [C.node_id]  # never back to the sender
    assert c.store.get(D.node_id, Kind.NODE) == env


@pytest.mark.parametrize("seq", [3, 2], ids=["duplicate", "older"])
def test_a_redundant_push_prunes_its_link_but_never_the_last_eager_one(seq: int):
    c = core(B.node_id, C.node_id)
    push(c, B.node_id, D.sign(D.node_body(), seq=3).raw)
    out = push(c, C.node_id, D.sign(D.node_body(), seq=seq).raw)
    assert out == [Control(C.node_id, PRUNE)]
    assert c.modes.lazy == {C.node_id}
    again = push(c, B.node_id, D.sign(D.node_body(), seq=seq).raw)
    assert again == []  # B is the last eager link: kept
    assert c.modes.eager == {B.node_id}


def test_a_senders_own_record_seen_on_its_topics_first_does_not_prune():
    c = core(B.node_id, C.node_id)
    env = B.sign(B.node_body(), seq=1)
    from_b = Source("fe80::b%mesh0", B.node_id, B.key.public.fingerprint)
    c.on_message(from_b, record_topic(KIT.name, B.node_id, Kind.NODE), env.raw, NOW)
    assert push(c, B.node_id, env.raw) == []
    assert c.modes.eager == {B.node_id, C.node_id}


def test_lazy_links_get_header_batches_from_tick():
    c = core(B.node_id, C.node_id)
    c.modes.prune(C.node_id)
    c.tick(NOW)  # the first batch time passes with nothing pending
    env = D.sign(D.node_body(), seq=4)
    out = push(c, B.node_id, env.raw, NOW + 0.1)
    assert pushes(out) == []  # C is lazy: header only
    assert c.tick(NOW + 0.2) == []  # not yet a batch interval
    batch = controls(c.tick(NOW + HAVE_INTERVAL_S))
    assert batch == [(C.node_id, {"have": [[D.node_id, "node", 4]]})]
    assert controls(c.tick(NOW + 2 * HAVE_INTERVAL_S)) == []  # sent once


def test_a_link_grafted_before_the_batch_still_hears_of_a_record_it_was_lazy_for():
    """Found by bench/relay_sim.py on the real core: a record arrives while C is lazy (no full
    copy), C grafts before the next batch, and the batch then went to lazy links only."""
    c = core(B.node_id, C.node_id)
    c.modes.prune(C.node_id)
    c.tick(NOW)
    env = D.sign(D.node_body(), seq=4)
    assert pushes(push(c, B.node_id, env.raw, NOW + 0.1)) == []
    ctl(c, C.node_id, GRAFT, NOW + 0.2)
    assert c.modes.eager == {B.node_id, C.node_id}
    batch = controls(c.tick(NOW + HAVE_INTERVAL_S))
    assert batch == [(C.node_id, {"have": [[D.node_id, "node", 4]]})]


def test_a_have_not_followed_by_the_record_is_wanted_and_its_link_grafted():
    c = core(B.node_id, C.node_id)
    c.modes.prune(C.node_id)
    ctl(c, C.node_id, encode_headers("have", [Have(D.node_id, Kind.NODE, 9)]))
    assert controls(c.tick(NOW + GRAFT_AFTER_S / 2)) == []
    out = controls(c.tick(NOW + GRAFT_AFTER_S))
    assert (C.node_id, {"want": [[D.node_id, "node", 9]]}) in out
    assert (C.node_id, {"graft": []}) in out
    assert C.node_id in c.modes.eager


def test_a_have_for_a_record_that_arrives_in_time_pulls_nothing():
    c = core(B.node_id, C.node_id)
    ctl(c, C.node_id, encode_headers("have", [Have(D.node_id, Kind.NODE, 9)]))
    push(c, B.node_id, D.sign(D.node_body(), seq=9).raw)
    assert [m for _, m in controls(c.tick(NOW + 1)) if "want" in m] == []


def test_want_is_answered_with_the_records_held():
    c = core(B.node_id, C.node_id)
    env = D.sign(D.node_body(), seq=2)
    push(c, B.node_id, env.raw)
    wanted = [Have(D.node_id, Kind.NODE, 2), Have(C.node_id, Kind.LINKS, 1)]
    out = ctl(c, C.node_id, encode_headers("want", wanted))
    assert out == [Push(C.node_id, env.raw)]


def test_digest_pulls_what_is_newer_there_and_offers_ours_as_an_echo():
    c = core(B.node_id)
    c.own(A.sign(A.node_body(), seq=1))
    c.own(D.sign(D.node_body(), seq=5))  # (any record held)
    theirs = [Have(D.node_id, Kind.NODE, 7), Have(C.node_id, Kind.NODE, 1)]
    out = controls(ctl(c, B.node_id, encode_headers("digest", theirs)))
    assert out[0] == (B.node_id, {"want": sorted([[C.node_id, "node", 1], [D.node_id, "node", 7]])})
    ours = sorted([[A.node_id, "node", 1], [D.node_id, "node", 5]])
    assert out[1] == (B.node_id, {"echo": ours})
    # an echo is answered with wants only: no digest ping-pong
    again = controls(ctl(c, B.node_id, encode_headers("echo", theirs), NOW + 1))
    assert [m for _, m in again if "want" not in m] == []
    assert len(again) == 1


def test_connecting_sends_a_digest_and_losing_an_eager_link_grafts_the_lazy_ones():
    c = PushCore(KIT.store(), A.node_id)
    assert controls(c.peer_up(B.node_id, NOW)) == [(B.node_id, {"digest": []})]
    c.peer_up(C.node_id, NOW)
    c.peer_up(D.node_id, NOW)
    c.modes.prune(D.node_id)
    assert c.peer_down(B.node_id) == [Control(D.node_id, GRAFT)]
    assert c.modes.eager == {C.node_id, D.node_id}


def test_prune_of_our_last_eager_link_grafts_another():
    c = core(B.node_id, C.node_id)
    c.modes.prune(C.node_id)
    out = ctl(c, B.node_id, PRUNE)
    assert out == [Control(C.node_id, GRAFT)]
    assert c.modes.eager == {C.node_id}


def test_own_records_go_to_every_eager_link():
    c = core(B.node_id, C.node_id)
    out = c.own(A.sign(A.node_body(), seq=1))
    assert pushes(out) == sorted([B.node_id, C.node_id])


BAD_CONTROL = {
    "not json": b"{",
    "not an object": b"[1]",
    "two tags": b'{"have":[],"want":[]}',
    "unknown tag": b'{"hello":[]}',
    "not a list": b'{"have":{}}',
    "bad node id": b'{"have":[["X","node",1]]}',
    "bad kind": json.dumps({"have": [["a" * 16, "nope", 1]]}).encode(),
    "negative seq": json.dumps({"have": [["a" * 16, "node", -1]]}).encode(),
    "float seq": json.dumps({"have": [["a" * 16, "node", 1.0]]}).encode(),
    "bool seq": json.dumps({"have": [["a" * 16, "node", True]]}).encode(),
    "short entry": json.dumps({"have": [["a" * 16, "node"]]}).encode(),
    "deep": b'{"have":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "too many": json.dumps({"have": [["a" * 16, "node", 1]] * (MAX_HEADERS + 1)}).encode(),
}


@pytest.mark.parametrize("payload", BAD_CONTROL.values(), ids=BAD_CONTROL.keys())
def test_hostile_control_messages_are_counted_and_dropped(payload: bytes):
    c = core(B.node_id)
    out = ctl(c, B.node_id, payload)
    reasons = [a.reason for a in out if isinstance(a, Drop)]
    assert len(reasons) == 1
    assert reasons[0] in ("control_malformed", "too_large")
    assert c.by_source[link(B.node_id).link][reasons[0]] == 1
    assert c.modes.eager == {B.node_id}  # nothing changed


def test_a_push_that_does_not_verify_is_dropped_and_not_passed_on():
    c = core(B.node_id, C.node_id)
    raw = D.sign(D.node_body(), seq=1).raw.replace(b'"seq":1', b'"seq":2')
    out = push(c, B.node_id, raw)
    assert pushes(out) == []
    assert [a.reason for a in out if isinstance(a, Drop)] != []
    assert c.store.get(D.node_id, Kind.NODE) is None


def test_a_link_claiming_our_own_id_is_an_echo_and_dropped():
    c = core(B.node_id)
    out = push(c, A.node_id, D.sign(D.node_body(), seq=1).raw)
    assert [a.reason for a in out if isinstance(a, Drop)] == ["own_echo"]


def test_the_flooding_core_refuses_push_traffic():
    c = RelayCore(KIT.store(), A.node_id)
    out = c.on_message(LOCAL, push_topic(KIT.name, B.node_id), D.sign(D.node_body()).raw, NOW)
    assert [a.reason for a in out if isinstance(a, Drop)] == ["replication_unsupported"]


def test_pushes_are_read_only_over_links_and_only_when_addressed_to_us():
    """Nobody writes into a neighbour's broker: a push on our own broker is someone else's
    write, and one addressed to another node was not meant for us."""
    c = core(B.node_id)
    raw = D.sign(D.node_body(), seq=1).raw
    on_ours = c.on_message(LOCAL, push_topic(KIT.name, A.node_id), raw, NOW)
    assert [a.reason for a in on_ours if isinstance(a, Drop)] == ["push_on_own_broker"]
    elsewhere = c.on_message(link(B.node_id), push_topic(KIT.name, C.node_id), raw, NOW)
    assert [a.reason for a in elsewhere if isinstance(a, Drop)] == ["push_not_for_us"]
    assert c.store.get(D.node_id, Kind.NODE) is None


def test_control_from_a_neighbour_not_yet_verified_changes_nothing():
    c = core(B.node_id)
    out = ctl(c, C.node_id, PRUNE)  # C's link is up but the shell has not verified C yet
    assert [a.reason for a in out if isinstance(a, Drop)] == ["control_unverified"]
    out = ctl(c, C.node_id, encode_headers("want", [Have(A.node_id, Kind.NODE, 1)]))
    assert pushes(out) == []
    # a record pushed over it still counts: it verifies itself
    env = D.sign(D.node_body(), seq=2)
    assert Stored(env) in push(c, C.node_id, env.raw)


def test_a_small_mesh_keeps_every_link_eager():
    """Below TREE_FROM_NODES a duplicate prunes nothing: flooding a few nodes is cheap, and a
    tree would add hops to every record."""
    c = PushCore(KIT.store(), A.node_id)
    for p in (B.node_id, C.node_id):
        c.peer_up(p, NOW)
    push(c, B.node_id, D.sign(D.node_body(), seq=3).raw)
    assert push(c, C.node_id, D.sign(D.node_body(), seq=3).raw) == []
    assert c.modes.eager == {B.node_id, C.node_id}
    assert c.tree_from_nodes == TREE_FROM_NODES > len(c.store.records)
