"""Writing key and certificate files (admin side); reading them is the core's (meshd.keyfile).

The loaders are re-exported so admin code has one import path; the router imports meshd.keyfile.
"""

from __future__ import annotations

import json
from pathlib import Path

from meshd.ids import SigningKey
from meshd.keyfile import KEY_HEADER, KeyFileError, key_text, load_certificate, load_private_key
from meshd.trust import Enrollment
from node_agent.fsutil import atomic_write

__all__ = [
    "KEY_HEADER",
    "KeyFileError",
    "load_certificate",
    "load_private_key",
    "write_certificate",
    "write_private_key",
]


def write_private_key(path: Path, key: SigningKey, *, overwrite: bool = False) -> None:
    """Write atomically with mode 0600 from the first byte; refuse to replace an existing key."""
    if path.exists() and not overwrite:
        raise KeyFileError(
            path, "a key file already exists", "move it away first, or pick another path"
        )
    atomic_write(path, key_text(key).encode("ascii"), 0o600)


def write_certificate(path: Path, cert: Enrollment) -> None:
    text = json.dumps(cert.to_json(), indent=2, sort_keys=True) + "\n"
    atomic_write(path, text.encode("utf-8"), 0o644)
