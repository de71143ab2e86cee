"""A chain of five real nodes: convergence, and each kind of impairment measured on the wire."""

from __future__ import annotations

import statistics
import time

import pytest

from cli.lab.lab import Lab
from cli.lab.measure import PingResult, parse_ping
from cli.lab.topology import chain
from tests.lab.labkit import lab_name, running_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    with running_lab(lab_name("c"), chain(5)) as built:
        yield built


def _link_ping(lab: Lab, a: str, b: str, count: int, interval: float):
    """Start a ping from a to b's address on the a-b link (a connected route: always that link)."""
    link = lab.link(a, b)
    return lab.popen(a, lab.ping_argv(link.side(b)[2], count, interval))


def test_chain_of_five_converges_and_node1_reaches_node5(lab: Lab):
    converged = lab.timings["converged"]
    print(f"\nchain:5 converged {converged:.2f}s after `lab up` started")
    assert converged < 30
    route = lab.dumps()["n1"].installed()["10.77.0.5/32"]
    assert route.iface == "to-n2"
    assert route.metric >= 4 * 96  # four hops, whatever the link costs
    r = lab.ping("n1", lab.addr("n5"), count=3, interval=0.05)
    assert r.received == 3, r


def test_loss_20_on_one_link_and_not_on_the_others(lab: Lab):
    lab.impair("n2", "n3", loss=20)
    try:
        pings = {
            (a, b): _link_ping(lab, a, b, 500, 0.01)
            for a, b in (("n1", "n2"), ("n2", "n3"), ("n3", "n4"), ("n4", "n5"))
        }
        loss = {
            pair: parse_ping(p.communicate(timeout=60)[0]).loss_pct for pair, p in pings.items()
        }
        print(f"\nping loss with --loss 20 on n2-n3: {loss}")
        assert 15 <= loss[("n2", "n3")] <= 25
        for pair, pct in loss.items():
            if pair != ("n2", "n3"):
                assert pct < 2, (pair, pct)
    finally:
        lab.heal("n2", "n3")


def test_rate_10mbit_measured_by_iperf3(lab: Lab):
    lab.impair("n3", "n4", rate="10mbit")
    try:
        r = lab.traffic("n3", "n4", seconds=3, omit=1)
        print(f"\niperf3 n3->n4 with --rate 10mbit: {r.receiver_mbps:.2f} Mbit/s")
        assert 8.5 <= r.receiver_mbps <= 11.5
    finally:
        lab.heal("n3", "n4")
    r = lab.traffic("n3", "n4", seconds=1)
    assert r.receiver_mbps > 50, "healing must remove the rate limit"


def _rtt_ms(lab: Lab, a: str, b: str) -> float:
    r = _rtt(lab, a, b)
    assert r.rtt_avg_ms is not None
    return r.rtt_avg_ms


def _spread(r: PingResult) -> float:
    assert r.rtt_max_ms is not None
    assert r.rtt_min_ms is not None
    return r.rtt_max_ms - r.rtt_min_ms


def _rtt(lab: Lab, a: str, b: str) -> PingResult:
    """20 pings across the link, once a single ping answers (ARP/ND warm)."""
    deadline = time.monotonic() + 20
    while True:
        warm = _link_ping(lab, a, b, 1, 0.2).communicate(timeout=10)[0]
        if " 1 received" in warm:
            break
        assert time.monotonic() < deadline, f"no ping reply across {a}-{b}: {warm}"
    r = parse_ping(_link_ping(lab, a, b, 20, 0.05).communicate(timeout=30)[0])
    assert r.received >= 18, r
    assert r.rtt_min_ms is not None
    assert r.rtt_max_ms is not None
    return r


def test_delay_25ms_adds_50ms_of_rtt_and_babel_routes_over_it(lab: Lab):
    before = _rtt_ms(lab, "n4", "n5")
    lab.impair("n4", "n5", delay=25)
    try:
        assert lab.wait_neighbours("n4", "n5", timeout=20)
        steady = _rtt(lab, "n4", "n5")
        assert steady.rtt_avg_ms is not None
        after = steady.rtt_avg_ms
        rise = after - before
        print(f"\nRTT n4-n5: {before:.2f} ms -> {after:.2f} ms (+{rise:.1f} ms) with --delay 25")
        assert 40 <= rise <= 60
        # jitter: +-10 ms per direction spreads the RTTs (the relay reloads, no relink)
        assert lab.impair("n4", "n5", jitter=10).describe() == "delay 25+-10ms"
        jittery = _rtt(lab, "n4", "n5")
        spread = {"without": _spread(steady), "with": _spread(jittery)}
        print(f"RTT spread (max-min) without/with --jitter 10: {spread}, min {jittery.rtt_min_ms}")
        assert spread["with"] >= 12
        assert spread["with"] > spread["without"] + 5
        assert jittery.rtt_min_ms is not None
        assert jittery.rtt_min_ms >= 28  # 2 x (25 - 10)
        lab.impair("n4", "n5", jitter=0)
        # the node route from n1 to n5 must now cross the relay's TAP on n4
        deadline = time.monotonic() + 20
        while True:
            d = lab.dumps()["n4"]
            route = d.installed().get("10.77.0.5/32") if d else None
            if route is not None and route.iface == "td-n5":
                break
            assert time.monotonic() < deadline, f"n4's route to n5 is {route}"
            time.sleep(0.1)
        end_to_end = lab.ping("n1", lab.addr("n5"), count=10, interval=0.05)
        assert end_to_end.received >= 9
        assert end_to_end.rtt_min_ms is not None
        assert end_to_end.rtt_min_ms >= 45
    finally:
        lab.heal("n4", "n5")
    # heal returns only once the veth carries traffic again: no waiting needed here
    assert lab.link_usable("n4", "n5") == []
    assert lab.wait_neighbours("n4", "n5", timeout=20)
    healed = statistics.fmean(_rtt_ms(lab, "n4", "n5") for _ in range(2))
    assert healed < 5, f"RTT after heal is {healed} ms"
