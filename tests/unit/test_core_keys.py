"""Key files: written private, and refused with a clear, file-naming error when unusable."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from meshd.ids import SigningKey, is_node_id, node_id_from_public_key
from provisioning.keys import KeyFileError, load_private_key, write_private_key


def test_node_id_is_derived_from_the_key() -> None:
    key = SigningKey.generate()
    assert is_node_id(key.node_id)
    assert key.node_id == node_id_from_public_key(key.public.raw)
    assert key.node_id != SigningKey.generate().node_id


def test_written_key_is_0600_and_loads_back(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "keys" / "node.key"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_private_key(path).node_id == key.node_id
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(path, SigningKey.generate())
    assert load_private_key(path).node_id == key.node_id


def test_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)
    assert "Fix:" in str(info.value)


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_private_key(path, SigningKey.generate())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)


@pytest.mark.parametrize("content", ["", "garbage\n", "AAAA\n", "a\nb\n"])
def test_malformed_key(tmp_path: Path, content: str) -> None:
    path = tmp_path / "node.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="malformed"):
        load_private_key(path)


def test_unreadable_key(tmp_path: Path) -> None:
    path = tmp_path / "dir.key"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_private_key(path)
