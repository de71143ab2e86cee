"""Who runs a community: its creation, admins, signatures and trust chain (admin side).

`mutualmesh community ...` and the admin checks of `mutualmesh node ...` run through here. Each
function checks everything before it writes anything, and leaves no partial files when a write
fails, so a failed command can simply be run again.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshd.community import review_community
from meshd.ids import PublicKey, SigningKey
from provisioning.community import (
    COMMUNITY_FILE,
    GITIGNORE,
    PASSPHRASE_FILE,
    PENDING_FILE,
    TRUST_DIR,
    ProvisionError,
    check,
    config_dir,
    dump_yaml,
    load_chain,
    load_community_dir,
    load_pending,
    new_community,
    random_passphrase,
    save_pin,
    sign,
    verify_folder,
    version_path,
    write_secret,
    write_text_atomic,
    write_version,
)
from provisioning.keys import load_private_key, write_private_key
from provisioning.security import ssh_key_problem
from provisioning.trustchain import ChainError, Pin, Version, authorising, propose, verify_chain


def default_admin_key(name: str) -> Path:
    return config_dir() / f"admin-{name}.key"


def load_admin_key(path: Path) -> SigningKey:
    """An admin's key; a KeyFileError (what / where / fix) when it cannot be used."""
    return load_private_key(path)


def init_community(
    directory: Path,
    name: str,
    *,
    admin_key_path: Path,
    admin_name: str,
    country: str,
    routing: str,
    ssh_key_files: Sequence[Path] = (),
) -> tuple[dict[str, Any], bool]:
    """Create DIR/community.yaml; returns the mapping and whether a new admin key was made.

    `ssh_key_files` (OpenSSH .pub files) become the admin's `ssh_keys`: the only way into nodes.
    """
    ssh_keys = tuple(read_ssh_keys(path) for path in ssh_key_files)
    target = directory / COMMUNITY_FILE
    if target.exists():
        raise ProvisionError(
            "a community already exists here", str(target), "pick another --dir, or edit it"
        )
    if admin_key_path.resolve().is_relative_to(directory.resolve()):
        raise ProvisionError(
            "the admin key would be inside the community folder (which is shared, e.g. in git)",
            str(admin_key_path),
            f"keep it outside, e.g. --admin-key {default_admin_key(name)}",
        )
    if directory.exists() and not directory.is_dir():
        raise ProvisionError("not a folder", str(directory), "pick a folder path for --dir")
    created = not admin_key_path.exists()
    admin_key = SigningKey.generate() if created else load_admin_key(admin_key_path)
    data = new_community(
        name,
        admin_name=admin_name,
        admin_key=admin_key,
        country=country,
        routing=routing,
        ssh_keys=ssh_keys,
    )
    # Validate the generated file through the same checker every reader uses.
    check(data, require_signatures=True)
    genesis = propose(data, None).signed_by(admin_key)
    verify_chain([genesis])
    made_dir = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if created:
            write_private_key(admin_key_path, admin_key)
        write_text_atomic(directory / ".gitignore", GITIGNORE)
        write_secret(directory / PASSPHRASE_FILE, random_passphrase() + "\n")
        (directory / TRUST_DIR).mkdir(exist_ok=True)
        write_version(version_path(directory, 1), genesis)
        write_text_atomic(target, dump_yaml(data))
    except OSError as exc:
        if created:
            admin_key_path.unlink(missing_ok=True)
        (directory / ".gitignore").unlink(missing_ok=True)
        (directory / PASSPHRASE_FILE).unlink(missing_ok=True)
        version_path(directory, 1).unlink(missing_ok=True)
        if made_dir:
            shutil.rmtree(directory, ignore_errors=True)
        raise ProvisionError(
            f"cannot write ({exc.strerror})", str(exc.filename or directory), "pick a writable path"
        ) from None
    save_pin(Pin.of([genesis]))
    return data, created


def read_ssh_keys(path: Path) -> str:
    """The one public key line of an OpenSSH .pub file, checked."""
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(
            f"cannot read the SSH public key ({exc})", str(path), "pass your ~/.ssh/*.pub file"
        ) from None
    problem = ssh_key_problem(lines[0]) if len(lines) == 1 else "must hold one key line"
    if problem:
        raise ProvisionError(
            f"not an SSH public key: {problem}",
            str(path),
            "pass the .pub file (never the private key), e.g. ~/.ssh/id_ed25519.pub",
        )
    return lines[0]


def admin_for(directory: Path, admin_key_path: Path, admins: frozenset[PublicKey]) -> SigningKey:
    admin = load_admin_key(admin_key_path)
    if admin.public not in admins:
        raise ProvisionError(
            "this key is not an admin of the community",
            str(admin_key_path),
            "use a key listed under admins in community.yaml, or have it added "
            "with `mutualmesh community add-admin`",
        )
    return admin


def _save_community(directory: Path, data: dict[str, Any]) -> None:
    path = directory / COMMUNITY_FILE
    try:
        write_text_atomic(path, dump_yaml(data))
    except OSError as exc:
        raise ProvisionError(
            f"cannot write ({exc.strerror})", str(path), "check the folder is writable"
        ) from None


