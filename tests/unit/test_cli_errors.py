"""One error base (meshd.errors.FixableError) and one translation to exit codes (cli.errors)."""

from __future__ import annotations

import sys
import types

import click
import pytest

import cli.main
from cli.errors import EXIT_STATUS, ExitStatus, ToolFailed, Unreachable, UserError, exit_status_of
from meshd.errors import FixableError
from tests.clikit import invoke


class Custom(FixableError):
    pass


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (FixableError("bad"), ExitStatus.USAGE),
        (Custom("bad"), ExitStatus.USAGE),
        (Unreachable("down"), ExitStatus.UNREACHABLE),
        (ToolFailed("no graphviz"), ExitStatus.ERROR),
    ],
)
def test_exit_status_comes_from_one_table(exc, status):
    assert exit_status_of(exc) is status
    assert UserError.of(exc).exit_code == status


def test_a_packages_error_escaping_a_command_is_printed_not_raised(monkeypatch):
    @click.command()
    def fails() -> None:
        raise Custom("the thing is wrong", where="thing.yaml:3", fix="write it right")

    module = types.ModuleType("tests_fake_command")
    module.fails = fails  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_fake_command", module)
    monkeypatch.setitem(cli.main.COMMANDS, "fails", ("tests_fake_command", "fails", "x"))
    monkeypatch.setattr(cli.main.importlib.util, "find_spec", lambda name: True)
    r = invoke("fails")
    assert r.exit_code == 2
    assert "error: the thing is wrong" in r.output
    assert "where: thing.yaml:3" in r.output
    assert "fix:   write it right" in r.output
    monkeypatch.setitem(EXIT_STATUS, Custom, ExitStatus.UNREACHABLE)
    assert invoke("fails").exit_code == 4
