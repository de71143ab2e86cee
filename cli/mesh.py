"""Reading the mesh: from any node's broker or from a snapshot file, trusting neither.

Every record is checked by the core's `RecordStore` against the community's admin keys, exactly
as a node does; the broker only transports bytes. A snapshot file holds the wire bytes, so
loading one re-verifies every signature too. Large meshes are verified on all cores: each worker
runs its own `RecordStore` over a share of the nodes and the parent merges the results; merging
is a lattice join, so the split cannot change the outcome.

`Archive` keeps past snapshots in SQLite so `contrib --since` can compare counters over a window
and the audit can see counter regressions and flapping links.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import itertools
import json
import os
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import click
import yaml

from cli.errors import ExitStatus, UserError
from meshd import defaults
from meshd.codec import Envelope
from meshd.community import Community, parse_community
from meshd.errors import CommunityError, RecordRejected, RejectReason
from meshd.records import Kind, TrafficBody
from meshd.store import RecordStore
from meshd.topics import community_filter, parse_topic
from meshd.topology import MeshView
from meshd.trust import Revocation, Trust

SNAPSHOT_FORMAT = "mutualmesh-snapshot"
SNAPSHOT_VERSION = 1
COMMUNITY_ENV = "MUTUALMESH_COMMUNITY"
DEFAULT_PORT = defaults.BROKER_PORT
PARALLEL_MIN_RECORDS = 3000  # below this, forking costs more than it saves
PARENT_WEIGHT = 1.17


@dataclass
class Raw:
    """What was read, before verification: wire records, retained statuses, revocations."""

    community: str
    taken_at: float
    records: list[bytes]
    statuses: dict[str, str] = field(default_factory=dict)
    revocations: list[bytes] = field(default_factory=list)
    source: str = ""


@dataclass
class Mesh:
    """The verified picture of the mesh the commands work on."""

    community: Community
    store: RecordStore
    now: float
    statuses: dict[str, str]
    revocations: list[bytes]
    source: str
    rejections: Counter[RejectReason]

    def view(self, flaps: dict[tuple[str, str], int] | None = None) -> MeshView:
        return MeshView.build(self.store, self.now, statuses=self.statuses, flaps=flaps)

    def traffic(self) -> dict[str, TrafficBody]:
        out = {}
        for env in self.store:
            if isinstance(env.body, TrafficBody):
                out[env.node_id] = env.body
        return out


# -- community --------------------------------------------------------------------------------


def load_community(path: str | None) -> Community:
    """The community's trust anchors, from --community or $MUTUALMESH_COMMUNITY."""
    path = path or os.environ.get(COMMUNITY_ENV)
    if not path:
        raise UserError(
            "no community file given: records cannot be verified without the admins' keys",
            fix=f"pass --community community.yaml or set {COMMUNITY_ENV}",
        )
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(
            f"cannot read the community file: {exc.strerror}", where=path, fix="check the path"
        ) from None
    except yaml.YAMLError as exc:
        raise UserError(
            f"the community file is not valid YAML: {exc}", where=path, fix="fix the YAML syntax"
        ) from None
    try:
        return parse_community(data)
    except CommunityError as exc:
        lines = "; ".join(f"{p.path}: {p.message} ({p.fix})" for p in exc.problems)
        raise UserError(f"the community file is invalid: {lines}", where=path) from None


# -- snapshots --------------------------------------------------------------------------------


