"""`mutualmesh node`: add, render, image, push, revoke routers; works offline."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import click

from cli.errors import ExitStatus, UserError
from provisioning.nodes import parse_location
from provisioning.profiles import PROFILES
from provisioning.workflow import (
    Built,
    add_node,
    default_admin_key,
    list_nodes,
    render_stored,
    revoke_node,
)

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="The community folder.",
)
OUT_OPTION = click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where bundles go [default: DIR/build].",
)


def _admin_key(directory: Path, admin_key: Path | None) -> Path:
    if admin_key is not None:
        return admin_key
    from provisioning.community import load_community_dir

    community, _ = load_community_dir(directory, require_signatures=False)
    return default_admin_key(community.name)


@click.group()
def node() -> None:
    """Add, render, image, push and revoke routers."""


def _report(built: Built, verb: str) -> None:
    n = built.node
    a = n.addresses
    gateway = ""
    if n.gateway:
        gateway = f", gateway ({n.uplink_kbit} kbit/s)" if n.uplink_kbit else ", gateway"
    click.echo(f"{verb} {n.hostname} ({n.node_id}), {built.profile.name}{gateway}")
    click.echo(f"  router {a.ipv4} / {a.ipv6}; clients {a.ipv4_client} / {a.ipv6_client}")
    click.echo(f"  bundle {built.tar_path}")
    click.echo(f"  Image Builder FILES= folder {built.tree_path}")
    budget = built.profile.budget
    if budget.status == "experimental":
        click.echo(f"  warning: {built.profile.profile} is experimental: {budget.reason}")


@node.command()
@click.argument("hostname")
@click.option("--model", required=True, help="OpenWrt profile name (see `node models`).")
@click.option("--gateway", is_flag=True, help="This node shares its uplink (WAN) with the mesh.")
@click.option(
    "--uplink-kbit",
    type=int,
    default=None,
    help="With --gateway: the uplink's rate it shares, in kbit/s (announced as gateway_kbit).",
)
@click.option("--location", default=None, help="LAT,LON (shared only if you opt in).")
@click.option(
    "--admin-key",
    type=click.Path(path_type=Path),
    default=None,
    help="Admin private key [default: ~/.config/mutualmesh/admin-COMMUNITY.key].",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Give the hostname of a revoked node to a new key and new addresses "
    "(the revoked entry and its address slot are kept).",
)
@DIR_OPTION
@OUT_OPTION
def add(
    hostname: str,
    model: str,
    gateway: bool,
    uplink_kbit: int | None,
    location: str | None,
    admin_key: Path | None,
    replace: bool,
    directory: Path,
    out: Path | None,
) -> None:
    """Enroll HOSTNAME: key pair, certificate, addresses and its OpenWrt configuration.

    A revoked node's hostname is not reused silently: its address slot stays reserved while
    its old signed records may circulate. Pick a new hostname, or --replace.
    """
    loc = None
    if location is not None:
        try:
            loc = parse_location(location)
        except ValueError as exc:
            raise UserError(
                f"invalid --location {location!r}", where="--location", fix=str(exc)
            ) from None
    key_path = _admin_key(directory, admin_key)
    built = add_node(
        directory,
        hostname,
        model=model,
        gateway=gateway,
        location=loc,
        admin_key_path=key_path,
        out=out,
        now=int(time.time()),
        replace=replace,
        uplink_kbit=uplink_kbit,
    )
    _report(built, "replaced" if replace else "added")
    click.echo(
        f"next: mutualmesh node image {hostname} --dir {directory} "
        "--imagebuilder PATH (or `node push` to a running router)"
    )


@node.command()
@click.argument("hostname")
@DIR_OPTION
@OUT_OPTION
def render(hostname: str, directory: Path, out: Path | None) -> None:
    """Render HOSTNAME's bundle again from the stored files (byte-identical for same inputs)."""
    _report(render_stored(directory, hostname, out), "rendered")


