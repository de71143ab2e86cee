"""Running the real `mutualmesh` click app in tests: the one CliRunner helper.

Exceptions are caught (`catch_exceptions=True`), as a user would meet them: a test sees the exit
code and the output, and `assert_no_traceback` shows an uncaught exception with its traceback
instead of hiding it behind exit code 1.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import click
from click.testing import CliRunner, Result

from cli.main import app


def invoke(
    *args: Any,
    env: Mapping[str, str | None] | None = None,
    command: click.Command = app,
    input: str | None = None,
) -> Result:
    """Run `mutualmesh ARGS...`; an exception that is not a click exit fails the test with its
    traceback (a user mistake must be a message, never a traceback)."""
    result = CliRunner().invoke(command, [str(a) for a in args], env=env, input=input)
    assert_no_traceback(result)
    return result


def assert_no_traceback(result: Result) -> None:
    exc = result.exception
    if exc is None or isinstance(exc, SystemExit):
        return
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    raise AssertionError(f"the command raised instead of exiting cleanly:\n{detail}")
