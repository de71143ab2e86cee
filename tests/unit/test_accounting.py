import pytest

from meshd.accounting import (
    WIDTH_32,
    Ledger,
    LinkMeters,
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


def _raw(rx: int, tx: int = 0) -> dict[str, int]:
    return {"rx_bytes": rx, "tx_bytes": tx}


def _total(ledger: Ledger, node: str, stat: str = "rx_bytes", iface: str = "eth1") -> int:
    return ledger.total(f"nb/{node}/{iface}/{stat}")


def test_bytes_before_discovery_go_to_the_neighbour_found_later():
    ledger = Ledger()
    links = LinkMeters(ledger)
    links.fold("eth1", _raw(10_000, 500), "e", None)  # agent start: nobody known yet
    links.fold("eth1", _raw(90_000, 7_500), "e", None)  # traffic before mDNS answers
    links.fold("eth1", _raw(100_000, 8_000), "e", "A")  # discovered
    assert _total(ledger, "A") == 90_000
    assert _total(ledger, "A", "tx_bytes") == 7_500
    links.fold("eth1", _raw(100_400, 8_000), "e", "A")
    assert _total(ledger, "A") == 90_400


def test_interface_appearing_later_counts_from_its_creation():
    ledger = Ledger()
    links = LinkMeters(ledger)
    links.gone("eth1")  # watched, but not there yet
    links.fold("eth1", _raw(3_000), "e", None)  # appeared: the kernel counted from zero
    links.fold("eth1", _raw(5_000), "e", "A")
    assert _total(ledger, "A") == 5_000


def test_new_node_on_the_link_gets_a_fresh_meter_where_the_old_one_stopped():
    ledger = Ledger()
    links = LinkMeters(ledger)
    links.fold("eth1", _raw(0), "e", "A")
    links.fold("eth1", _raw(1_000), "e", "A")
    links.fold("eth1", _raw(1_500), "e", None)  # both heard for a while: nobody's alone
    links.fold("eth1", _raw(4_000), "e", "B")  # A replaced by B
    assert _total(ledger, "A") == 1_000
    assert _total(ledger, "B") == 3_000
    links.fold("eth1", _raw(4_200), "e", "A")  # A back: B's bytes are not A's
    assert _total(ledger, "A") == 1_200
    assert _total(ledger, "B") == 3_000
    links.fold("eth1", _raw(4_500), "e", "A")
    assert _total(ledger, "A") == 1_500


def test_restored_meter_counts_bytes_while_the_agent_was_down():
    ledger = Ledger()
    links = LinkMeters(ledger)
    links.fold("eth1", _raw(0), "e", "A")
    links.fold("eth1", _raw(1_000), "e", "A")
    restarted = Ledger.from_json(ledger.to_json())
    again = LinkMeters(restarted)
    again.fold("eth1", _raw(1_700), "e", None)  # restart; A not rediscovered yet
    again.fold("eth1", _raw(2_000), "e", "A")
    assert _total(restarted, "A") == 2_000  # every byte once, none lost


def test_interface_recreated_between_reads_counts_from_zero():
    ledger = Ledger()
    links = LinkMeters(ledger)
    links.fold("eth1", _raw(50_000), "e#3", None)
    links.fold("eth1", _raw(700), "e#9", "A")  # same name, new interface index
    assert _total(ledger, "A") == 700