def write_snapshot(
    path: Path,
    community: str,
    taken_at: float,
    records: Iterable[bytes],
    *,
    statuses: dict[str, str],
    revocations: Iterable[bytes],
) -> None:
    """Write atomically; records are kept as their exact wire text so they re-verify later."""
    doc = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "community": community,
        "taken_at": taken_at,
        "records": [r.decode("utf-8") for r in records],
        "statuses": statuses,
        "revocations": [r.decode("utf-8") for r in revocations],
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_snapshot(path: str) -> Raw:
    def bad(what: str) -> UserError:
        return UserError(
            f"not a mutualmesh snapshot: {what}",
            where=path,
            fix="use a file written by `mutualmesh snapshot save`",
        )

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read the snapshot: {exc.strerror}", where=path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad(f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        raise bad("missing format marker")
    if doc.get("version") != SNAPSHOT_VERSION:
        raise bad(f"unsupported version {doc.get('version')!r}")
    records, revocations = doc.get("records"), doc.get("revocations", [])
    statuses, taken_at = doc.get("statuses", {}), doc.get("taken_at")
    if not isinstance(records, list) or not all(isinstance(r, str) for r in records):
        raise bad("records must be a list of strings")
    if not isinstance(revocations, list) or not all(isinstance(r, str) for r in revocations):
        raise bad("revocations must be a list of strings")
    if not isinstance(statuses, dict) or not isinstance(taken_at, (int, float)):
        raise bad("statuses or taken_at malformed")
    return Raw(
        str(doc.get("community", "")),
        float(taken_at),
        [r.encode("utf-8") for r in records],
        {str(k): str(v) for k, v in statuses.items()},
        [r.encode("utf-8") for r in revocations],
        f"snapshot {path}",
    )


# -- brokers ----------------------------------------------------------------------------------


def parse_broker(text: str, default_port: int) -> tuple[str, int]:
    host, port = text, default_port
    if text.startswith("["):  # [v6]:port
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    if not host:
        raise UserError(f"no host in --broker {text!r}", fix="use HOST or HOST:PORT")
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UserError(f"bad port in --broker {whole!r}", fix="use HOST:PORT with PORT 1-65535")
    return int(text)


async def _collect(host: str, port: int, community: str, quiet_s: float, limit_s: float) -> Raw:
    import aiomqtt  # admin-side dependency, only needed when reading a live broker

    raw = Raw(community, time.time(), [], source=f"broker {host}:{port}")
    records: dict[str, bytes] = {}
    ident = f"mutualmesh-cli-{os.getpid()}"
    async with aiomqtt.Client(host, port, timeout=5, identifier=ident) as c:
        await c.subscribe(community_filter(community), qos=1)
        deadline = time.monotonic() + limit_s
        quiet_until = time.monotonic() + max(quiet_s, 3.0)  # first retained message may lag
        messages = c.messages.__aiter__()
        # The broker replays its retained set right after subscribing; live publications keep
        # arriving on a busy mesh, so only retained messages extend the wait.
        while (now := time.monotonic()) < min(deadline, quiet_until):
            try:
                msg = await asyncio.wait_for(messages.__anext__(), min(deadline, quiet_until) - now)
            except TimeoutError:
                break
            if msg.retain:
                quiet_until = time.monotonic() + quiet_s
            parsed = parse_topic(str(msg.topic))
            payload = msg.payload if isinstance(msg.payload, bytes) else b""
            if parsed is None or not payload:
                continue
            _, middle, last = parsed
            if middle == "_revocations":
                raw.revocations.append(payload)
            elif last == "status":
                raw.statuses[middle] = payload.decode("utf-8", "replace")[:32]
            else:
                records[str(msg.topic)] = payload
    raw.records = list(records.values())
    raw.taken_at = time.time()
    return raw


def read_broker(host: str, port: int, community: str, *, quiet_s: float = 0.5) -> Raw:
    import aiomqtt

    try:
        return asyncio.run(_collect(host, port, community, quiet_s, limit_s=60))
    except (aiomqtt.MqttError, OSError) as exc:
        raise UserError(
            f"cannot read the broker at {host}:{port}: {exc}",
            fix="check that the node is up and reachable, or use --snapshot FILE",
            status=ExitStatus.UNREACHABLE,
        ) from None


def discover_broker(community: str, timeout_s: float = 3.0) -> tuple[str, int] | None:
    """The first node announcing this community over mDNS whose broker takes a connection.

    This machine's own agent announces itself too, and its broker may be the one that is down,
    so every announced address is tried (IPv4 first) rather than taking the first answer.
    """
    import socket
    import threading

    try:
        from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf
    except ImportError:
        return None
    service = defaults.SERVICE_TYPE
    lock = threading.Lock()
    candidates: list[tuple[str, int]] = []

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Added:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=1000)
        if info is None:
            return
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        if props.get("community") != community:
            return
        try:
            port = int(props.get("port") or info.port or DEFAULT_PORT)
        except ValueError:
            return
        addrs = sorted(info.parsed_scoped_addresses(), key=lambda a: ":" in a)  # IPv4 first
        with lock:
            candidates.extend((a, port) for a in addrs)

    tried: set[tuple[str, int]] = set()
    zc = Zeroconf()
    try:
        ServiceBrowser(zc, service, handlers=[on_change])
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with lock:
                fresh = [c for c in candidates if c not in tried]
            for host, port in fresh:
                tried.add((host, port))
                try:
                    with socket.create_connection((host, port), timeout=1):
                        return host, port
                except OSError:
                    continue
            time.sleep(0.1)
    finally:
        zc.close()
    return None


