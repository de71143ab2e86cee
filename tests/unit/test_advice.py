"""The one table of "why is this link bad": rules and thresholds shared by diagnose and the page."""

from __future__ import annotations

import pytest

from cli.analysis.diagnosis import ADMIN_WORDS
from meshd import advice
from meshd.advice import Reason
from meshd.records import LinkEntry
from meshd.topology import Direction, LinkState
from node_agent.webapi import MEMBER_WORDS


def hop(
    *,
    out_loss: float | None = None,
    back_loss: float | None = None,
    signal: int | None = None,
    rtt: float | None = None,
    medium: str = "wifi",
    state: LinkState = LinkState.GOOD,
) -> advice.Hop:
    out = LinkEntry("b", "wlan0", medium, loss=out_loss, signal_dbm=signal, rtt_ms=rtt)
    back = LinkEntry("a", "wlan0", medium, loss=back_loss)
    return advice.Hop(
        "a", "b", Direction("a", "b", out, back), Direction("b", "a", back, out), state
    )


def reasons(h: advice.Hop) -> list[Reason]:
    return [c.reason for c in advice.causes(h)]


@pytest.mark.parametrize("words", [ADMIN_WORDS, MEMBER_WORDS], ids=["admin", "member"])
def test_every_reason_has_a_wording_on_each_side(words):
    assert set(words) == set(Reason)


def test_a_healthy_hop_has_no_cause():
    assert reasons(hop(out_loss=0.02, back_loss=0.03, signal=-60, rtt=5)) == []


def test_loss_one_way_names_the_sending_end_and_both_figures():
    [cause] = advice.causes(hop(out_loss=0.05, back_loss=0.25))
    assert (cause.reason, cause.worse, cause.better) == (Reason.ONE_WAY_LOSS, "b", "a")
    assert (cause.value, cause.other) == (0.25, 0.05)


def test_thresholds_are_inclusive_and_congestion_needs_little_loss():
    assert reasons(hop(out_loss=advice.LOSSY, back_loss=advice.LOSSY)) == [Reason.LOSS_BOTH_WAYS]
    assert reasons(hop(signal=advice.LOW_SIGNAL_DBM)) == [Reason.LOW_SIGNAL]
    assert reasons(hop(signal=advice.LOW_SIGNAL_DBM + 1)) == []
    assert reasons(hop(rtt=advice.SLOW_RTT_MS)) == [Reason.CONGESTED]
    lossy_and_slow = hop(out_loss=0.2, back_loss=0.2, rtt=advice.SLOW_RTT_MS)
    assert reasons(lossy_and_slow) == [Reason.LOSS_BOTH_WAYS]


def test_states_and_tunnels_are_reasons_in_table_order():
    assert reasons(hop(medium="tap", state=LinkState.FLAPPING)) == [
        Reason.FLAPPING,
        Reason.TUNNEL,
    ]
    assert reasons(hop(state=LinkState.DOWN)) == [Reason.DOWN]


def test_each_side_words_the_same_causes():
    h = hop(out_loss=0.3, back_loss=0.3, medium="ethernet", state=LinkState.ONE_SIDED)
    found = advice.causes(h)
    admin = advice.worded(found, ADMIN_WORDS, str.upper)
    member = advice.worded(found, MEMBER_WORDS, str.upper)
    assert len(admin) == len(member) == 2
    assert admin[0].startswith("30% loss both ways")
    assert "cable" in member[0]
    assert "one end" in admin[1]
    assert "one end" in member[1]
