"""The router's pin of its community: refuse a community file the pinned admins did not authorise.

The community file lists its own admins, so whoever can write /etc/meshd/community.json could
name themselves admin and sign it alone. The node bundle therefore carries /etc/meshd/trust.json,
a `provisioning.trustchain.Pin` (genesis fingerprint, pinned version, its admins and k). At start
the community file must be one of:

- with the chain (`trust/000001.json`… next to the community file, as in the admins' community
  folder): the newest version of a chain that verifies, starts at the pinned genesis, passes the
  pinned version without forking, and whose newest statement covers this exact file — so a newer
  version signed by k of the admins trusted before it is accepted;
- without the chain: the pinned version's admin set and k, with k valid signatures of those
  admins over this file (for a version 1 pin the file must also be the pinned genesis itself).
  An older file with the same admins cannot be told apart without the chain.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from meshd import validate as v
from meshd.community import Community
from meshd.errors import FixableError
from meshd.trust import community_message, valid_signers
from meshd.trustchain import (
    ChainError,
    Pin,
    Version,
    check_pin,
    match_content,
    propose,
    verify_chain,
)
from node_agent.config import one_line

CHAIN_DIR = "trust"
SAVED_PIN = "trust-pin.json"  # in the agent's state dir: the newest version this router accepted
BUNDLE_FIX = "copy trust.json and community.json from this node's bundle (`mutualmesh node push`)"


class TrustError(FixableError):
    """The community file is not authorised by the pin: what, where (which file), and fix."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None) -> None:
        super().__init__(what, where, fix)
        self.args = (one_line(self),)


def load_pin(path: Path) -> Pin:
    try:
        raw = json.loads(path.read_bytes())
    except OSError as exc:
        raise TrustError(f"cannot read ({exc.strerror})", str(path), BUNDLE_FIX) from None
    except ValueError as exc:
        raise TrustError(f"not valid JSON ({exc})", str(path), BUNDLE_FIX) from None
    try:
        return Pin.from_json(raw, path.name)
    except v.Invalid as exc:
        raise TrustError(str(exc), str(path), BUNDLE_FIX) from None


def load_chain(folder: Path) -> list[Version] | None:
    """The statements in `folder` (000001.json, …) in order; None when there are none."""
    if not folder.is_dir():
        return None
    names = sorted(p.name for p in folder.glob("[0-9]" * 6 + ".json"))
    chain = []
    for i, name in enumerate(names):
        path = folder / name
        if name != f"{i + 1:06d}.json":
            raise TrustError(
                f"unexpected in the chain (expected {i + 1:06d}.json)",
                str(path),
                f"copy {CHAIN_DIR}/ from the community folder",
            )
        try:
            chain.append(Version.from_json(json.loads(path.read_bytes()), name))
        except (OSError, ValueError) as exc:  # v.Invalid is a ValueError
            raise TrustError(
                str(exc), str(path), f"copy {CHAIN_DIR}/ from the community folder"
            ) from None
    return chain or None


def effective_pin(trust_file: Path, state_dir: Path | None) -> Pin:
    """The bundle's pin, or the newer one this router saved after accepting a newer version of
    the same genesis: the pin only moves forward (once v2 is accepted, v1 never is again)."""
    pin = load_pin(trust_file)
    if state_dir is None or not (state_dir / SAVED_PIN).exists():
        return pin
    try:
        saved = load_pin(state_dir / SAVED_PIN)
    except TrustError:
        return pin  # a damaged copy: the bundle's pin still holds
    same = saved.genesis == pin.genesis and saved.community == pin.community
    return saved if same and saved.version > pin.version else pin


def save_pin(state_dir: Path, pin: Pin) -> None:
    from node_agent.fsutil import atomic_write

    atomic_write(state_dir / SAVED_PIN, json.dumps(pin.to_json(), sort_keys=True).encode())


def check_community(
    trust_file: Path,
    community_file: Path,
    data: Mapping[str, Any],
    community: Community,
    state_dir: Path | None = None,
) -> str:
    """Raise TrustError unless the pin authorises `data` (the parsed `community_file`).

    With `state_dir`, a newer accepted version is saved there and becomes the pin from then on.
    Returns what was verified, for the log.
    """
    pin = effective_pin(trust_file, state_dir)
    if pin.community != community.name:
        raise TrustError(
            f"community {community.name!r}, but {trust_file} pins {pin.community!r}",
            str(community_file),
            BUNDLE_FIX,
        )
    folder = community_file.parent / CHAIN_DIR
    chain = load_chain(folder)
    if chain is not None:
        try:
            verify_chain(chain, where=f"{folder}/")
            check_pin(chain, pin, where=f"{folder}/")
            head = match_content(chain, data, where=str(community_file))
        except ChainError as exc:
            raise TrustError(exc.what, exc.where, exc.fix) from None
        if state_dir is not None and head.version > pin.version:
            try:
                save_pin(state_dir, Pin.of(chain[: head.version]))
            except OSError as exc:
                raise TrustError(
                    f"cannot save the new pin ({exc.strerror})",
                    str(state_dir / SAVED_PIN),
                    "check the state directory is writable",
                ) from None
        return f"version {head.version} of the chain from the pinned genesis (pin: {pin.version})"
    return _check_without_chain(pin, trust_file, community_file, data, community)


def _check_without_chain(
    pin: Pin, trust_file: Path, community_file: Path, data: Mapping[str, Any], community: Community
) -> str:
    newer = (
        f"a community file newer than the pinned version {pin.version} needs its chain: "
        f"copy {CHAIN_DIR}/ from the community folder next to {community_file}"
    )
    if pin.version == 1:
        try:
            genesis = propose(data, None).fingerprint
        except (KeyError, TypeError, ValueError):
            genesis = ""
        if genesis == pin.genesis == pin.fingerprint:
            return "the pinned genesis itself"
        raise TrustError(
            f"is not the pinned version 1 of {trust_file}",
            str(community_file),
            f"{newer}, or {BUNDLE_FIX}",
        )
    if not pin.admins:
        raise TrustError("names no admins, and there is no chain", str(trust_file), newer)
    admins = tuple(sorted(a.key.text for a in community.admins))
    if admins != pin.admins or community.threshold != pin.threshold:
        raise TrustError(
            f"admins or threshold differ from version {pin.version} pinned in {trust_file}",
            str(community_file),
            newer,
        )
    try:
        message = community_message(data)
    except (TypeError, ValueError):
        message = b""
    signers = valid_signers(message, data.get("signatures") or [], community.trust.admins)
    if len(signers) < pin.threshold:
        raise TrustError(
            f"{len(signers)} valid signature(s) of the pinned admins, {pin.threshold} needed",
            str(community_file),
            BUNDLE_FIX,
        )
    return f"signed by {len(signers)} of the admins of pinned version {pin.version}"
