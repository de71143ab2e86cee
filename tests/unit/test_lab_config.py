"""Lab configs, babel dump parsing, impairment maths, tool output parsers, the agent argv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.lab import agent, babel, broker, impair, measure
from cli.lab.topology import neighbourhood, parse

DUMP = "\n".join(
    [
        "add interface to-n3 up true ipv6 fe80::1 ipv4 10.77.128.5",
        "add neighbour 55d0 address fe80::a if to-n3 reach ffff ureach 0000 rxcost 256"
        " txcost 300 rtt 0.210 rttcost 0 cost 256",
        "add neighbour 55d1 address fe80::b if to-n1 reach 0000 ureach 0000 rxcost 65535"
        " txcost 65535 cost 65535",
        "add xroute 10.77.0.2/32-0.0.0.0/0 prefix 10.77.0.2/32 from 0.0.0.0/0 metric 0",
        "add route 55e0 prefix 10.77.0.4/32 from 0.0.0.0/0 installed yes id 30:1a metric 512"
        " refmetric 256 via fe80::a if to-n3",
        "add route 55e1 prefix 10.77.0.5/32 from 0.0.0.0/0 installed no id 30:1b metric 768"
        " refmetric 512 via fe80::a if to-n3",
        "add route 55e2 prefix 0.0.0.0/0 from 0.0.0.0/0 installed yes id 30:1c metric 300"
        " refmetric 44 via fe80::a if to-n3",
        "garbage line",
    ]
)


def test_parse_dump_reads_neighbours_and_routes():
    d = babel.parse_dump(DUMP)
    assert [(n.iface, n.cost, n.txcost) for n in d.neighbours] == [
        ("to-n3", 256, 300),
        ("to-n1", 65535, 65535),
    ]
    assert d.neighbours[0].rtt_ms == pytest.approx(0.21)
    assert d.neighbours[1].rtt_ms is None
    assert set(d.installed()) == {"10.77.0.4/32", "0.0.0.0/0"}
    assert d.installed()["10.77.0.4/32"].metric == 512


def test_babel_config_announces_only_the_node_address():
    conf = babel.config(v4="10.77.0.3", v6="fd77::3", run_dir=Path("/r"), node="n3", gateway=False)
    lines = conf.splitlines()
    assert "redistribute local ip 10.77.0.3/32 allow" in lines
    assert "redistribute local ip fd77::3/128 allow" in lines
    # the deny must come after the allows: babeld uses the first matching filter
    assert lines.index("redistribute local deny") > lines.index(
        "redistribute local ip fd77::3/128 allow"
    )
    assert "install ip 0.0.0.0/0 pref-src 10.77.0.3" in lines
    assert f"local-port-readwrite {babel.CONTROL_PORT}" in lines
    assert "default type wireless hello-interval 0.5 enable-timestamps true" in lines
    assert not any("0.0.0.0/0 eq 0" in line for line in lines)
    assert "state-file /r/babel-n3.state" in lines  # never the shared /var/lib default


def test_babel_config_of_a_gateway_redistributes_default_routes():
    conf = babel.config(v4="10.77.0.1", v6="fd77::1", run_dir=Path("/r"), node="n1", gateway=True)
    lines = conf.splitlines()
    allow = lines.index("redistribute ip 0.0.0.0/0 eq 0 allow")
    assert allow < lines.index("redistribute deny")
    assert "redistribute ip ::/0 eq 0 allow" in lines


def test_babeld_and_mosquitto_run_in_the_foreground_with_our_config():
    assert babel.argv(Path("/r/b.conf"), ["to-n2"]) == ["babeld", "-c", "/r/b.conf", "to-n2"]
    assert "-d" not in broker.argv(Path("/r/m.conf"))
    conf = broker.config(node="n1", log_file=Path("/r/m.log"))
    assert "listener 1883" in conf.splitlines()
    assert "persistence false" in conf.splitlines()
    assert "log_dest file /r/m.log" in conf.splitlines()


@pytest.mark.parametrize(
    ("text", "bps"),
    [("10mbit", 10_000_000), ("500kbit", 500_000), ("1gbit", 10**9), ("2mbps", 16_000_000)],
)
def test_parse_rate(text, bps):
    assert impair.parse_rate(text) == bps


@pytest.mark.parametrize("text", ["fast", "10 furlongs", "1bit", "-5mbit", ""])
def test_bad_rates_are_rejected(text):
    with pytest.raises(impair.ImpairError):
        impair.parse_rate(text)


def test_loss_is_split_so_a_round_trip_loses_the_given_percentage():
    fwd, back = impair.per_direction_loss(20, one_way=False)
    assert fwd == back
    assert 1 - (1 - fwd) * (1 - back) == pytest.approx(0.20)
    assert impair.per_direction_loss(20, one_way=True) == (0.2, 0.0)
    with pytest.raises(impair.ImpairError):
        impair.per_direction_loss(100, one_way=False)


def test_nft_script_replaces_the_table_and_drops_on_ingress():
    script = impair.nft_script({"to-n2": 0.1056})
    assert script.startswith(f"table netdev {impair.NFT_TABLE}\ndelete table netdev")
    assert 'hook ingress device "to-n2"' in script
    assert f"numgen random mod {impair.LOSS_SCALE} < 1056" in script
    empty = impair.nft_script({})
    assert "chain" not in empty
    assert "delete table" in empty


def test_tbf_bucket_grows_with_rate():
    small = impair.tbf_argv("x", 1_000_000)
    big = impair.tbf_argv("x", 10**9)
    assert small[small.index("burst") + 1] == str(32 * 1024)
    assert int(big[big.index("burst") + 1]) > 32 * 1024


def test_relay_params_one_way_delays_only_the_forward_direction():
    assert impair.relay_params(25, one_way=True) == {
        "a_to_b": {"delay_ms": 25},
        "b_to_a": {"delay_ms": 0.0},
    }
    both = impair.relay_params(25, one_way=False)
    assert both["b_to_a"]["delay_ms"] == 25


def test_impairment_describe():
    imp = impair.Impairment(loss=20, rate_bps=10_000_000, delay_ms=25, one_way=True)
    assert imp.describe() == "loss 20%, rate 10mbit, delay 25ms, one-way"
    assert impair.Impairment().describe() == "none"
    assert impair.Impairment().empty


PING = """\
--- 10.77.0.5 ping statistics ---
500 packets transmitted, 401 received, 19.8% packet loss, time 5012ms
rtt min/avg/max/mdev = 0.031/0.060/0.422/0.020 ms
"""


def test_parse_ping():
    r = measure.parse_ping(PING)
    assert (r.sent, r.received) == (500, 401)
    assert r.loss_pct == pytest.approx(19.8)
    assert r.rtt_min_ms == pytest.approx(0.031)
    all_lost = measure.parse_ping("3 packets transmitted, 0 received, 100% packet loss, time 2ms")
    assert all_lost.loss_pct == 100
    assert all_lost.rtt_avg_ms is None
    with pytest.raises(ValueError, match="no ping summary"):
        measure.parse_ping("ping: connect: Network is unreachable")
    # while babel reroutes, the kernel may have no route for a moment: all lost, not an error
    gap = measure.parse_ping("ping: connect: No route to host\n", count=1)
    assert (gap.sent, gap.received) == (1, 0)
    with pytest.raises(ValueError, match="no ping summary"):
        measure.parse_ping("ping: unknown host", count=1)


def test_parse_iperf3():
    text = json.dumps(
        {
            "end": {
                "sum_sent": {"bytes": 3_750_000, "seconds": 3.0, "retransmits": 4},
                "sum_received": {"bytes": 3_600_000, "seconds": 3.0, "bits_per_second": 9.6e6},
            }
        }
    )
    r = measure.parse_iperf3(text)
    assert r.sent_bytes == 3_750_000
    assert r.receiver_mbps == pytest.approx(9.6)
    with pytest.raises(ValueError, match="refused"):
        measure.parse_iperf3(json.dumps({"error": "unable to connect: refused"}))
    with pytest.raises(ValueError, match="JSON"):
        measure.parse_iperf3("iperf3: error")


def test_agent_argv_is_the_documented_contract(tmp_path):
    topo = neighbourhood()
    argv = agent.agent_argv(topo, tmp_path, "n1")
    assert argv[0].endswith("/meshd")

    def values(flag: str) -> list[str]:
        return [argv[i + 1] for i, a in enumerate(argv) if a == flag]

    files = agent.AgentFiles.of(tmp_path, "n1")
    assert values("--key") == [str(files.key)]
    assert values("--cert") == [str(files.cert)]
    assert values("--community-file") == [str(tmp_path / "community.yaml")]
    assert values("--state-dir") == [str(files.state_dir)]
    assert values("--status-file") == [str(files.status)]
    assert sorted(values("--mesh-iface")) == ["to-n2", "to-n6"]
    assert values("--address") == ["10.77.0.1", "fd77::1"]
    assert values("--hostname") == ["n1"]
    assert values("--broker-port") == ["1883"]
    assert values("--babel-port") == ["33123"]
    assert values("--metrics-port") == ["9105"]
    assert values("--gateway-iface") == ["up0"]
    assert values("--gateway-kbit") == [str(agent.GATEWAY_KBIT)]
    assert "--gateway-iface" not in agent.agent_argv(parse("chain:2"), tmp_path, "n2")


def test_provisioned_identities_verify_against_the_lab_community(tmp_path):
    yaml = pytest.importorskip("yaml")
    from meshd.community import parse_community
    from provisioning.keys import load_certificate, load_private_key

    topo = parse("chain:2")
    agent.provision_identities(topo, tmp_path)
    community = parse_community(yaml.safe_load((tmp_path / "community.yaml").read_text()))
    for n in topo.names:
        files = agent.AgentFiles.of(tmp_path, n)
        key = load_private_key(files.key)
        cert = load_certificate(files.cert)
        assert cert.key == key.public
        assert cert.hostname == n
        assert cert.problem(community.trust, now=0) is None


def test_radio_script_drops_per_port_pair_and_out_of_range_always():
    script = impair.radio_script({("p-n1", "p-n3"): 1.0, ("p-n1", "p-n2"): 0.1056})
    assert script.startswith(f"table bridge {impair.RADIO_TABLE}\ndelete table bridge")
    assert "type filter hook forward priority 0" in script
    assert 'iifname "p-n1" oifname "p-n3" counter drop' in script
    assert (
        f'iifname "p-n1" oifname "p-n2" numgen random mod {impair.LOSS_SCALE} < 1056 counter drop'
        in script
    )
    assert 'p-n2" oifname' not in script  # only the directions given
    assert "drop" not in impair.radio_script({})


def test_agent_is_told_about_its_segment_interfaces(tmp_path):
    topo = parse("shared:3")
    argv = agent.agent_argv(topo, tmp_path, "n2")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--mesh-iface"] == ["sg-s1"]


def test_topology_survives_the_state_file():
    from cli.lab.lab import topology_from_json, topology_to_json
    from cli.lab.topology import from_yaml_text

    topo = from_yaml_text(
        "links: [[n0, n1]]\nsegments: [{name: s1, nodes: [n1, n2, n3], loss: {n1-n3: 100}}]\n"
        "gateways: [n0]\n"
    )
    again = topology_from_json(json.loads(json.dumps(topology_to_json(topo))))
    assert again.segments == topo.segments
    assert again.names == topo.names
    assert again.gateways == topo.gateways


def test_relay_jitter_stays_within_bounds_and_keeps_frames_in_order():
    from cli.lab.relay import next_due

    assert next_due(10.0, 0.025, 0.010, 0.0, -1.0) == pytest.approx(10.015)
    assert next_due(10.0, 0.025, 0.010, 0.0, 1.0) == pytest.approx(10.035)
    # a short draw right after a long one waits for it: FIFO, never reordered
    assert next_due(10.001, 0.025, 0.010, 10.035, -1.0) == 10.035
    assert next_due(10.0, 0.0, 0.0, 0.0, 0.5) == 10.0


def test_jitter_needs_a_delay_at_least_as_large():
    assert impair.relay_params(25, one_way=False, jitter_ms=5) == {
        "a_to_b": {"delay_ms": 25, "jitter_ms": 5},
        "b_to_a": {"delay_ms": 25, "jitter_ms": 5},
    }
    assert impair.relay_params(25, one_way=True, jitter_ms=5)["b_to_a"] == {"delay_ms": 0.0}
    with pytest.raises(impair.ImpairError, match="larger than the delay"):
        impair.check_jitter(30, 25)
    with pytest.raises(impair.ImpairError):
        impair.check_jitter(-1, 25)
    assert impair.Impairment(delay_ms=25, jitter_ms=5).describe() == "delay 25+-5ms"
