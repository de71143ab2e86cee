"""The one `Impairment` type: from options, from YAML, through JSON, and its options table."""

from __future__ import annotations

import pytest

from cli.lab.impair import BY_NAME, OPTIONS, ImpairError, Impairment
from cli.lab.shaping import APPLIERS
from cli.lab.state import LinkState
from cli.lab.topology import TopologyError, from_yaml_text
from tests.clikit import invoke


def test_options_set_fields_and_unset_ones_stay():
    base = Impairment().changed({"loss": 10, "rate": "5mbit"}, one_way=False)
    assert (base.loss, base.rate_bps) == (10.0, 5_000_000)
    more = base.changed({"delay": 25, "jitter": 5}, one_way=True)
    assert (more.loss, more.rate_bps, more.delay_ms, more.jitter_ms) == (10, 5_000_000, 25, 5)
    assert more.describe() == "loss 10%, rate 5mbit, delay 25+-5ms, one-way"


def test_taking_the_delay_away_takes_its_jitter():
    imp = Impairment(delay_ms=25, jitter_ms=5).changed({"delay": 0}, one_way=False)
    assert (imp.delay_ms, imp.jitter_ms) == (0, 0)
    assert imp.empty


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"loss": 100}, "loss"),
        ({"loss": "lots"}, "must be a number"),
        ({"rate": "fast"}, "10mbit"),
        ({"delay": -1}, "delay"),
        ({"jitter": 30, "delay": 25}, "larger than the delay"),
        ({"colour": 1}, "unknown impairment"),
    ],
)
def test_bad_options_say_what_is_wrong(given, needle):
    with pytest.raises(ImpairError, match=needle):
        Impairment().changed(given, one_way=False)


def test_the_type_itself_refuses_invalid_values():
    with pytest.raises(ImpairError):
        Impairment(loss=150)
    with pytest.raises(ImpairError):
        Impairment(delay_ms=5, jitter_ms=10)


def test_json_round_trip_keeps_every_field():
    imp = Impairment(loss=12.5, rate_bps=2_000_000, delay_ms=40, one_way=True, jitter_ms=4)
    assert Impairment.from_json(imp.to_json()) == imp
    state = LinkState(imp, "n2", cut=True)
    assert LinkState.from_json(state.to_json()) == state


def test_yaml_uses_the_same_options_and_validation():
    topo = from_yaml_text("links: [{a: a, b: b, loss: 10, rate: 5mbit, delay: 20, jitter: 5}]")
    assert topo.links[0].impairment == Impairment(10, 5_000_000, 20, False, 5)
    with pytest.raises(TopologyError, match=r"links\[0\]: jitter 30 ms is larger"):
        from_yaml_text("links: [{a: a, b: b, delay: 20, jitter: 30}]")


def test_every_option_names_a_registered_apply_function():
    assert {opt.applier for opt in OPTIONS} <= set(APPLIERS)
    assert next(iter(APPLIERS)) == "relay", "the relay decides the active interface: it goes first"
    assert set(BY_NAME) == {opt.name for opt in OPTIONS}


def test_the_impair_command_has_one_flag_per_option_and_refuses_bad_values_first():
    helptext = invoke("lab", "impair", "--help").output
    for opt in OPTIONS:
        assert f"--{opt.name}" in helptext
    result = invoke("lab", "impair", "n1", "n2", "--rate", "fast", "--name", "zz9")
    assert result.exit_code == 2, result.output
    assert "10mbit" in result.output
    assert "Traceback" not in result.output
