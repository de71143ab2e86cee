"""The node workflows behind `mutualmesh node ...`: enroll, render, list and revoke routers.

Each function checks everything before it writes anything, and leaves no partial files when a
write fails, so a failed command can simply be run again. The community's own workflows (init,
admins, signing) are in provisioning.governance and re-exported here for the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshd import validate as v
from meshd.community import Community
from meshd.ids import SigningKey
from meshd.trust import Enrollment, Revocation, Trust
from provisioning import bundle
from provisioning.addresses import AddressPlan, PoolFull
from provisioning.community import (
    COMMUNITY_FILE,
    NODES_FILE,
    ProvisionError,
    load_chain,
    load_community_dir,
    load_passphrase,
    write_text_atomic,
)
from provisioning.governance import (
    Signed,
    add_admin,
    admin_for,
    adopt_community,
    default_admin_key,
    init_community,
    load_admin_key,
    read_ssh_keys,
    sign_community,
    trusted_chain,
)
from provisioning.keys import KeyFileError, load_private_key, write_private_key
from provisioning.nodes import MAX_UPLINK_KBIT, NodeEntry, Registry
from provisioning.profiles import DeviceProfile, lookup
from provisioning.render import BundleFile, image_packages, render_node
from provisioning.trustchain import Pin

CERT_DAYS = 5 * 365


def _check_hostname(hostname: str) -> str:
    try:
        return v.hostname(hostname, "hostname")
    except v.Invalid:
        raise ProvisionError(
            f"invalid hostname {hostname!r}",
            "HOSTNAME",
            "use 1-63 lowercase letters, digits and inner hyphens, e.g. bakery-roof",
        ) from None


def check_profile(model: str) -> DeviceProfile:
    profile = lookup(model)
    why = profile.why_not()
    if why:
        raise ProvisionError(
            why,
            "--model",
            "pick a router whose budget is ok or experimental in `mutualmesh node models`",
        )
    return profile


@dataclass(frozen=True, slots=True)
class Built:
    node: NodeEntry
    profile: DeviceProfile
    files: dict[str, BundleFile]
    tarball: bytes
    tar_path: Path
    tree_path: Path
    packages: list[str]


def _stage_outputs(
    out: Path, hostname: str, files: dict[str, BundleFile], tarball: bytes
) -> tuple[Path, Path]:
    """Write the bundle next to its final place; nothing is visible under the final names yet."""
    try:
        # Bundles hold node keys and the mesh passphrase: owner only, from the first byte.
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(out, 0o700)
        tmp_tar = out / f".{hostname}.tar.gz.tmp-{os.getpid()}"
        tmp_tree = out / f".{hostname}.tmp-{os.getpid()}"
        shutil.rmtree(tmp_tree, ignore_errors=True)
        tmp_tar.unlink(missing_ok=True)
        fd = os.open(tmp_tar, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(tarball)
        bundle.write_tree(tmp_tree, files)
    except OSError as exc:
        raise ProvisionError(
            f"cannot write the output ({exc.strerror})",
            str(exc.filename or out),
            "pass --out pointing to a writable folder",
        ) from None
    return tmp_tar, tmp_tree


def _publish_outputs(out: Path, hostname: str, tmp_tar: Path, tmp_tree: Path) -> tuple[Path, Path]:
    tar_path, tree_path = out / f"{hostname}.tar.gz", out / hostname
    os.replace(tmp_tar, tar_path)
    bundle.replace_tree(tree_path, tmp_tree)
    return tar_path, tree_path


def add_node(
    directory: Path,
    hostname: str,
    *,
    model: str,
    gateway: bool,
    location: tuple[float, float] | None,
    admin_key_path: Path,
    out: Path | None,
    now: int,
    replace: bool = False,
    uplink_kbit: int | None = None,
) -> Built:
    """Enroll a new node. `replace` gives the hostname of a revoked node to a new key.

    A revoked node keeps its entry, key and address slot: its signed records may still
    circulate until they expire, so nobody else may appear at its addresses. Its hostname can
    be reused only explicitly (`replace`): the old entry moves to `retired` in nodes.yaml, its
    revocation and key files get its node id in their names, and the new node gets a new key
    and a new slot.
    """
    hostname = _check_hostname(hostname)
    profile = check_profile(model)
    if uplink_kbit is not None and not gateway:
        raise ProvisionError(
            "--uplink-kbit is the uplink a gateway shares",
            "--uplink-kbit",
            "add --gateway, or drop it",
        )
    if uplink_kbit is not None and not 1 <= uplink_kbit <= MAX_UPLINK_KBIT:
        raise ProvisionError(
            f"{uplink_kbit} kbit/s is outside 1..{MAX_UPLINK_KBIT}",
            "--uplink-kbit",
            "give the uplink's upload rate in kbit/s, e.g. 40000 for 40 Mbit/s",
        )
    community, data = load_community_dir(directory)
    plan = AddressPlan(community.ipv4, community.ipv6)
    registry = Registry.load(directory, plan)
    key_path = directory / "secrets" / f"{hostname}.key"
    retiring: NodeState | None = None
    if hostname in registry.nodes:
        state = node_state(directory, registry.nodes[hostname], community.trust)
        if state.state != "revoked":
            raise ProvisionError(
                f"a node called {hostname!r} already exists"
                + (f" ({state.state}: {state.detail})" if state.detail else ""),
                str(directory / NODES_FILE),
                "finish the revocation first (k admins run `mutualmesh node revoke`), then "
                "pick a new hostname or pass --replace"
                if state.state == "revoking"
                else "pick another hostname, or render the existing one with "
                "`mutualmesh node render`"
                + ("; --replace is only for revoked nodes" if replace else ""),
            )
        if not replace:
            raise ProvisionError(
                f"{hostname!r} was revoked; its address slot stays reserved while its old "
                "signed records may still circulate",
                str(directory / NODES_FILE),
                f"pick a new hostname (e.g. {hostname}-2), or pass --replace to give "
                f"{hostname!r} to a new key and new addresses (the revoked entry is kept)",
            )
        retiring = state
    elif replace:
        raise ProvisionError(
            f"no node called {hostname!r} to replace",
            str(directory / NODES_FILE),
            "drop --replace to add a new node",
        )
    if key_path.exists() and retiring is None:
        raise ProvisionError(
            "a key file for this hostname exists but the node is not in nodes.yaml",
            str(key_path),
            "remove the stale key file (left by an interrupted run) and try again",
        )
    admin = admin_for(directory, admin_key_path, community.trust.admins)
    node_key = SigningKey.generate()
    try:
        addresses = plan.allocate(node_key.public.raw, registry.used_slots())
    except PoolFull as exc:
        raise ProvisionError(
            exc.what,
            f"{directory / COMMUNITY_FILE}: {exc.where}",
            "widen ipv4.prefix (e.g. a /15) and have the admins sign again, "
            "or remove nodes that are gone from nodes.yaml",
        ) from None
    cert = Enrollment.issue(
        admin,
        community=community.name,
        hostname=hostname,
        key=node_key.public,
        expires=now + CERT_DAYS * 86400,
    )
    node = NodeEntry(
        hostname, node_key.public, profile.profile, gateway, location, addresses, cert, uplink_kbit
    )
    moves: list[tuple[Path, Path]] = []
    if retiring is not None:
        old = registry.retire(hostname)
        moves = [
            (revocation_file(directory, old), revocation_file(directory, old, retired=True)),
            (key_path, directory / "secrets" / f"{hostname}-{old.node_id}.key"),
        ]
    registry.add(node)
    passphrase = load_passphrase(directory, community)
    files = render_node(
        community, data, node, node_key, profile, Pin.of(load_chain(directory)), passphrase
    )
    tarball = bundle.tar_gz(files)
    out = out or directory / "build"
    tmp_tar, tmp_tree = _stage_outputs(out, hostname, files, tarball)
    wrote_key = False
    moved: list[tuple[Path, Path]] = []
    try:
        for src, dst in moves:
            if src.exists():
                os.replace(src, dst)
                moved.append((src, dst))
        write_private_key(key_path, node_key)
        wrote_key = True
        write_text_atomic(directory / NODES_FILE, registry.to_yaml())
        tar_path, tree_path = _publish_outputs(out, hostname, tmp_tar, tmp_tree)
    except (OSError, KeyFileError) as exc:
        tmp_tar.unlink(missing_ok=True)
        shutil.rmtree(tmp_tree, ignore_errors=True)
        if wrote_key:
            key_path.unlink(missing_ok=True)
        for src, dst in reversed(moved):
            os.replace(dst, src)
        raise ProvisionError(
            f"cannot save the node ({exc})", str(directory), "check the folder is writable"
        ) from None
    return Built(
        node, profile, files, tarball, tar_path, tree_path, image_packages(community, node)
    )


def _stored_node(
    directory: Path, hostname: str
) -> tuple[str, Community, dict[str, Any], NodeEntry]:
    """The folder's checked community (parsed and raw) and its node called `hostname`."""
    hostname = _check_hostname(hostname)
    community, data = load_community_dir(directory)
    registry = Registry.load(directory, AddressPlan(community.ipv4, community.ipv6))
    node = registry.nodes.get(hostname)
    if node is None:
        raise ProvisionError(
            f"no node called {hostname!r}",
            str(directory / NODES_FILE),
            "check the name (`mutualmesh node list`), or create it with `mutualmesh node add`",
        )
    return hostname, community, data, node