# -- verification -----------------------------------------------------------------------------


def _apply_revocations(store: RecordStore, revocations: Sequence[bytes]) -> None:
    for data in revocations:
        try:
            store.revoke(Revocation.from_json(json.loads(data)))
        except (ValueError, RecordRejected):
            store.rejections[RejectReason.MALFORMED] += 1


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while large acyclic structures are built.

    Verifying 30,000 records allocates about a million objects, none in a cycle; every full
    collection would walk all of them again (a tenth of the audit's time at 10,000 nodes).
    Reference counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _signer(data: bytes) -> bytes:
    """The envelope's node id, found without parsing: keys are sorted, so the top-level
    `node_id` follows `body` and `cert` and is the last one in the text. Only used to split the
    work; a record that lies here is still fully checked, just by another worker."""
    at = data.rfind(b'"node_id":"')
    return data[at : at + 28] if at >= 0 else b""


def _verify_share(
    trust: Trust, records: Sequence[bytes], revocations: Sequence[bytes], now: float
) -> tuple[list[Envelope], Counter[RejectReason]]:
    store = RecordStore(trust)
    _apply_revocations(store, revocations)
    with paused_gc():
        for data in records:
            with contextlib.suppress(RecordRejected):
                store.offer(data, now)
    return list(store.records.values()), store.rejections


def verify(
    trust: Trust,
    records: Sequence[bytes],
    now: float,
    *,
    revocations: Sequence[bytes] = (),
    workers: int | None = None,
) -> RecordStore:
    """A RecordStore holding exactly the records that pass every check of the core.

    Large inputs are split by node over forked workers (so each node's certificate is checked
    once, in one place); the parent verifies one share itself and joins the stores. Decoding is
    pure Python and holds the GIL, so threads do not help here (measured: two threads cost more
    than they save); processes do, once the garbage collector is kept from walking the million
    objects that shipping the envelopes back creates.
    """
    workers = workers if workers is not None else (os.cpu_count() or 1)
    store = RecordStore(trust)
    _apply_revocations(store, revocations)
    if workers <= 1 or len(records) < PARALLEL_MIN_RECORDS or sys.platform == "win32":
        with paused_gc():
            for data in records:
                with contextlib.suppress(RecordRejected):
                    store.offer(data, now)
        return store
    # A child's records also cost pickling there and unpickling here, so the parent keeps a
    # larger share: with two processes about 54 % (measured: 1 record verified ~ 200 us,
    # shipped back ~ 35 us to pickle + 35 us to unpickle).
    weights = [PARENT_WEIGHT] + [1.0] * (workers - 1)
    bounds = list(itertools.accumulate(w / sum(weights) * 1000 for w in weights))
    shares: list[list[bytes]] = [[] for _ in range(workers)]
    for data in records:
        slot = bisect.bisect_right(bounds, hash(_signer(data)) % 1000)
        shares[min(slot, workers - 1)].append(data)
    with paused_gc(), ProcessPoolExecutor(workers - 1, mp_context=get_context("fork")) as pool:
        futures = [
            pool.submit(_verify_share, trust, share, revocations, now) for share in shares[1:]
        ]
        results = [_verify_share(trust, shares[0], revocations, now)]
        results += [f.result() for f in futures]
        for envelopes, rejections in results:
            store.merge_all(envelopes)
            store.rejections.update(rejections)
    return store


# -- the archive ------------------------------------------------------------------------------


class Archive:
    """Past snapshots in SQLite: one row per (time, record); records are re-verified on read."""

    def __init__(self, directory: str) -> None:
        path = Path(directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path / "archive.sqlite")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS snapshots (id INTEGER PRIMARY KEY, taken_at REAL, "
                "community TEXT)"
            )
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS records (snapshot INTEGER, node_id TEXT, kind TEXT, "
                "raw BLOB)"
            )
            self.db.execute("CREATE INDEX IF NOT EXISTS records_snap ON records(snapshot)")
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the archive: {exc}", where=directory) from None

    def save(self, mesh: Mesh) -> None:
        with self.db:
            cur = self.db.execute(
                "INSERT INTO snapshots (taken_at, community) VALUES (?, ?)",
                (mesh.now, mesh.community.name),
            )
            snap = cur.lastrowid
            self.db.executemany(
                "INSERT INTO records VALUES (?, ?, ?, ?)",
                [(snap, e.node_id, e.kind.value, e.raw) for e in mesh.store],
            )

    def snapshots(self, community: str) -> list[tuple[int, float]]:
        rows = self.db.execute(
            "SELECT id, taken_at FROM snapshots WHERE community = ? ORDER BY taken_at", (community,)
        )
        return [(int(a), float(b)) for a, b in rows]

    def baseline(self, community: str, at_or_before: float) -> tuple[int, float] | None:
        """The newest snapshot taken at or before a moment, else the oldest one there is."""
        snaps = self.snapshots(community)
        older = [s for s in snaps if s[1] <= at_or_before]
        if older:
            return older[-1]
        return snaps[0] if snaps else None

    def load(self, snap: int, trust: Trust, now: float) -> RecordStore:
        rows = self.db.execute("SELECT raw FROM records WHERE snapshot = ?", (snap,))
        return verify(trust, [bytes(r[0]) for r in rows], now)

    def traffic(self, snap: int, trust: Trust, now: float) -> dict[str, TrafficBody]:
        rows = self.db.execute(
            "SELECT raw FROM records WHERE snapshot = ? AND kind = ?", (snap, Kind.TRAFFIC.value)
        )
        store = verify(trust, [bytes(r[0]) for r in rows], now)
        return {e.node_id: e.body for e in store if isinstance(e.body, TrafficBody)}

    def link_flaps(self, community: str, limit: int = 50) -> dict[tuple[str, str], int]:
        """How often each link's reported up/down state changed across recent snapshots."""
        snaps = self.snapshots(community)[-limit:]
        last: dict[tuple[str, str], bool] = {}
        changes: Counter[tuple[str, str]] = Counter()
        for snap, _ in snaps:
            rows = self.db.execute(
                "SELECT node_id, raw FROM records WHERE snapshot = ? AND kind = ?",
                (snap, Kind.LINKS.value),
            )
            state: dict[tuple[str, str], bool] = {}
            for node_id, raw in rows:
                try:
                    body = json.loads(raw)["body"]["links"]
                except (ValueError, KeyError, TypeError):
                    continue
                for entry in body:
                    pair = tuple(sorted((node_id, str(entry.get("neighbour")))))
                    key = (pair[0], pair[1])
                    state[key] = state.get(key, True) and bool(entry.get("up", True))
            for key, up in state.items():
                if key in last and last[key] != up:
                    changes[key] += 1
                last[key] = up
        return dict(changes)


# -- options shared by every reading command ---------------------------------------------------


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
            help=f"community.yaml with the admin keys (or ${COMMUNITY_ENV}).",
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
    community = load_community(args.community_file)
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
                host, port = _default_broker(community)
            status(f"reading retained records from {host}:{port}")
            raw = read_broker(host, port, community.name)
        status(f"verifying {len(raw.records)} records")
        store = verify(community.trust, raw.records, raw.taken_at, revocations=raw.revocations)
    mesh = Mesh(
        community,
        store,
        raw.taken_at,
        raw.statuses,
        raw.revocations,
        raw.source,
        store.rejections,
    )
    if args.archive:
        Archive(args.archive).save(mesh)
    return mesh


def _default_broker(community: Community) -> tuple[str, int]:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", community.mqtt_port), timeout=1):
            return "127.0.0.1", community.mqtt_port
    except OSError:
        pass
    found = discover_broker(community.name)
    if found is None:
        raise UserError(
            "no broker on this machine and no mutualmesh node found over mDNS",
            fix="pass --broker HOST[:PORT] or --snapshot FILE",
            status=ExitStatus.UNREACHABLE,
        )
    return found
