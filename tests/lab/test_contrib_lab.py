"""`contrib` on a real chain: relayed bytes measured by the agents and checked by neighbours.

Real babeld, mosquitto and meshd agents in namespaces; real iperf3 traffic from n1 to n5.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cli.lab.lab import Lab
from cli.lab.topology import chain
from tests.lab.cliview import agent_lab, cli_json, wait_for

pytestmark = pytest.mark.lab

RELAYS = ("n2", "n3", "n4")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with agent_lab("ct", chain(5)) as the_lab:
        yield the_lab


def relayed(lab: Lab) -> dict[str, dict] | None:
    code, data = cli_json(lab, "n1", "contrib")
    if code != 0:
        return None
    by = {n["name"]: n for n in data["nodes"]}
    return by if all(by.get(r, {}).get("uptime_s", {}).get("value") for r in RELAYS) else None


def test_relayed_bytes_match_what_was_sent_and_are_verified(lab: Lab):
    before = wait_for("every relay publishes counters", lambda: relayed(lab), 60)
    start = {r: before[r]["relayed_bytes"]["value"] for r in RELAYS}
    result = lab.traffic("n1", "n5", seconds=4)
    sent = result.sent_bytes
    assert sent > 1_000_000

    def caught_up():
        now = relayed(lab)
        if now is None:
            return None
        grown = {r: now[r]["relayed_bytes"]["value"] - start[r] for r in RELAYS}
        return (now, grown) if all(g >= 0.9 * sent for g in grown.values()) else None

    now, grown = wait_for("relayed counters catch up", caught_up, 30)
    print(f"\nsent {sent:,} B; relayed by n2..n4: {grown}")
    for r in RELAYS:
        assert abs(grown[r] - sent) <= 0.10 * sent, (r, grown[r], sent)
        assert now[r]["relayed_bytes"]["check"] == "verified", now[r]["relayed_bytes"]
    # the ends relay nothing for others
    assert now["n1"]["relayed_bytes"]["value"] < 0.01 * sent
    assert now["n5"]["relayed_bytes"]["value"] < 0.01 * sent