def _json_out(value: object) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _table(rows: list[list[str]], right: frozenset[int] = frozenset()) -> None:
    """Columns as wide as their widest cell; numbers (`right`) aligned right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        click.echo("  ".join(cells).rstrip())


@node.command("list")
@DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(directory: Path, as_json: bool) -> None:
    """List the nodes in nodes.yaml, revoked ones too (their addresses are never reused)."""
    states = list_nodes(directory)
    if as_json:
        _json_out(
            [
                {
                    "hostname": s.node.hostname,
                    "node_id": s.node.node_id,
                    "state": s.state,
                    "detail": s.detail,
                    "retired": s.retired,
                    "gateway": s.node.gateway,
                    "ipv4": str(s.node.addresses.ipv4),
                    "ipv6": str(s.node.addresses.ipv6),
                    "model": s.node.model,
                }
                for s in states
            ]
        )
        return
    for s in states:
        n = s.node
        role = "gateway" if n.gateway else "node"
        detail = f"  ({s.detail})" if s.detail else ""
        click.echo(
            f"{n.hostname:24} {n.node_id} {s.state:8} {role:8} {n.addresses.ipv4!s:15} "
            f"{n.model}{detail}"
        )


_STATUS_ORDER = {"ok": 0, "experimental": 1, "refused": 2}


@node.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(as_json: bool) -> None:
    """Routers we can build for, and each one's flash budget (sizes in KiB; see --json)."""
    profiles = sorted(PROFILES.values(), key=lambda p: (_STATUS_ORDER[p.budget.status], p.profile))
    if as_json:
        _json_out(
            [
                {
                    "profile": p.profile,
                    "name": p.name,
                    "target": f"{p.target}/{p.subtarget}",
                    "bands": list(p.bands),
                    "flash_mb": p.flash_mb,
                    "ram_mb": p.ram_mb,
                    "firmware_kib": p.budget.firmware_kib,
                    "firmware_source": p.firmware_source,
                    "base_kib_estimate": p.budget.base_kib,
                    "packages_kib_estimate": p.budget.packages_kib,
                    "overlay_kib": p.budget.overlay_kib,
                    "status": p.budget.status,
                    "reason": p.budget.reason,
                }
                for p in profiles
            ]
        )
        return
    rows = [
        ["profile", "target", "bands", "flash MB", "RAM MB", "firmware", "base*", "ours*",
         "overlay", "status"],
    ]  # fmt: skip
    for p in profiles:
        b = p.budget
        rows.append(
            [
                p.profile,
                f"{p.target}/{p.subtarget}",
                "+".join(p.bands),
                str(p.flash_mb),
                str(p.ram_mb),
                str(b.firmware_kib),
                str(b.base_kib),
                str(b.packages_kib),
                str(b.overlay_kib),
                b.status,
            ]
        )
    _table(rows, right=frozenset({3, 4, 5, 6, 7, 8}))
    click.echo("")
    click.echo(
        "sizes in KiB; * = estimate (provisioning/budget.py); overlay = firmware - base - ours."
    )
    for p in profiles:
        if p.budget.reason:
            click.echo(f"{p.profile}: {p.budget.status}: {p.budget.reason}")


def _make_command(built: Built) -> list[str]:
    return [
        "make",
        "image",
        f"PROFILE={built.profile.profile}",
        f"PACKAGES={' '.join(built.packages)}",
        f"FILES={built.tree_path.resolve()}",
    ]


@node.command()
@click.argument("hostname")
@click.option(
    "--imagebuilder",
    type=click.Path(path_type=Path),
    default=None,
    help="An unpacked OpenWrt Image Builder for the model's target.",
)
@DIR_OPTION
@OUT_OPTION
def image(hostname: str, imagebuilder: Path | None, directory: Path, out: Path | None) -> None:
    """Build a firmware image for HOSTNAME, or print the exact command without --imagebuilder."""
    built = render_stored(directory, hostname, out)
    cmd = _make_command(built)
    p = built.profile
    if imagebuilder is None:
        click.echo(f"target {p.target}/{p.subtarget}, profile {p.profile} ({p.name})")
        click.echo(f"packages: {' '.join(built.packages)}")
        click.echo(
            "the meshd package must be in the Image Builder's packages/ folder "
            "or a feed in repositories.conf (see openwrt/README.md)"
        )
        click.echo("in the Image Builder folder run:")
        click.echo("  " + shlex.join(cmd))
        return
    if not (imagebuilder / "Makefile").is_file():
        raise UserError(
            "not an OpenWrt Image Builder folder (no Makefile)",
            where=str(imagebuilder),
            fix=f"unpack openwrt-imagebuilder-*-{p.target}-{p.subtarget}"
            ".Linux-x86_64.tar.* and pass its folder",
        )
    click.echo(f"running in {imagebuilder}: {shlex.join(cmd)}")
    result = subprocess.run(cmd, cwd=imagebuilder, check=False)
    if result.returncode != 0:
        raise UserError(
            f"the Image Builder failed (exit {result.returncode})",
            where=str(imagebuilder),
            fix="read its output above; `make info` lists valid profiles",
            status=ExitStatus.ERROR,
        )
    click.echo(f"images are in {imagebuilder / 'bin' / 'targets' / p.target / p.subtarget}")


