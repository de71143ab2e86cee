"""The community folder: community.yaml (signed by k admins), nodes.yaml, revocations, secrets.

Layout (the folder can live in git; `secrets/` and `build/` are git-ignored):

    community.yaml          radio, addresses, routing, admins, threshold, signatures
    trust/NNNNNN.json       every accepted version, each signed by k admins of the one before
    trust/pending.json      a proposed change collecting those signatures
    nodes.yaml              the node registry: keys, slots, addresses, enrollment certificates;
                            `retired:` revoked nodes whose hostname went to a new key
    revocations/<host>.json signed revocations, ready for `mutualmesh publish`
                            (<host>-<node_id>.json once the hostname is reused)
    secrets/<host>.key      node private keys (0600), so bundles can be rendered again
    build/<host>/           Image Builder FILES= folder; build/<host>.tar.gz the same as a bundle

community.yaml is trusted only when it is the newest version of the trust/ chain (see
provisioning.trustchain): its own signatures show the listed admins agree, the chain shows the
admins trusted *before* agreed to the change. The admin CLI pins each community's genesis and
newest verified version under ~/.config/mutualmesh/pins/ (override the folder with
MUTUALMESH_CONFIG_DIR), like ssh's known_hosts, so a rewritten or rolled-back folder is refused.

A revoked node is never deleted: its signed records may circulate until they expire, so its key
and address slot stay taken for good (`node list` shows it as revoked). Its hostname is reused
only with `node add HOST --replace`, which retires the old entry and enrolls a new key at new
addresses; without it, `node add` says to pick a new hostname or pass --replace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from meshd.community import Community, parse_community, review_community
from meshd.errors import CommunityError, FixableError
from meshd.ids import SigningKey
from meshd.trust import admin_signature, community_message
from meshd.validate import Invalid
from node_agent.fsutil import atomic_write
from provisioning.trustchain import ChainError, Pin, Version, check_pin, match_content, verify_chain

COMMUNITY_FILE = "community.yaml"
NODES_FILE = "nodes.yaml"
TRUST_DIR = "trust"
PENDING_FILE = "pending.json"
GITIGNORE = "secrets/\nbuild/\n"
#: The 802.11s SAE passphrase: a secret, so in secrets/ (git-ignored, 0600), not community.yaml.
PASSPHRASE_FILE = "secrets/sae-passphrase"  # noqa: S105 (a path, not a password)
CONFIG_ENV = "MUTUALMESH_CONFIG_DIR"

# Second octets of 10.x.0.0/16 seen often at home, in VPNs and in container platforms
# (Apple/ISP routers 10.0/10.1, Comcast 10.1.10, OpenVPN 10.8, k3s 10.42/10.43, Kubernetes
# 10.96-10.111, flannel 10.244, and round numbers people pick by hand).
AVOID_SECOND_OCTET = frozenset(
    {
        0,
        1,
        2,
        3,
        4,
        5,
        8,
        9,
        10,
        11,
        12,
        20,
        42,
        43,
        50,
        88,
        99,
        100,
        101,
        123,
        128,
        200,
        244,
        250,
        253,
        254,
        255,
    }
    | set(range(96, 112))
)
CHANNELS_2G = (1, 6, 11)


class ProvisionError(FixableError):
    """Something the admin must fix in a community folder or node plan (what, where, fix)."""

    where: str
    fix: str

    def __init__(self, what: str, where: str, fix: str) -> None:
        super().__init__(what, where, fix)
        self.args = (f"{where}: {what}",)


def ipv4_prefix_for(name: str) -> ipaddress.IPv4Network:
    """A /16 inside 10/8 picked by a hash of the name, skipping ranges people already use."""
    digest = hashlib.sha256(b"mutualmesh-ipv4\0" + name.encode()).digest()
    candidates = [o for o in range(256) if o not in AVOID_SECOND_OCTET]
    octet = candidates[int.from_bytes(digest[:4], "big") % len(candidates)]
    return ipaddress.IPv4Network(f"10.{octet}.0.0/16")


def random_ula() -> ipaddress.IPv6Network:
    """RFC 4193: fd00::/8 plus a 40-bit random global id gives a /48."""
    global_id = secrets.token_bytes(5)
    return ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 48))


def write_secret(path: Path, text: str) -> None:
    """Write a secret file 0600 from the first byte (its folder 0700), atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"), 0o600)


