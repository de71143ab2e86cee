"""The `/metrics` text: exact integers, base units, one label per dimension, linted by promtool."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from node_agent import metrics

STATUS = {
    "node_id": "abc123",
    "hostname": "bakery",
    "community": "riverside",
    "uptime_agent_s": 86_400,
    "neighbours": [
        {
            "node_id": "nb1",
            "iface": "wlan0",
            "up": True,
            "etx": 1.25,
            "loss": 0.1,
            "rtt_ms": 3.5,
            "delivery_rx": 0.9,
            "delivery_tx": 1.0,
            "signal_dbm": -61,
            "tx_bitrate_mbit": 866.7,
            "expected_throughput_mbit": None,
            "batman_tq": None,
        },
        {"node_id": 'we"ird\\nb', "iface": "eth1", "up": False, "etx": None, "loss": None},
    ],
    "records_held": 90,
    "nodes_known": 30,
    "rejections": {"bad_signature": 2},
    "neighbour_rejections": {"nb1": {"stale": 1}},
    "counters": {"own_publishes": 7},
    "totals": {
        "nb/nb1/wlan0/rx_bytes": 12_345_678_901,
        "nb/nb1/wlan0/tx_bytes": 1_234_567_890_123,
        "nb/nb1/wlan0/rx_packets": 9_000_001,
        "nft/forwarded/bytes": 98_765_432_109,
        "nft/forwarded/packets": 70_000,
        "nft/unknown/bytes": 5,
    },
}


def test_integers_are_printed_in_full():
    text = metrics.metrics_text(STATUS)
    assert (
        'meshd_neighbour_receive_bytes_total{neighbour="nb1",iface="wlan0"} 12345678901\n' in text
    )
    assert (
        'meshd_neighbour_transmit_bytes_total{neighbour="nb1",iface="wlan0"} 1234567890123\n'
        in text
    )
    assert "meshd_forwarded_bytes_total 98765432109\n" in text
    assert "e+" not in text


def test_units_labels_and_packets_apart():
    text = metrics.metrics_text(STATUS)
    assert 'meshd_link_rtt_seconds{neighbour="nb1",iface="wlan0"} 0.0035\n' in text
    assert 'meshd_link_signal_dbm{neighbour="nb1",iface="wlan0"} -61\n' in text
    assert 'meshd_link_delivery_ratio{neighbour="nb1",iface="wlan0",direction="rx"} 0.9\n' in text
    assert 'meshd_neighbour_receive_packets_total{neighbour="nb1",iface="wlan0"} 9000001\n' in text
    assert 'meshd_build_info{version="' in text
    assert "meshd_agent_uptime_seconds 86400\n" in text
    assert 'neighbour="we\\"ird\\\\nb"' in text  # escaped, not broken
    assert "nft/" not in text
    assert "{name=" not in text
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            assert name.endswith("_total") == (kind == "counter"), line


def test_prometheus_client_parses_every_family_with_help():
    parser = pytest.importorskip("prometheus_client.parser")
    fams = list(parser.text_string_to_metric_families(metrics.metrics_text(STATUS)))
    assert len(fams) > 20
    assert all(f.documentation for f in fams)
    rx = next(f for f in fams if f.name == "meshd_neighbour_receive_bytes")
    assert rx.samples[0].value == 12_345_678_901


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12_345_678_901, "12345678901"),
        (0.1, "0.1"),
        (2.0, "2"),
        (True, "1"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
        (-61, "-61"),
    ],
)
def test_number(value, text):
    assert metrics.number(value) == text


def _promtool(text: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool missing (apt-get install prometheus)")
    return subprocess.run(
        [exe, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_promtool_is_clean():
    done = _promtool(metrics.metrics_text(STATUS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_is_not_a_rubber_stamp():
    bad = "# HELP x_rtt_ms t\n# TYPE x_rtt_ms gauge\nx_rtt_ms 1\n"
    assert _promtool(bad).returncode != 0
