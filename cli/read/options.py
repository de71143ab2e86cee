"""What every reading command shares: its click options and `open_mesh`, which reads, verifies
and archives the mesh once and hands the commands one `Mesh`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from cli.errors import UserError
from cli.read.archive import Archive, Snapshot
from cli.read.community import COMMUNITY_ENV, load_community
from cli.read.source import default_broker, parse_broker, read_broker, read_snapshot
from cli.read.verify import verify
from meshd.community import Community
from meshd.errors import RejectReason
from meshd.records import Kind, TrafficBody
from meshd.store import RecordStore
from meshd.topology import MeshView

#: Refusals that mean a snapshot holds things that are not records at all (damaged or foreign
#: file), as opposed to records that fail their checks (tampered, expired, revoked).
NOT_RECORDS = (RejectReason.MALFORMED, RejectReason.UNKNOWN_KIND, RejectReason.TOO_LARGE)


@dataclass
class Mesh:
    """The verified picture of the mesh the commands work on, with the run's archive."""

    community: Community
    store: RecordStore
    now: float
    statuses: dict[str, str]
    revocations: list[bytes]
    source: str
    rejections: Counter[RejectReason]
    archive: Archive | None = None
    snapshot: Snapshot | None = None  # this run's row in the archive
    dropped: Counter[str] | None = None  # transport-level drops (oversized, not a record)

    def view(self, flaps: dict[tuple[str, str], int] | None = None) -> MeshView:
        return MeshView.build(self.store, self.now, statuses=self.statuses, flaps=flaps)

    def traffic(self) -> dict[str, TrafficBody]:
        return {
            e.node_id: b
            for e in self.store
            if e.kind is Kind.TRAFFIC and isinstance(b := e.body, TrafficBody)
        }


def mesh_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--broker / --snapshot / --community / --archive / --json, in one place."""
    options = [
        click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table."),
        click.option(
            "--archive",
            type=click.Path(file_okay=False),
            default=None,
            help="Directory of past snapshots (SQLite); this run is added to it.",
        ),
        click.option(
            "--community",
            "community_file",
            type=click.Path(dir_okay=False),
            default=None,
            help=f"community.yaml with the admin keys (or ${COMMUNITY_ENV}); it must carry k "
            "admin signatures, and its folder's trust/ chain and revocations/ are read too.",
        ),
        click.option(
            "--snapshot",
            "snapshot_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="Read a snapshot file instead of a broker.",
        ),
        click.option(
            "--broker",
            default=None,
            metavar="HOST[:PORT]",
            help="Any node's broker (default: this node, else a neighbour found over mDNS).",
        ),
    ]
    for option in options:
        func = option(func)
    return func


@dataclass
class MeshArgs:
    broker: str | None
    snapshot_file: str | None
    community_file: str | None
    archive: str | None
    as_json: bool


def open_mesh(args: MeshArgs, *, quiet: bool = False) -> Mesh:
    """Read, verify and (with --archive) record the mesh, with progress on a terminal."""
    from cli.output import progress_status

    if args.broker and args.snapshot_file:
        raise UserError("--broker and --snapshot exclude each other", fix="pick one source")
    loaded = load_community(args.community_file)
    community = loaded.community
    with progress_status("reading the mesh", enabled=not quiet) as status:
        if args.snapshot_file:
            raw = read_snapshot(args.snapshot_file)
            if raw.community and raw.community != community.name:
                raise UserError(
                    f"the snapshot is of community {raw.community!r}, not {community.name!r}",
                    where=args.snapshot_file,
                    fix="pass the matching --community file",
                )
        else:
            if args.broker:
                host, port = parse_broker(args.broker, community.mqtt_port)
            else:
                host, port = default_broker(community)
            status(f"reading retained records from {host}:{port}")
            raw = read_broker(host, port, community.name)
        status(f"verifying {len(raw.records)} records")
        revocations = [*raw.revocations, *loaded.revocations]
        store = verify(community.trust, raw.records, raw.taken_at, revocations=revocations)
    if args.snapshot_file:
        # refused revocations count as malformed too; they are not the snapshot's records
        of_revocations = verify(community.trust, [], raw.taken_at, revocations=revocations)
        _refuse_garbage(
            args.snapshot_file, len(raw.records), store.rejections - of_revocations.rejections
        )
    mesh = Mesh(
        community,
        store,
        raw.taken_at,
        raw.statuses,
        raw.revocations,
        raw.source,
        store.rejections,
        dropped=raw.dropped,
    )
    if args.archive:
        mesh.archive = Archive(args.archive)
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.call_on_close(mesh.archive.close)  # one archive per run, closed with it
        snap_id = mesh.archive.save(community.name, mesh.now, store)
        mesh.snapshot = Snapshot(snap_id, mesh.now)
    return mesh


def _refuse_garbage(path: str, total: int, rejections: Counter[RejectReason]) -> None:
    """`snapshot save` writes only records; anything else in the file means it is damaged."""
    bad = {r.value: rejections[r] for r in NOT_RECORDS if rejections[r]}
    if bad:
        counts = ", ".join(f"{n} {why}" for why, n in bad.items())
        raise UserError(
            f"{sum(bad.values())} of {total} entries in the snapshot are not records ({counts})",
            where=path,
            fix="the file is damaged or was not written by `mutualmesh snapshot save`; "
            "take a new snapshot",
        )


def cost_share_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--cost-share AMOUNT (into `amount`), shared by the views that split community costs."""
    return click.option(
        "--cost-share",
        "amount",
        type=click.FloatRange(min=0),
        default=None,
        metavar="AMOUNT",
        help=help,
    )