def load_passphrase(directory: Path, community: Community) -> str:
    """The mesh passphrase: secrets/sae-passphrase, or (older folders) community.yaml's."""
    path = directory / PASSPHRASE_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if community.sae_passphrase:
            return community.sae_passphrase
        raise ProvisionError(
            "the mesh passphrase is missing",
            str(path),
            "restore secrets/ from your backup (nodes of this community use that passphrase)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisionError(
            f"cannot read the mesh passphrase ({exc})", str(path), "restore it from a backup"
        ) from None
    if not 8 <= len(text) <= 63 or not all(" " <= ch <= "~" for ch in text):
        raise ProvisionError(
            "the mesh passphrase must be 8-63 printable ASCII characters",
            str(path),
            "restore it from a backup",
        )
    return text


def random_passphrase(length: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_community(
    name: str,
    *,
    admin_name: str,
    admin_key: SigningKey,
    country: str,
    routing: str = "babel",
    ssh_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A fresh, signed community mapping, with no secret in it (community.yaml is shared).

    The mesh passphrase is drawn by random_passphrase() and kept in secrets/ (PASSPHRASE_FILE).
    """
    digest = hashlib.sha256(b"mutualmesh-channel\0" + name.encode()).digest()
    data: dict[str, Any] = {
        "name": name,
        "mesh_id": name,
        "radio": {
            "country": country,
            "bands": {
                "2g": {"channel": CHANNELS_2G[digest[0] % 3], "htmode": "HT20"},
                # 36-48 is one 80 MHz block without DFS radar waits, allowed nearly everywhere.
                "5g": {"channel": 36, "htmode": "VHT80"},
            },
        },
        "ipv4": {"prefix": str(ipv4_prefix_for(name))},
        "ipv6": {"prefix": str(random_ula())},
        "routing": {"protocol": routing},
        "mqtt": {"port": 1883},
        "admins": [
            {"name": admin_name, "key": admin_key.public.text}
            | ({"ssh_keys": list(ssh_keys)} if ssh_keys else {})
        ],
        "threshold": 1,
        "contribution": {
            "base_share": 0.5,
            "consumption_share": 0.5,
            "relay_weight": 1.0,
            "gateway_weight": 2.0,
            "uptime_weight": 0.5,
        },
        "signatures": [],
    }
    return sign(data, admin_key)


def sign(data: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Add (or refresh) this admin's signature; other admins' signatures are kept as they are."""
    message = community_message(data)
    others = [
        s
        for s in data.get("signatures") or []
        if not (isinstance(s, dict) and s.get("admin") == key.public.text)
    ]
    return {**data, "signatures": [*others, admin_signature(key, message)]}


def check(data: Any, *, require_signatures: bool = False) -> Community:
    """`review_community` as an exception: the community, or CommunityError with every problem."""
    review = review_community(data, require_signatures=require_signatures)
    if review.problems or review.community is None:
        raise CommunityError(list(review.problems))
    return review.community


def load_yaml(path: Path) -> Any:
    """Read a YAML file, turning every failure into what/where/fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _file_error(
            path, "file not found", "check the path, or create one with `mutualmesh community init`"
        ) from None
    except IsADirectoryError:
        raise _file_error(
            path, "is a directory", f"point to the file inside it, e.g. {path / COMMUNITY_FILE}"
        ) from None
    except OSError as exc:
        raise _file_error(path, f"cannot read ({exc})", "check permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _file_error(
            path,
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
            "save the file as UTF-8 (files written by `mutualmesh community init` are)",
        ) from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise _file_error(
            path, "YAML nested too deeply", "a community file needs a few levels at most"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProvisionError(
            f"YAML syntax error: {problem}",
            where,
            "fix the YAML at that line (indentation, a missing colon or quote)",
        ) from None


def _file_error(path: Path, what: str, fix: str) -> ProvisionError:
    return ProvisionError(what, str(path), fix)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file completely or not at all."""
    atomic_write(path, text.encode("utf-8"), mode)


def config_dir() -> Path:
    """The admin's own folder (keys, pins): never inside a community folder."""
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else Path.home() / ".config" / "mutualmesh"


def pin_path(community: str) -> Path:
    return config_dir() / "pins" / f"{community}.json"


def chain_error(exc: ChainError, directory: Path) -> ProvisionError:
    return ProvisionError(exc.what, str(directory / exc.where), exc.fix)


def version_path(directory: Path, version: int) -> Path:
    return directory / TRUST_DIR / f"{version:06d}.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvisionError(
            f"cannot read ({exc})", str(path), "restore it from git history"
        ) from None


def load_chain(directory: Path) -> list[Version]:
    """Every trust/NNNNNN.json in order; gaps and malformed files are errors."""
    folder = directory / TRUST_DIR
    if not folder.is_dir():
        raise ProvisionError(
            "no trust/ chain: nothing shows which admins accepted this community file",
            str(folder),
            "for a folder made before trust chains: `mutualmesh community adopt --dir DIR "
            "--admin-key KEY` (k admins); otherwise restore trust/ from git",
        )
    names = sorted(p.name for p in folder.glob("[0-9]*.json"))
    chain = []
    for i, name in enumerate(names):
        path = folder / name
        if name != f"{i + 1:06d}.json":
            raise ProvisionError(
                f"unexpected file in the chain (expected {i + 1:06d}.json)",
                str(path),
                "restore trust/ from git history",
            )
        try:
            chain.append(Version.from_json(_read_json(path), name))
        except Invalid as exc:
            raise ProvisionError(str(exc), str(path), "restore it from git history") from None
    return chain


def load_pending(directory: Path) -> Version | None:
    path = directory / TRUST_DIR / PENDING_FILE
    if not path.exists():
        return None
    try:
        return Version.from_json(_read_json(path), PENDING_FILE)
    except Invalid:
        return None  # a damaged proposal is simply proposed again


def write_version(path: Path, version: Version) -> None:
    write_text_atomic(path, json.dumps(version.to_json(), indent=2, sort_keys=True) + "\n")


def load_pin(community: str) -> Pin | None:
    path = pin_path(community)
    if not path.exists():
        return None
    try:
        return Pin.from_json(_read_json(path))
    except Invalid as exc:
        raise ProvisionError(
            f"damaged pin ({exc})", str(path), "remove it; it is recreated on next use"
        ) from None


def save_pin(pin: Pin) -> None:
    """Remember the newest verified version; best effort (a read-only home only loses TOFU)."""
    path = pin_path(pin.community)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_text_atomic(path, json.dumps(pin.to_json(), indent=2, sort_keys=True) + "\n")
    except OSError:
        pass


def verify_folder(
    directory: Path, data: Mapping[str, Any], *, genesis: str | None = None
) -> list[Version]:
    """Chain valid, community.yaml its newest version, no older than what this admin pinned."""
    chain = load_chain(directory)
    try:
        verify_chain(chain)
        match_content(chain, data, where=COMMUNITY_FILE)
        if chain[0].community != data.get("name"):
            raise ChainError(TRUST_DIR, f"is for community {chain[0].community!r}", "restore it")
        pinned = load_pin(chain[0].community)
        if genesis is not None and genesis != chain[0].fingerprint:
            raise ChainError(
                TRUST_DIR,
                f"genesis is {chain[0].fingerprint}, not the expected {genesis}",
                "get the community folder from an admin you trust",
            )
        if pinned is not None:
            try:
                check_pin(chain, pinned, where=TRUST_DIR)
            except ChainError as exc:
                raise ChainError(
                    exc.where,
                    exc.what,
                    f"{exc.fix}; if this is really another community of the same name, "
                    f"remove {pin_path(pinned.community)}",
                ) from None
    except ChainError as exc:
        raise chain_error(exc, directory) from None
    if pinned is None or pinned.version < len(chain):
        save_pin(Pin.of(chain))
    return chain


def load_community_dir(
    directory: Path, *, require_signatures: bool = True
) -> tuple[Community, dict[str, Any]]:
    """The checked community of a folder and its raw mapping (kept for re-signing).

    With require_signatures the file must also be the newest version of the trust/ chain.
    """
    path = directory / COMMUNITY_FILE
    if not directory.is_dir():
        raise ProvisionError(
            "community folder not found",
            str(directory),
            "pass --dir pointing to a folder made by `mutualmesh community init`",
        )
    data = load_yaml(path)
    try:
        # Without require_signatures only the structure is checked: signing and adding admins
        # must work on a file that does not have its k signatures yet.
        community = (
            check(data, require_signatures=True) if require_signatures else parse_community(data)
        )
    except CommunityError as exc:
        first = exc.problems[0]
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        raise ProvisionError(
            f"{first.path}: {first.message}{more}",
            str(path),
            f"{first.fix}; run `mutualmesh community check {path}` to list every problem",
        ) from None
    if require_signatures:
        verify_folder(directory, data)
    return community, data
