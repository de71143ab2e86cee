"""Counters in a real 5-node chain: a known amount of traffic from n1 to n5 must show up as
forwarded bytes on n2..n4 and as per-neighbour tx/rx on both ends of every link."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cli.lab.topology import chain
from tests.lab.labkit import wait_listening
from tests.lab.test_agent_mesh import AgentLab, running_agents, wait_for

pytestmark = pytest.mark.lab

DATAGRAM = 1400
COUNT = 10_000  # 14 MB of UDP payload
IP_OVERHEAD = 28  # IPv4 + UDP headers: what nftables counts in the forward hook
L2_OVERHEAD = 14  # Ethernet header: what the interface counters add on veth


@pytest.fixture(scope="module")
def chain5() -> Iterator[AgentLab]:
    with running_agents("at", chain(5)) as kit:
        yield kit


def test_known_traffic_shows_as_forwarded_and_per_neighbour_bytes(chain5: AgentLab):
    """Traffic starts as soon as the agents run, before they have discovered each other (as in
    `lab demo`): per-neighbour meters count from when the agent watches the interface."""
    lab = chain5.lab
    nodes = lab.node_names()
    # running, interfaces and nftables baselined (the first status follows both)
    wait_for(lambda: all(chain5.status(n).get("seq_next") for n in nodes), 20)
    started = {n: chain5.status(n) for n in nodes}
    known = sum(len(s.get("neighbours", [])) for s in started.values())
    print(f"\nneighbours known when the traffic starts: {known} of {2 * len(lab.topology.links)}")

    before: dict[str, dict[str, int]] = {n: {} for n in nodes}  # fresh agents count from zero
    t0 = time.time()
    server = lab.popen("n5", ["iperf3", "-s", "-1", "-p", "5201"])
    wait_listening(lab, "n5", 5201)
    client = lab.popen(
        "n1",
        [
            "iperf3", "-u", "-c", lab.addr("n5"), "-B", lab.addr("n1"), "-p", "5201",
            "-b", "40M", "-l", str(DATAGRAM), "-k", str(COUNT),
        ],
    )  # fmt: skip
    client.communicate(timeout=60)
    server.communicate(timeout=30)
    # wait for every agent to have published after the traffic ended
    done = time.time()
    wait_for(
        lambda: all(
            chain5.status(n).get("time", 0) > done + 1
            and all(nb["up"] for nb in chain5.status(n).get("neighbours", []))
            and len(chain5.status(n).get("neighbours", [])) == len(lab.topology.neighbours(n))
            for n in nodes
        ),
        20,
    )
    after = {n: dict(chain5.status(n).get("totals", {})) for n in nodes}
    print(f"\ntraffic took {done - t0:.1f} s")

    def delta(node: str, name: str) -> int:
        return after[node].get(name, 0) - before[node].get(name, 0)

    wire_ip = COUNT * (DATAGRAM + IP_OVERHEAD)
    for n in ("n2", "n3", "n4"):
        fwd = delta(n, "nft/forwarded/bytes")
        print(f"{n} forwarded {fwd} bytes (sent {wire_ip} IP bytes)")
        assert abs(fwd - wire_ip) <= 0.05 * wire_ip, (n, fwd, wire_ip)
    for n in ("n1", "n5"):
        assert delta(n, "nft/forwarded/bytes") < 0.05 * wire_ip

    wire_l2 = COUNT * (DATAGRAM + IP_OVERHEAD + L2_OVERHEAD)
    for i in range(1, 5):
        a, b = f"n{i}", f"n{i + 1}"
        ida, idb = chain5.ids[a], chain5.ids[b]
        tx = delta(a, f"nb/{idb}/to-{b}/tx_bytes")
        rx = delta(b, f"nb/{ida}/to-{a}/rx_bytes")
        print(f"{a}->{b}: tx {tx} rx {rx} (sent {wire_l2})")
        assert abs(tx - wire_l2) <= 0.05 * wire_l2, (a, b, tx)
        assert abs(rx - wire_l2) <= 0.05 * wire_l2, (a, b, rx)
        assert abs(tx - rx) <= 0.05 * wire_l2
