"""Writing key and certificate files (admin side); reading them is the core's (meshd.keyfile).

The loaders are re-exported so admin code has one import path; the router imports meshd.keyfile.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from meshd.ids import SigningKey
from meshd.keyfile import KEY_HEADER, KeyFileError, key_text, load_certificate, load_private_key
from meshd.trust import Enrollment

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key_text(key))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_certificate(path: Path, cert: Enrollment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cert.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
