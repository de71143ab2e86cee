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


def test_provisioning_value_errors_are_fixable_and_keep_their_builtin_base():
    """UCI, model and address-pool errors reach the CLI's one translator; old catchers work."""
    from provisioning.addresses import PoolFull
    from provisioning.profiles import UnknownModel, lookup
    from provisioning.uci import UciError, loads

    with pytest.raises(UnknownModel) as model:
        lookup("cudy-wr3000")
    with pytest.raises(UciError) as uci:
        loads("config wifi-iface\n")
    for exc, base in ((model.value, LookupError), (uci.value, ValueError)):
        assert isinstance(exc, FixableError)
        assert isinstance(exc, base)
        assert exc.fix
        assert UserError.of(exc).exit_code == ExitStatus.USAGE
    assert "did you mean cudy_wr3000-v1" in model.value.fix
    full = PoolFull("all 14 node slots of 10.1.2.0/24 are used", "widen ipv4.prefix")
    assert isinstance(full, FixableError)
    assert full.where == "ipv4.prefix"
    assert "widen" in str(full)


def test_a_community_error_names_its_first_problem_and_lists_all_in_str():
    from meshd.errors import CommunityError, Problem

    exc = CommunityError([Problem("name", "missing", "add name:"), Problem("ipv4", "bad", "fix")])
    assert isinstance(exc, FixableError)
    assert (exc.what, exc.fix) == ("name: missing", "add name:")
    assert str(exc) == "name: missing; ipv4: bad"
