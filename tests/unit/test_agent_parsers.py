from pathlib import Path

import pytest

from node_agent.parsers import (
    BabelTable,
    babel_status,
    parse_batctl_neighbours,
    parse_batctl_originators,
    parse_station_dump,
)

DATA = Path(__file__).parent.parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_babel_dump_fills_neighbours_and_routes():
    table = BabelTable()
    statuses = []
    for line in read("babel_dump.txt").splitlines():
        table.apply(line)
        if babel_status(line):
            statuses.append(babel_status(line))
    assert statuses == ["ok", "ok"]
    assert len(table.neighbours) == 2
    n3 = table.neighbour_at("fe80::3c5e:88ff:fe12:6e71")
    assert n3 is not None
    assert (n3.iface, n3.reach, n3.rxcost, n3.txcost, n3.cost) == ("to-n3", 0xFBDF, 341, 298, 452)
    assert n3.rtt_ms == pytest.approx(1.927)
    assert len(table.routes) == 4
    assert table.routes["55e4f0c1c8b0"].metric == 708
    assert table.routes["55e4f0c1c8b0"].installed
    assert table.neighbour_at("fe80::1") is None


def test_babel_monitor_changes_then_flushes():
    table = BabelTable()
    for line in read("babel_dump.txt").splitlines():
        table.apply(line)
    changes = [table.apply(line) for line in read("babel_monitor.txt").splitlines()]
    assert changes == ["neighbour", "route", "neighbour", "route", "neighbour"]
    assert "55e4f0c1b7f0" not in table.neighbours
    assert "55e4f0c1c8b0" not in table.routes
    assert table.routes["55e4f0c1c5e0"].metric == 810


def test_station_dump():
    stations = parse_station_dump(read("iw_station_dump_mesh.txt"))
    assert [s.mac for s in stations] == ["02:11:c5:4a:10:3e", "02:11:c5:4a:22:f1"]
    good, weak = stations
    assert good.iface == "mesh0"
    assert (good.rx_bytes, good.tx_bytes, good.rx_packets, good.tx_packets) == (
        48213907,
        9820443,
        61247,
        29014,
    )
    assert good.signal_dbm == -61
    assert good.signal_avg_dbm == -60
    assert good.tx_bitrate_mbit == pytest.approx(144.4)
    assert good.expected_throughput_mbit == pytest.approx(61.035)
    assert good.plink == "ESTAB"
    assert weak.signal_dbm == -83
    assert weak.expected_throughput_mbit == pytest.approx(5.493)
    assert weak.inactive_ms == 1210


def test_station_dump_empty():
    assert parse_station_dump("") == []


def test_batctl_neighbours_iv_and_v():
    iv = parse_batctl_neighbours(read("batctl_n_iv.txt"))
    assert [(n.iface, n.mac, n.last_seen_ms) for n in iv] == [
        ("mesh0", "02:11:c5:4a:10:3e", 280),
        ("mesh0", "02:11:c5:4a:22:f1", 1930),
        ("eth0.7", "96:8b:0e:31:5c:02", 40),
    ]
    assert all(n.throughput_mbit is None for n in iv)
    v = parse_batctl_neighbours(read("batctl_n_v.txt"))
    assert [(n.iface, n.throughput_mbit) for n in v] == [
        ("mesh0", 61.0),
        ("mesh0", 5.4),
        ("eth0.7", 1000.0),
    ]


def test_batctl_originators_iv():
    origs = parse_batctl_originators(read("batctl_o_iv.txt"))
    assert len(origs) == 6
    best = [o for o in origs if o.best]
    assert len(best) == 4
    far = next(o for o in best if o.mac == "02:11:c5:4a:37:90")
    assert (far.next_hop, far.tq, far.iface, far.last_seen_ms) == (
        "02:11:c5:4a:10:3e",
        203,
        "mesh0",
        1080,
    )


def test_batctl_originators_v():
    origs = parse_batctl_originators(read("batctl_o_v.txt"))
    assert len(origs) == 5
    assert origs[1].best is False
    assert origs[1].throughput_mbit == pytest.approx(4.9)
    assert all(o.tq is None for o in origs)
