"""`mutualmesh lab` without root, with bad input: a clear message and exit status, no traceback."""

from __future__ import annotations

import os

import pytest

from cli.errors import ExitStatus, UserError, exit_status_of
from cli.lab.babel import BabelError
from cli.lab.impair import ImpairError
from cli.lab.lab import RUN_BASE
from cli.lab.netns import CommandError
from cli.lab.state import LabError, LabUsageError
from cli.lab.topology import TopologyError
from meshd.errors import FixableError
from tests.clikit import invoke


@pytest.fixture
def not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.mark.parametrize(
    "args",
    [
        ["up", "--topology", "chain:3", "--name", "zz9"],
        ["demo", "--name", "zz9"],
        ["status", "--name", "zz9"],
        ["impair", "n1", "n2", "--loss", "5", "--name", "zz9"],
        ["down", "--name", "zz9"],
    ],
)
def test_without_root_says_what_is_missing_and_how_to_run_it(not_root, args):
    result = invoke("lab", *args)
    assert result.exit_code == 1, result.output
    assert "root" in result.output
    assert "sudo" in result.output
    assert "Traceback" not in result.output
    assert not (RUN_BASE / "zz9").exists(), "nothing may be built or written"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["up", "--topology", "star:3"], "unknown topology"),
        (["up", "--topology", "chain:3", "--gateway", "n9"], "n9"),
        (["up", "--name", "Bad-Name"], "lab name"),
        (["impair", "n1", "n2"], "nothing to do"),
        (["view", "bogus"], "not an admin view"),
        (["down", "--stale", "--all"], "exclude each other"),
    ],
)
def test_bad_input_is_a_usage_error(args, needle):
    result = invoke("lab", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LabError("no lab", "run `lab up`"), ExitStatus.ERROR),
        (LabUsageError("no node n9", "use n1"), ExitStatus.USAGE),
        (ImpairError("loss 500"), ExitStatus.USAGE),
        (TopologyError("unknown topology"), ExitStatus.USAGE),
        (CommandError(["ip", "link"], 2, "boom"), ExitStatus.ERROR),
        (BabelError("babeld in x does not answer"), ExitStatus.ERROR),
    ],
)
def test_every_lab_error_is_fixable_and_cli_errors_picks_its_status(error, status):
    assert isinstance(error, FixableError)
    assert error.fix, "every lab error says how to fix it"
    assert exit_status_of(error) is status
    assert UserError.of(error).exit_code == status


def test_metrics_port_follows_the_agent_flags():
    from cli.lab.agent import METRICS_PORT, metrics_port

    assert metrics_port([]) == METRICS_PORT
    assert metrics_port(["--publish-interval", "2", "--metrics-port", "9200"]) == 9200
    assert metrics_port(["--metrics-port=0"]) == 0


def test_neighbours_up_lists_only_live_neighbours():
    from cli.lab.agent import neighbours_up

    status = {
        "neighbours": [
            {"node_id": "aaa", "up": True},
            {"node_id": "bbb", "up": False},
            {"node_id": 5, "up": True},
            "junk",
        ]
    }
    assert neighbours_up(status) == {"aaa"}
    assert neighbours_up({}) == set()


def test_owner_comes_from_the_environment(monkeypatch):
    from cli.lab import procs
    from cli.lab.lab import OWNER_ENV, owner_from_env

    me = os.getpid()
    monkeypatch.setenv(OWNER_ENV, str(me))
    assert owner_from_env() == (me, procs.start_time(me))
    monkeypatch.setenv(OWNER_ENV, f"{me}:12345")
    assert owner_from_env() == (me, 12345)
    for junk in ("", "abc", "-1"):
        monkeypatch.setenv(OWNER_ENV, junk)
        assert owner_from_env() is None
