import pytest

from meshd.accounting import (
    WIDTH_32,
    Ledger,
    Meter,
    SeqExhausted,
    SeqReservation,
    counter_delta,
)


def test_plain_increase():
    assert counter_delta(100, 250) == 150
    assert counter_delta(7, 7) == 0


def test_32bit_wrap():
    assert counter_delta(2**32 - 100, 50, WIDTH_32) == 150


def test_64bit_wrap():
    assert counter_delta(2**64 - 1, 9) == 10


def test_decrease_far_from_the_top_is_a_reset():
    # from 1 GB back to 5 kB: the counter restarted, the 5 kB are new
    assert counter_delta(10**9, 5000, WIDTH_32) == 5000
    assert counter_delta(10**9, 5000) == 5000


def test_negative_raw_is_refused():
    with pytest.raises(ValueError):
        counter_delta(-1, 5)


def test_meter_accumulates_over_wraps_and_resets():
    m = Meter(width=WIDTH_32)
    m.update(2**32 - 1000, "boot1")  # first sight only sets the baseline
    assert m.total == 0
    m.update(500, "boot1")  # wrapped
    assert m.total == 1500
    m.update(300, "boot2")  # reboot: raw restarted from zero
    assert m.total == 1800


def test_resume_after_kill_counts_bytes_since_save_once():
    live = Ledger()
    live.update("rx", 0, "boot-a/ifindex-3")
    live.update("rx", 1000, "boot-a/ifindex-3")
    saved = live.to_json()  # checkpoint
    live.update("rx", 1800, "boot-a/ifindex-3")  # published, then kill -9 before saving
    published_total = live.total("rx")
    restarted = Ledger.from_json(saved)
    restarted.update("rx", 2100, "boot-a/ifindex-3")
    assert restarted.total("rx") == 2100  # every byte once
    assert restarted.total("rx") >= published_total  # never backwards


def test_resume_after_reboot_takes_raw_from_zero():
    live = Ledger()
    live.update("rx", 0, "boot-a")
    live.update("rx", 5000, "boot-a")
    restarted = Ledger.from_json(live.to_json())
    restarted.update("rx", 40, "boot-b")
    assert restarted.total("rx") == 5040


def test_ledger_json_is_checked():
    with pytest.raises(ValueError):
        Ledger.from_json({"rx": {"total": -1, "baseline": 0, "epoch": ""}})
    with pytest.raises(ValueError):
        Ledger.from_json({"rx": "nope"})


def test_seq_never_reuses_numbers_across_restarts():
    r = SeqReservation(block=3)
    assert r.needs_reservation()
    with pytest.raises(SeqExhausted):
        r.take()
    r.commit(r.proposed())  # persisted "reserved up to 3"
    used = [r.take(), r.take()]
    assert used == [1, 2]
    # kill -9 here: the saved reservation is 3
    after = SeqReservation.resume(3, block=3)
    assert after.needs_reservation()
    after.commit(after.proposed())
    assert after.take() == 4


def test_reservation_must_cover_next():
    r = SeqReservation.resume(10)
    with pytest.raises(ValueError):
        r.commit(10)
