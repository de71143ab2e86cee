"""Key and certificate files: the only place private keys touch the disk.

Only the standard library and the core are imported here, because the router agent loads its key
through this module too.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from meshd.errors import KeyFormatError, MeshError
from meshd.ids import SigningKey
from meshd.trust import Enrollment
from meshd.validate import Invalid

KEY_HEADER = "# mutualmesh private key (Ed25519 seed). Keep it secret; never commit it.\n"


class KeyFileError(MeshError):
    """A key or certificate file cannot be used; the message names the file and the fix."""

    def __init__(self, path: Path, what: str, fix: str) -> None:
        super().__init__(f"{path}: {what}. Fix: {fix}")
        self.path = path
        self.what = what
        self.fix = fix


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
            handle.write(KEY_HEADER + key.seed_text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_private_key(path: Path) -> SigningKey:
    """Load a key, refusing files others can read: a leaked node key lets anyone speak for it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            path, "key file not found", "check the path, or create a key with `mutualmesh node add`"
        ) from None
    except OSError as exc:
        raise KeyFileError(
            path, f"cannot read key file ({exc.strerror})", "check the path and its permissions"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(path, "not a regular file", "point to the key file itself")
    if info.st_mode & 0o077:
        raise KeyFileError(
            path,
            f"key file is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
            f"run `chmod 600 {path}`",
        )
    try:
        text = path.read_text(encoding="ascii")
    except PermissionError:
        raise KeyFileError(
            path, "permission denied reading the key file", "run as the key's owner or root"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(
            path, f"cannot read key file ({exc})", "restore the key from a backup"
        ) from None
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    if len(lines) != 1:
        raise KeyFileError(
            path, "key file is malformed (expected one key line)", "restore the key from a backup"
        )
    try:
        return SigningKey.from_text(lines[0])
    except KeyFormatError as exc:
        raise KeyFileError(
            path, f"key file is malformed ({exc})", "restore the key from a backup"
        ) from None


def write_certificate(path: Path, cert: Enrollment) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cert.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_certificate(path: Path) -> Enrollment:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeyFileError(
            path, "certificate file not found", "create it with `mutualmesh node add`"
        ) from None
    except (OSError, ValueError) as exc:
        raise KeyFileError(
            path, f"cannot read certificate ({exc})", "re-issue it with `mutualmesh node add`"
        ) from None
    try:
        return Enrollment.from_json(data)
    except Invalid as exc:
        raise KeyFileError(
            path, f"certificate is malformed ({exc})", "re-issue it with `mutualmesh node add`"
        ) from None
