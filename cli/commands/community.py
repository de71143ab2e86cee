"""`mutualmesh community`: create, check and sign the community file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.errors import ExitStatus, UserError
from meshd.community import ROUTING, Review, review_community
from meshd.errors import KeyFormatError, Problem
from meshd.ids import PublicKey, SigningKey
from meshd.trustchain import Version
from provisioning.community import (
    TRUST_DIR,
    ProvisionError,
    load_yaml,
    verify_folder,
)
from provisioning.keys import KeyFileError, write_private_key
from provisioning.security import open_findings
from provisioning.workflow import (
    add_admin,
    adopt_community,
    default_admin_key,
    init_community,
    load_admin_key,
    sign_community,
    trusted_chain,
)


@click.group()
def community() -> None:
    """Create, check and sign a community (community.yaml)."""


@community.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    required=True,
    help="Community folder to create (can be kept in git).",
)
@click.option(
    "--admin-key",
    type=click.Path(path_type=Path),
    default=None,
    help="Your admin private key, outside the folder "
    "[default: ~/.config/mutualmesh/admin-NAME.key]. Reused if it exists.",
)
@click.option("--admin-name", default="admin", show_default=True, help="Your name as admin.")
@click.option(
    "--country",
    default="DE",
    show_default=True,
    help="Two-letter country code: decides legal channels and power.",
)
@click.option("--routing", type=click.Choice(ROUTING), default="babel", show_default=True)
@click.option(
    "--ssh-key",
    "ssh_keys",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Your SSH public key file (e.g. ~/.ssh/id_ed25519.pub): nodes accept only admins' "
    "keys, password login is off. Repeatable.",
)
def init(
    name: str,
    directory: Path,
    admin_key: Path | None,
    admin_name: str,
    country: str,
    routing: str,
    ssh_keys: tuple[Path, ...],
) -> None:
    """Create community NAME with fresh secrets, an address plan and your admin key."""
    key_path = admin_key or default_admin_key(name)
    data, created = init_community(
        directory,
        name,
        admin_key_path=key_path,
        admin_name=admin_name,
        country=country.upper(),
        routing=routing,
        ssh_key_files=ssh_keys,
    )
    click.echo(f"community {name} created in {directory}")
    click.echo(
        f"  IPv4 {data['ipv4']['prefix']}  IPv6 {data['ipv6']['prefix']}  "
        f"routing {routing}  country {data['radio']['country']}"
    )
    verb = "new admin key written to" if created else "existing admin key used from"
    click.echo(f"  {verb} {key_path} (mode 0600: keep it secret, back it up)")
    if not ssh_keys:
        click.echo(
            "  warning: no --ssh-key: nobody can log in to the nodes (password login is off); "
            "add `ssh_keys:` to your admin entry and sign again"
        )
    genesis = trusted_chain(directory)[0]
    click.echo(f"  genesis {genesis.fingerprint}")
    click.echo("  (the community's identity: co-admins compare it, every node bundle pins it)")
    click.echo(
        f"next: mutualmesh node add HOSTNAME --model MODEL --dir {directory} --admin-key {key_path}"
    )


@community.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--genesis",
    default=None,
    help="Expected genesis fingerprint (sha256:...), as printed by `community init`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(file: Path, genesis: str | None, as_json: bool) -> None:
    """Check FILE and list every problem with its field path.

    Signatures, when present, must come from k distinct admins (k = threshold). When FILE sits
    in a community folder, its trust/ chain is verified too: every change signed by k admins of
    the version before it, FILE the newest version. Also warns about anything that would leave
    its nodes open (or locked): admin SSH keys, a passphrase in the shared file. Writes nothing
    but the admin's pin.
    """
    data = load_yaml(file)
    review = review_community(data)
    problems = list(review.problems)
    community_obj = review.community
    chain = None
    if not problems and (file.parent / TRUST_DIR).exists():
        try:
            chain = verify_folder(file.parent, data, genesis=genesis)
        except ProvisionError as exc:
            problems.append(Problem(exc.where, exc.what, exc.fix))
    elif not problems and genesis is not None:
        problems.append(
            Problem(
                str(file.parent / TRUST_DIR),
                "missing, so the genesis cannot be checked",
                "check the community.yaml inside its community folder",
            )
        )
    warnings = open_findings(data) if isinstance(data, dict) else []
    if as_json:
        _check_json(file, problems, warnings, review, chain)
        if problems:
            raise SystemExit(int(ExitStatus.USAGE))
        return
    if problems:
        for p in problems:
            click.echo(f"{p.path}: {p.message} (fix: {p.fix})", err=True)
        click.echo(f"{file}: {len(problems)} problem(s)", err=True)
        raise SystemExit(int(ExitStatus.USAGE))
    assert community_obj is not None
    for where, what, fix in warnings:
        click.echo(f"warning: {where}: {what} (fix: {fix})", err=True)
    c = community_obj
    signed = (
        f"signed by {len(review.signers)} of {len(c.admins)} admin(s), {c.threshold} needed"
        if review.signatures_present
        else f"UNSIGNED: needs {c.threshold} admin signature(s) before nodes accept it"
    )
    click.echo(
        f"{file}: ok — community {c.name}, {len(c.admins)} admin(s), threshold {c.threshold}, "
        f"IPv4 {c.ipv4}, IPv6 {c.ipv6}, routing {c.routing}, bands {', '.join(sorted(c.bands))}; "
        f"{signed}"
    )
    if chain is None:
        click.echo("  no trust/ chain next to it: who accepted this version is not checked")
    else:
        click.echo(
            f"  trusted version {len(chain)} (each change signed by k admins of the version "
            f"before); genesis {chain[0].fingerprint}"
        )


def _check_json(
    file: Path,
    problems: list[Problem],
    warnings: list[tuple[str, str, str]],
    review: Review,
    chain: list[Version] | None,
) -> None:
    out: dict[str, Any] = {
        "file": str(file),
        "ok": not problems,
        "problems": [{"where": p.path, "what": p.message, "fix": p.fix} for p in problems],
        "warnings": [{"where": w, "what": what, "fix": fix} for w, what, fix in warnings],
    }
    community = review.community
    if community is not None and not problems:
        out["community"] = {
            "name": community.name,
            "admins": len(community.admins),
            "threshold": community.threshold,
            "valid_signatures": len(review.signers),
            "ipv4": str(community.ipv4),
            "ipv6": str(community.ipv6),
            "routing": community.routing,
            "bands": sorted(community.bands),
            "trusted_version": len(chain) if chain else None,
            "genesis": chain[0].fingerprint if chain else None,
        }
    click.echo(json.dumps(out, indent=2, sort_keys=True))


@community.command("add-admin")
@click.argument("name")
@click.option("--key", "key_text", required=True, help="The new admin's public key.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True)
@click.option(
    "--threshold",
    type=int,
    default=None,
    help="New k: how many admins must sign changes and revocations.",
)
@click.option(
    "--ssh-key",
    "ssh_keys",
    type=click.Path(path_type=Path),
    multiple=True,
    help="The new admin's SSH public key file (.pub): lets them log in to nodes. Repeatable.",
)
def add_admin_cmd(
    name: str, key_text: str, directory: Path, threshold: int | None, ssh_keys: tuple[Path, ...]
) -> None:
    """Add admin NAME; afterwards k admins must sign the file again."""
    try:
        key = PublicKey.from_text(key_text, "--key")
    except KeyFormatError as exc:
        raise UserError(
            str(exc), where="--key", fix="paste the public key the new admin printed"
        ) from None
    data = add_admin(directory, name, key, threshold, ssh_keys)
    click.echo(f"admin {name} added; threshold {data['threshold']} of {len(data['admins'])}")
    click.echo(
        "signatures were cleared (they covered the old file). The change is accepted once "
        "k admins of the current version and "
        f"{data['threshold']} admin(s) of the new list have run `mutualmesh community sign`"
    )


@community.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True)
@click.option(
    "--admin-key", type=click.Path(path_type=Path), required=True, help="Your admin private key."
)
def sign(directory: Path, admin_key: Path) -> None:
    """Sign the community file (and the change to it) with your admin key."""
    done = sign_community(directory, admin_key)
    valid, k = done.file_valid, done.file_needed
    state = "valid" if valid >= k else f"needs {k - valid} more"
    click.echo(f"signed: {valid} of {k} required signature(s) — {state}")
    if done.proposed is not None:
        click.echo(
            f"change to version {done.proposed.version}: {done.change_valid} of "
            f"{done.change_needed} signature(s) from the admins of version {done.version} — "
            "not accepted yet; they run the same command"
        )
    else:
        click.echo(f"trusted version {done.version}")


@community.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True)
@click.option(
    "--admin-key",
    "admin_keys",
    type=click.Path(path_type=Path),
    multiple=True,
    required=True,
    help="Admin private key; repeat for k admins.",
)
def adopt(directory: Path, admin_keys: tuple[Path, ...]) -> None:
    """Start the trust/ chain of a community.yaml made without one (version 1)."""
    genesis = adopt_community(directory, list(admin_keys))
    click.echo(f"trust chain started at version 1; genesis {genesis.fingerprint}")


@community.command("admin-key")
@click.option("--admin-key", type=click.Path(path_type=Path), required=True)
@click.option("--create", is_flag=True, help="Create the key file (0600) if it does not exist.")
def admin_key_cmd(admin_key: Path, create: bool) -> None:
    """Print the public key of an admin key file, to send to the other admins."""
    if create and not admin_key.exists():
        try:
            write_private_key(admin_key, SigningKey.generate())
        except (OSError, KeyFileError) as exc:
            raise UserError(
                f"cannot write the key ({exc})",
                where=str(admin_key),
                fix="pick a writable path outside the community folder",
            ) from None
    key = load_admin_key(admin_key)
    click.echo(key.public.text)