REMOTE_BUNDLE = "/tmp/meshd-bundle.tar.gz"
# The first part runs in the ssh session; the reloads run detached, because reloading the network
# changes the address this session came in on and dropbear then hangs up on it. The bundle is
# 0600 here, so scp creates it 0600 in /tmp, and tar (as root) gives each file its mode from the
# bundle (secrets 0600); a umask would also strip mosquitto's read access to its own config.
REMOTE_RELOAD = (
    "sleep 2; /etc/init.d/mosquitto restart; /etc/init.d/dropbear restart; reload_config;"
    " wifi reload; /etc/init.d/meshd restart"
)
REMOTE_APPLY = (
    f"tar -xzf {REMOTE_BUNDLE} -C / && rm -f {REMOTE_BUNDLE}"
    " && /etc/uci-defaults/90-meshd-node && rm -f /etc/uci-defaults/90-meshd-node"
    " && sysctl -p /etc/sysctl.d/90-meshd.conf >/dev/null"
    f" && {{ ( {REMOTE_RELOAD} ) </dev/null >/dev/null 2>&1 & }}"
)


@node.command()
@click.argument("hostname")
@click.option("--host", required=True, help="Address of the running OpenWrt router.")
@click.option("--user", default="root", show_default=True)
@click.option("--dry-run", is_flag=True, help="Print what would be done and stop.")
@DIR_OPTION
@OUT_OPTION
def push(
    hostname: str, host: str, user: str, dry_run: bool, directory: Path, out: Path | None
) -> None:
    """Copy HOSTNAME's bundle to a running router over ssh and apply it."""
    built = render_stored(directory, hostname, out)
    target = f"{user}@{host}"
    # OpenWrt's dropbear has no sftp server: -O makes scp use the old protocol.
    steps = [
        ["scp", "-O", str(built.tar_path), f"{target}:{REMOTE_BUNDLE}"],
        ["ssh", target, REMOTE_APPLY],
    ]
    click.echo(f"push {hostname} ({built.node.node_id}) to {target}:")
    for step in steps:
        click.echo("  " + shlex.join(step))
    if dry_run:
        click.echo("dry run: nothing was done")
        return
    for step in steps:
        result = subprocess.run(step, check=False)
        if result.returncode != 0:
            raise UserError(
                f"`{step[0]}` failed (exit {result.returncode})",
                where=target,
                fix="check the address, that ssh works as root, and that the "
                "meshd package is installed",
                status=ExitStatus.UNREACHABLE,
            )
    click.echo(
        "applied; the router now reloads in the background (Wi-Fi and this address drop for a "
        "few seconds; ssh then takes admin keys only)"
    )


@node.command()
@click.argument("hostname")
@click.option(
    "--admin-key",
    "admin_keys",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Admin private key; repeat for k admins, or run once per admin.",
)
@click.option("--reason", default="revoked by admins", show_default=True)
@DIR_OPTION
def revoke(hostname: str, admin_keys: tuple[Path, ...], reason: str, directory: Path) -> None:
    """Write a signed revocation for HOSTNAME to revocations/HOSTNAME.json."""
    keys = list(admin_keys) or [_admin_key(directory, None)]
    path, revocation, problem = revoke_node(
        directory, hostname, admin_key_paths=keys, reason=reason, now=int(time.time())
    )
    click.echo(f"revocation of {hostname} ({revocation.node_id}) written to {path}")
    if problem:
        click.echo(f"not valid yet: {problem}; other admins run the same command with their key")
        raise SystemExit(int(ExitStatus.ERROR))
    click.echo(f"valid; put it on the mesh: mutualmesh publish {path} --broker ADDR")
