"""Provisioning's error classes are the core's one what/where/fix base (meshd.errors)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.errors import ExitStatus, UserError
from meshd.errors import FixableError
from meshd.keyfile import KeyFileError
from meshd.trustchain import ChainError
from provisioning.community import ProvisionError


@pytest.mark.parametrize(
    "exc",
    [
        ProvisionError("a community already exists here", "c/community.yaml", "pick another --dir"),
        KeyFileError(Path("k.key"), "key file not found", "check the path"),
        ChainError("trust/000002.json", "signed by 1 of 2 admins", "collect another signature"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_each_is_a_fixable_error_the_cli_translates(exc):
    assert isinstance(exc, FixableError)
    assert exc.what
    assert exc.where
    assert exc.fix
    user = UserError.of(exc)
    assert user.exit_code == ExitStatus.USAGE
    assert exc.where in user.format_message()
    assert exc.fix in user.format_message()
    assert exc.where in str(exc)  # logs keep naming the file


def test_chain_errors_are_still_value_errors():
    """Callers that catch ValueError around parsing keep working."""
    assert isinstance(ChainError("w", "x", "y"), ValueError)
