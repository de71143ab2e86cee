import random

import pytest

from meshd.linkquality import (
    ECHO,
    PROBE,
    LinkEstimator,
    Packet,
    SeqWindow,
    etx,
    loss,
)


def test_etx_is_inverse_of_both_delivery_ratios():
    assert etx(1.0, 1.0) == 1.0
    assert etx(0.8, 0.8) == pytest.approx(1 / 0.64)
    assert etx(0.5, 1.0) == pytest.approx(2.0)
    assert etx(0.0, 1.0) is None
    assert etx(None, 0.9) is None


def test_loss_is_round_trip_loss():
    assert loss(0.8, 0.8) == pytest.approx(0.36)
    assert loss(1.0, 1.0) == 0.0
    assert loss(0.8, 1.0) == pytest.approx(0.2)
    assert loss(None, 1.0) is None


def test_window_counts_gaps_and_ignores_duplicates():
    w = SeqWindow(8)
    for seq in (1, 2, 4, 5):
        assert w.add(7, seq)
    assert not w.add(7, 4)  # duplicate
    assert w.count() == (4, 5)
    assert w.add(7, 3)  # late arrival inside the window still counts
    assert w.count() == (5, 5)


def test_window_slides_and_forgets_old_losses():
    w = SeqWindow(4)
    w.add(1, 1)
    for seq in range(3, 20):  # seq 2 lost, long ago
        w.add(1, seq)
    assert w.count() == (4, 4)
    assert not w.add(1, 2)  # too old now


def test_new_session_resets_instead_of_counting_loss():
    w = SeqWindow(8)
    for seq in range(100, 108):
        w.add(1, seq)
    w.add(2, 1)
    assert w.count() == (1, 1)


def test_expected_upto_makes_a_silent_sender_decay():
    w = SeqWindow(10)
    for seq in range(1, 11):
        w.add(1, seq)
    assert w.ratio() == 1.0
    assert w.ratio(15) == pytest.approx(0.5)
    assert w.ratio(40) == 0.0


def test_packet_round_trip_and_garbage():
    p = Packet(ECHO, 0xDEADBEEF, 42, 1234.5, 60, 64, "abcdefghijklmnop")
    assert Packet.decode(p.encode()) == p
    assert Packet.decode(b"junk") is None
    assert Packet.decode(p.encode()[:-1]) is None
    bad = bytearray(p.encode())
    bad[0:4] = b"XXXX"
    assert Packet.decode(bytes(bad)) is None
    # rx_count above span is impossible
    assert Packet.decode(Packet(PROBE, 1, 1, 0.0, 5, 4, "abcdefghijklmnop").encode()) is None


def _simulate(p_forward, p_reverse, n=400, window=64, seed=1):
    """Two estimators exchanging probes and echoes over lossy directions."""
    rng = random.Random(seed)
    a, b = LinkEstimator(1.0, window), LinkEstimator(1.0, window)
    for seq in range(1, n + 1):
        now = float(seq)
        # a probes b
        if rng.random() < p_forward:
            got, span = b.on_probe(11, seq, now)
            if rng.random() < p_reverse:
                a.on_echo(Packet(ECHO, 11, seq, now - 0.002, got, span), now)
        # b probes a
        if rng.random() < p_reverse:
            got, span = a.on_probe(22, seq, now)
            if rng.random() < p_forward:
                b.on_echo(Packet(ECHO, 22, seq, now - 0.002, got, span), now)
    return a.sample(float(n)), b.sample(float(n))


def test_clean_link_has_etx_one():
    a, b = _simulate(1.0, 1.0)
    assert a.etx == 1.0
    assert b.etx == 1.0
    assert a.loss == 0.0
    assert a.rtt_ms == pytest.approx(2.0)


def test_lossy_link_is_measured_in_each_direction():
    a, _ = _simulate(0.8, 0.9, n=3000, window=1000)
    assert a.delivery_tx == pytest.approx(0.8, abs=0.05)
    assert a.delivery_rx == pytest.approx(0.9, abs=0.05)
    assert a.etx == pytest.approx(1 / 0.72, rel=0.1)
    assert a.loss == pytest.approx(1 - 0.72, abs=0.04)


def test_cut_link_decays_to_unusable():
    est = LinkEstimator(1.0, 16)
    for seq in range(1, 30):
        got, span = est.on_probe(5, seq, float(seq))
        est.on_echo(Packet(ECHO, 9, seq, float(seq), got, span), float(seq))
    assert est.sample(29.0).etx == 1.0
    later = est.sample(29.0 + 40)
    assert later.delivery_rx == 0.0
    assert later.etx is None
