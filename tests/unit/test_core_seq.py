"""The seq ceiling: a stolen key cannot pin a node's seq out of reach; honest agents never
trip it."""

from __future__ import annotations

import pytest

from meshd.accounting import SeqReservation
from meshd.errors import RecordRejected, RejectReason
from meshd.records import Kind
from meshd.store import MAX_FUTURE_S, SEQ_EPOCH, seq_ceiling
from tests.corekit import NOW, CommunityKit, NodeKit


def test_the_largest_seq_is_refused(community: CommunityKit, alpha: NodeKit) -> None:
    store = community.store()
    with pytest.raises(RecordRejected) as info:
        store.offer(alpha.sign(alpha.node_body(), seq=2**63 - 1).raw, NOW)
    assert info.value.reason is RejectReason.SEQ_AHEAD
    assert store.rejections[RejectReason.SEQ_AHEAD] == 1
    assert len(store) == 0


def test_the_ceiling_itself_is_accepted_one_more_is_not(
    community: CommunityKit, alpha: NodeKit
) -> None:
    store = community.store()
    top = seq_ceiling(NOW)
    with pytest.raises(RecordRejected):
        store.offer(alpha.sign(alpha.node_body(), seq=top + 1, issued_at=NOW).raw, NOW)
    assert store.offer(alpha.sign(alpha.node_body(), seq=top, issued_at=NOW).raw, NOW).seq == top


def test_the_real_node_overtakes_a_forger_within_max_future(
    community: CommunityKit, alpha: NodeKit
) -> None:
    """The forger (same key) goes as high and as far ahead as any receiver allows."""
    store = community.store()
    store.offer(alpha.sign(alpha.node_body(), seq=5).raw, NOW)
    ahead = NOW + MAX_FUTURE_S
    forged = alpha.sign(alpha.node_body(), seq=seq_ceiling(ahead), issued_at=ahead, ttl_s=7 * 86400)
    store.offer(forged.raw, NOW)
    # the real node sees its own slot overtaken and reserves past it once its clock allows
    want = store.seq_to_overtake(alpha.node_id)
    assert want == seq_ceiling(ahead) + 1
    later = ahead + 1
    assert want <= seq_ceiling(later)
    real = alpha.sign(alpha.node_body(), seq=want, issued_at=later)
    assert store.offer(real.raw, later) == real
    held = store.get(alpha.node_id, Kind.NODE)
    assert held is not None
    assert held.raw == real.raw


def test_a_crash_looping_honest_agent_stays_under_the_ceiling(
    community: CommunityKit, alpha: NodeKit
) -> None:
    """Worst honest case: born at the epoch, killed every second, one record per run, with
    the agent's real reservation logic (resume skips the whole reserved block)."""
    store = community.store()
    reserved = 0
    for second in range(1, 2001):
        seq = SeqReservation.resume(reserved, block=10_000)
        seq.commit(seq.proposed())
        reserved = seq.reserved
        issued_at = SEQ_EPOCH + second
        env = alpha.sign(alpha.node_body(), seq=seq.take(), issued_at=issued_at)
        assert env.seq <= seq_ceiling(issued_at)
        store.offer(env.raw, issued_at)  # refused here would raise
    assert store.rejections == {}


def test_records_from_before_the_epoch_carry_no_seq(community: CommunityKit) -> None:
    assert seq_ceiling(SEQ_EPOCH - 10) == 0
    assert seq_ceiling(SEQ_EPOCH + 2) == 2 * seq_ceiling(SEQ_EPOCH + 1)
