"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clikit import invoke
from tests.corekit import CommunityKit, NodeKit


@pytest.fixture(autouse=True)
def own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins and default keys go to the test's folder, never the real ~/.config."""
    monkeypatch.setenv("MUTUALMESH_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def comm(tmp_path: Path) -> tuple[Path, Path]:
    """A freshly initialised community folder and its admin key."""
    key = tmp_path / "keys" / "ada.key"
    result = invoke("community", "init", "riverside", "--dir", tmp_path / "c", "--admin-key", key)
    assert result.exit_code == 0, result.output
    return tmp_path / "c", key


@pytest.fixture
def community() -> CommunityKit:
    """A community of the real core (one admin), for the core tests."""
    return CommunityKit()


@pytest.fixture
def alpha(community: CommunityKit) -> NodeKit:
    return community.enroll("alpha")