def add_admin(
    directory: Path,
    name: str,
    key: PublicKey,
    threshold: int | None,
    ssh_key_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """Add an admin (and maybe change k). Old signatures no longer match and are dropped."""
    ssh_keys = [read_ssh_keys(path) for path in ssh_key_files]
    community, data = load_community_dir(directory, require_signatures=False)
    if any(a.key == key for a in community.admins):
        raise ProvisionError(
            "this key is already an admin", str(directory / COMMUNITY_FILE), "nothing to do"
        )
    if any(a.name == name for a in community.admins):
        raise ProvisionError(
            f"an admin called {name!r} exists", str(directory / COMMUNITY_FILE), "pick another name"
        )
    entry: dict[str, Any] = {"name": name, "key": key.text}
    if ssh_keys:
        entry["ssh_keys"] = ssh_keys
    admins = [*data["admins"], entry]
    new = {**data, "admins": admins, "signatures": []}
    if threshold is not None:
        new["threshold"] = threshold
    check(new)  # k must stay within 1..n
    _save_community(directory, new)
    return new


@dataclass(frozen=True, slots=True)
class Signed:
    """Where a `community sign` left things."""

    file_valid: int  # valid signatures on community.yaml by its own admins
    file_needed: int
    version: int  # the newest trusted version after signing
    proposed: Version | None  # the change still waiting for the previous admins, if any
    change_valid: int = 0
    change_needed: int = 0


def sign_community(directory: Path, admin_key_path: Path) -> Signed:
    """Sign community.yaml and, if it is a change, the proposal of the next version.

    The proposal counts only signatures of the admins of the newest trusted version; once it has
    k of them it becomes trust/<next>.json.
    """
    community, data = load_community_dir(directory, require_signatures=False)
    chain = load_chain(directory)
    try:
        head = verify_chain(chain)
    except ChainError as exc:
        raise ProvisionError(exc.what, str(directory / exc.where), exc.fix) from None
    admin = load_admin_key(admin_key_path)
    trusted = head.admin_keys
    if admin.public not in community.trust.admins and admin.public not in trusted:
        raise ProvisionError(
            "this key is not an admin of the community",
            str(admin_key_path),
            "use a key listed under admins in community.yaml (or in the trusted version "
            f"{head.version}), or have it added with `mutualmesh community add-admin`",
        )
    signed: dict[str, Any] = dict(data)
    if admin.public in community.trust.admins:
        signed = sign(data, admin)
    valid = review_community(signed).signers
    # Drop what no longer verifies (made before the last change), so the file stays tidy.
    valid_texts = {k.text for k in valid}
    signed["signatures"] = [
        s for s in signed["signatures"] if isinstance(s, dict) and s.get("admin") in valid_texts
    ]
    proposed = propose(signed, head)
    if proposed.content == head.content:
        _save_community(directory, signed)
        return Signed(len(valid), community.threshold, head.version, None)
    for item in chain[:-1]:
        if item.content == proposed.content:
            raise ProvisionError(
                f"community.yaml is trusted version {item.version}, older than version "
                f"{head.version}: signing it again would replay it",
                str(directory / COMMUNITY_FILE),
                "restore the current file from git; to really go back, change something "
                "(e.g. a comment-free field) so it becomes a new version",
            )
    pending = load_pending(directory)
    if pending is not None and pending.signed_part() == proposed.signed_part():
        proposed = pending
    if admin.public in trusted:
        proposed = proposed.signed_by(admin)
    anchor = authorising(chain, proposed)
    change_valid = len(proposed.signers(anchor.admin_keys))
    pending_path = directory / TRUST_DIR / PENDING_FILE
    try:
        _save_community(directory, signed)
        if change_valid >= anchor.threshold:
            verify_chain([*chain, proposed])
            write_version(version_path(directory, proposed.version), proposed)
            pending_path.unlink(missing_ok=True)
            save_pin(Pin.of([*chain, proposed]))
            return Signed(len(valid), community.threshold, proposed.version, None)
        write_version(pending_path, proposed)
    except OSError as exc:
        raise ProvisionError(
            f"cannot write ({exc.strerror})", str(directory), "check the folder is writable"
        ) from None
    return Signed(
        len(valid),
        community.threshold,
        head.version,
        proposed,
        change_valid,
        anchor.threshold,
    )


def adopt_community(directory: Path, admin_key_paths: Sequence[Path]) -> Version:
    """Start the trust chain of a signed community.yaml made before chains existed."""
    if (directory / TRUST_DIR).exists():
        raise ProvisionError(
            "this community already has a trust chain",
            str(directory / TRUST_DIR),
            "change the community with `community add-admin` / `community sign` instead",
        )
    community, data = load_community_dir(directory, require_signatures=False)
    check(data, require_signatures=True)
    genesis = propose(data, None)
    for path in admin_key_paths:
        genesis = genesis.signed_by(admin_for(directory, path, community.trust.admins))
    try:
        verify_chain([genesis])
    except ChainError as exc:
        raise ProvisionError(
            exc.what, str(directory / COMMUNITY_FILE), "pass --admin-key once for each of k admins"
        ) from None
    try:
        (directory / TRUST_DIR).mkdir()
        write_version(version_path(directory, 1), genesis)
    except OSError as exc:
        raise ProvisionError(
            f"cannot write ({exc.strerror})", str(directory), "check the folder is writable"
        ) from None
    save_pin(Pin.of([genesis]))
    return genesis


def trusted_chain(directory: Path) -> list[Version]:
    """The verified chain of a folder whose community.yaml is its newest version."""
    _, data = load_community_dir(directory, require_signatures=False)
    return verify_folder(directory, data)
