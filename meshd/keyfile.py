"""Node key and certificate files as the router reads them: the router/admin boundary.

The agent on a router needs to read its key and certificate and nothing else of the admin side,
so the reading lives in the core; provisioning.keys (admin only) writes them. These two loaders
are the core's only file reads: one small file each, checked before anything is parsed.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from meshd.errors import FixableError, KeyFormatError
from meshd.ids import SigningKey
from meshd.trust import Enrollment
from meshd.validate import Invalid

KEY_HEADER = "# mutualmesh private key (Ed25519 seed). Keep it secret; never commit it.\n"


class KeyFileError(FixableError):
    """A key or certificate file cannot be used; the message names the file and the fix."""

    fix: str

    def __init__(self, path: Path, what: str, fix: str) -> None:
        super().__init__(what, str(path), fix)
        self.args = (f"{path}: {what}. Fix: {fix}",)
        self.path = path


def key_text(key: SigningKey) -> str:
    """The bytes of a key file: a warning header and the seed."""
    return KEY_HEADER + key.seed_text + "\n"


def parse_private_key(text: str, path: Path) -> SigningKey:
    """The key in a key file's text (comments and blank lines ignored)."""
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


def check_key_mode(mode: int, path: Path) -> None:
    """Refuse a key others can read: a leaked node key lets anyone speak for the node."""
    if not stat.S_ISREG(mode):
        raise KeyFileError(path, "not a regular file", "point to the key file itself")
    if mode & 0o077:
        raise KeyFileError(
            path,
            f"key file is readable by others (mode {stat.S_IMODE(mode):04o})",
            f"run `chmod 600 {path}`",
        )


def parse_certificate(text: str, path: Path) -> Enrollment:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(
            path, f"cannot read certificate ({exc})", "re-issue it with `mutualmesh node add`"
        ) from None
    try:
        return Enrollment.from_json(data)
    except Invalid as exc:
        raise KeyFileError(
            path, f"certificate is malformed ({exc})", "re-issue it with `mutualmesh node add`"
        ) from None


def load_private_key(path: Path) -> SigningKey:
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
    check_key_mode(info.st_mode, path)
    text = _read_text(
        path, "key file", "ascii", missing="check the path", broken="restore the key from a backup"
    )
    return parse_private_key(text, path)


def load_certificate(path: Path) -> Enrollment:
    text = _read_text(
        path,
        "certificate file",
        "utf-8",
        missing="create it with `mutualmesh node add`",
        broken="re-issue it with `mutualmesh node add`",
    )
    return parse_certificate(text, path)


def _read_text(path: Path, noun: str, encoding: str, *, missing: str, broken: str) -> str:
    """A key or certificate file's text; every way it cannot be read is a KeyFileError."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise KeyFileError(path, f"{noun} not found", missing) from None
    except PermissionError:
        raise KeyFileError(
            path, f"permission denied reading the {noun}", "run as the file's owner or root"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(path, f"cannot read {noun} ({exc})", broken) from None
