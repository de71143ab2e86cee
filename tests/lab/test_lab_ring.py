"""A ring of four with a gateway: cut a link, route around it, restore it; crash and restart."""

from __future__ import annotations

import time

import pytest

from cli.lab import procs
from cli.lab.lab import Lab
from cli.lab.topology import ring
from tests.lab.labkit import lab_name, running_lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    with running_lab(lab_name("r"), ring(4).with_gateways(["n3"])) as built:
        yield built


def _route_iface(lab: Lab, node: str, prefix: str) -> str | None:
    d = lab.dumps()[node]
    route = d.installed().get(prefix) if d else None
    return route.iface if route else None


def _wait(what: str, check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_traffic_goes_around_a_cut_link_and_the_link_comes_back(lab: Lab):
    # right after convergence babeld may still prefer a longer path it learnt first
    _wait("n1 to route to n2 directly", lambda: _route_iface(lab, "n1", "10.77.0.2/32") == "to-n2")
    lab.cut("n1", "n2")
    try:
        # babeld notices the dead link and reroutes n1 -> n2 the long way, via n4 and n3
        _wait(
            "n1 to route to n2 via n4", lambda: _route_iface(lab, "n1", "10.77.0.2/32") == "to-n4"
        )
        _wait("n1 to reach n2 around the ring", lambda: lab.ping("n1", lab.addr("n2"), 1).received)
        ping = lab.ping("n1", lab.addr("n2"), count=5, interval=0.05)
        assert ping.received == 5, ping
        r = lab.traffic("n1", "n2", seconds=1)
        print(f"\nwhile n1-n2 is cut, n1 -> n2 carried {r.sent_bytes} bytes around the ring")
        assert r.received_bytes > 1_000_000
        direct = lab.ping("n1", lab.link("n1", "n2").v4_b, count=2, interval=0.05)
        assert direct.received == 0, "the cut link must not carry anything"
    finally:
        assert lab.restore("n1", "n2")
    direct = lab.ping("n1", lab.link("n1", "n2").v4_b, count=3, interval=0.05)
    assert direct.received == 3
    assert lab.wait_converged(20) == []


def test_internet_is_reachable_through_the_gateway(lab: Lab):
    r = lab.traffic("n1", "internet", seconds=1)
    assert r.received_bytes > 1_000_000
    assert lab.ping("n2", "10.77.254.1", count=2, interval=0.05).received == 2


def test_killed_daemons_are_seen_and_start_brings_them_back(lab: Lab):
    before = lab.node_procs("n4")
    killed = lab.kill("n4", "all")
    assert sorted(killed) == ["n4/babeld", "n4/mosquitto"]
    assert not any(procs.alive(r) for r in before.values())
    status = {n["node"]: n for n in lab.status()["nodes"]}
    assert status["n4"]["processes"] == {"babeld": False, "mosquitto": False}
    assert sorted(lab.start("n4")) == ["babeld", "mosquitto"]
    assert lab.wait_converged(30) == []
    assert all(procs.alive(r) for r in lab.node_procs("n4").values())
