"""The community file as the read side trusts it: checked like `mutualmesh community check`.

The admin keys in community.yaml decide which records count as verified, so a file anyone
edited must not be believed: its structure is checked, k of its admins must have signed it, and
when it sits in a community folder the trust/ chain (and this admin's pin) must show that the
admins trusted before agreed to it. Signed revocations in the folder's `revocations/` are read
too, so a revoked key is refused even when no broker carries its revocation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import UserError
from meshd.codec import DEFAULT_LIMITS
from meshd.community import Community, review_community
from meshd.errors import Problem

COMMUNITY_ENV = "MUTUALMESH_COMMUNITY"
TRUST_DIR = "trust"
REVOCATIONS_DIR = "revocations"


@dataclass(frozen=True)
class CommunityFile:
    """A community the read side may trust, with what its folder adds."""

    community: Community
    path: str
    revocations: tuple[bytes, ...] = ()
    chain_checked: bool = False
    notes: tuple[str, ...] = field(default=())


def _problems_error(problems: tuple[Problem, ...] | list[Problem], path: str) -> UserError:
    lines = "; ".join(f"{p.path}: {p.message} ({p.fix})" for p in problems)
    return UserError(
        f"the community file is invalid: {lines}",
        where=path,
        fix=f"run `mutualmesh community check {path}` to list every problem",
    )


def _check_folder(folder: Path, data: Any, community: Community) -> tuple[bool, tuple[str, ...]]:
    """The trust/ chain and this admin's pin, as `community check` verifies them."""
    from provisioning.community import load_pin, verify_folder

    if (folder / TRUST_DIR).is_dir():
        verify_folder(folder, data)
        return True, ()
    pin = load_pin(community.name)
    if pin is not None:
        admins = tuple(sorted(a.key.text for a in community.admins))
        if admins != tuple(sorted(pin.admins)) or community.threshold != pin.threshold:
            raise UserError(
                f"the admins or threshold differ from version {pin.version} of community "
                f"{community.name!r} that this machine trusts, and no trust/ chain shows they "
                "agreed to the change",
                where=str(folder / "community.yaml"),
                fix="use the community.yaml inside its community folder (with trust/)",
            )
    return False, ("no trust/ chain next to the community file: only its signatures are checked",)


def _revocations(folder: Path) -> tuple[bytes, ...]:
    """Signed revocations kept in the folder; the store checks each one's admin signatures."""
    found = []
    for path in sorted((folder / REVOCATIONS_DIR).glob("*.json")):
        try:
            if path.stat().st_size <= DEFAULT_LIMITS.max_bytes:
                found.append(path.read_bytes())
        except OSError:
            continue
    return tuple(found)


def load_community(path: str | None) -> CommunityFile:
    """The community's trust anchors, from --community or $MUTUALMESH_COMMUNITY."""
    path = path or os.environ.get(COMMUNITY_ENV)
    if not path:
        raise UserError(
            "no community file given: records cannot be verified without the admins' keys",
            fix=f"pass --community community.yaml or set {COMMUNITY_ENV}",
        )
    from provisioning.community import load_yaml

    data = load_yaml(Path(path))  # read as `community check` reads it
    review = review_community(data, require_signatures=True)
    if review.problems or review.community is None:
        raise _problems_error(review.problems, path)
    folder = Path(path).parent
    checked, notes = _check_folder(folder, data, review.community)
    return CommunityFile(review.community, path, _revocations(folder), checked, notes)