def render_stored(directory: Path, hostname: str, out: Path | None = None) -> Built:
    """Render an existing node again from what is stored; same inputs give the same bytes."""
    hostname, community, data, node = _stored_node(directory, hostname)
    profile = check_profile(node.model)
    key_path = directory / "secrets" / f"{hostname}.key"
    node_key = load_private_key(key_path)
    try:
        files = render_node(
            community,
            data,
            node,
            node_key,
            profile,
            Pin.of(load_chain(directory)),
            load_passphrase(directory, community),
        )
    except ValueError as exc:
        raise ProvisionError(
            str(exc), str(key_path), "restore the node's key from backup"
        ) from None
    tarball = bundle.tar_gz(files)
    out = out or directory / "build"
    tmp_tar, tmp_tree = _stage_outputs(out, hostname, files, tarball)
    tar_path, tree_path = _publish_outputs(out, hostname, tmp_tar, tmp_tree)
    return Built(
        node, profile, files, tarball, tar_path, tree_path, image_packages(community, node)
    )


@dataclass(frozen=True, slots=True)
class NodeState:
    """A registry entry and whether admins revoked it (from its file under revocations/)."""

    node: NodeEntry
    state: str  # "active", "revoking" (signed by fewer than k admins so far) or "revoked"
    detail: str = ""
    retired: bool = False  # revoked and its hostname given to a new key


def revocation_file(directory: Path, node: NodeEntry, *, retired: bool = False) -> Path:
    name = f"{node.hostname}-{node.node_id}" if retired else node.hostname
    return directory / "revocations" / f"{name}.json"


def node_state(
    directory: Path, node: NodeEntry, trust: Trust, *, retired: bool = False
) -> NodeState:
    path = revocation_file(directory, node, retired=retired)
    if not path.exists():
        if retired:
            return NodeState(node, "revoked", f"replaced; {path.name} missing", retired)
        return NodeState(node, "active")
    try:
        revocation = Revocation.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return NodeState(node, "active", f"unreadable {path.name}: {exc}", retired)
    if revocation.key != node.key:
        return NodeState(node, "active", f"{path.name} is for another key", retired)
    problem = revocation.problem(trust)
    if problem:
        return NodeState(node, "revoking", problem, retired)
    return NodeState(node, "revoked", "replaced" if retired else "", retired)


def list_nodes(directory: Path) -> list[NodeState]:
    """Every node ever enrolled, revoked ones included (their slots stay taken)."""
    community, _ = load_community_dir(directory, require_signatures=False)
    registry = Registry.load(directory, AddressPlan(community.ipv4, community.ipv6))
    states = [node_state(directory, n, community.trust) for n in registry.nodes.values()]
    states += [node_state(directory, n, community.trust, retired=True) for n in registry.retired]
    return sorted(states, key=lambda s: (s.node.hostname, s.retired, s.node.addresses.slot))


def revoke_node(
    directory: Path,
    hostname: str,
    *,
    admin_key_paths: Sequence[Path],
    reason: str,
    now: int,
) -> tuple[Path, Revocation, str | None]:
    """Write or co-sign revocations/<host>.json; returns it and why it is not yet valid (if so)."""
    hostname, community, _, node = _stored_node(directory, hostname)
    admins = [admin_for(directory, p, community.trust.admins) for p in admin_key_paths]
    path = directory / "revocations" / f"{hostname}.json"
    if path.exists():
        try:
            revocation = Revocation.from_json(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise ProvisionError(
                f"cannot read the existing revocation ({exc})",
                str(path),
                "remove it and revoke again",
            ) from None
        have = {s.get("admin") for s in revocation.sigs}
        for admin in admins:
            if admin.public.text not in have:
                revocation = revocation.add_signature(admin)
    else:
        revocation = Revocation.issue(
            admins, community=community.name, key=node.key, issued_at=now, reason=reason
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(revocation.to_json(), indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise ProvisionError(
            f"cannot write ({exc.strerror})", str(path), "check the folder is writable"
        ) from None
    return path, revocation, revocation.problem(community.trust)


__all__ = [
    "Built",
    "NodeState",
    "Signed",
    "add_admin",
    "add_node",
    "adopt_community",
    "default_admin_key",
    "image_packages",
    "init_community",
    "list_nodes",
    "load_admin_key",
    "node_state",
    "read_ssh_keys",
    "render_stored",
    "revoke_node",
    "sign_community",
    "trusted_chain",
]
