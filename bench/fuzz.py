"""Fuzzing as a habit: every entry point that takes hostile bytes, fed mutated and generated input.

Each target in TARGETS is a callable on bytes with the exceptions it may raise (typed refusals);
anything else it raises is a crash, and a call running past the time limit is a hang. Inputs come
from valid seeds of a deterministic community (keys derived from --seed): byte mutations (bit
flips, truncation, splices, huge nesting, lone surrogates, odd numbers, duplicate keys) and
structure-aware ones (a value in the parsed tree replaced, then re-signed with the real key, so
the input passes the signature and reaches the checks behind it). A target may also state an
oracle as an assertion; a failed assertion is a crash too.

Adding a target is one entry in TARGETS: a name, a factory that builds the callable from the
`World` (its state lives in the closure), the allowed exceptions, the seeds, and optionally how
to re-sign a mutated tree. The mutations are a table too (bench/fuzz_mutate.py).

Run: .venv/bin/python bench/fuzz.py [--inputs 100000] [--seed 1] [--target NAME ...]
     [--time-limit 1.0] [--save DIR]
Exits 1 when any target crashed or hung.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import fuzz_agent
from bench.fuzz_mutate import MUTATORS, WEIGHTS, dump, mutate_tree
from meshd.codec import (
    RECORD_DOMAIN,
    decode_certificate,
    decode_revocation,
    peek_header,
    sign_record,
)
from meshd.community import parse_community
from meshd.encoding import b64encode, canonical_json
from meshd.errors import CommunityError, RecordRejected
from meshd.ids import SigningKey
from meshd.records import Kind, LinkEntry, LinksBody, NeighbourCounters, NodeBody, TrafficBody
from meshd.store import RecordStore
from meshd.topics import parse_topic, record_topic, revocation_topic, status_topic
from meshd.trust import (
    ENROLLMENT_DOMAIN,
    REVOCATION_DOMAIN,
    Enrollment,
    Revocation,
    Trust,
    admin_signature,
    community_message,
    valid_signers,
)

NOW = 1_800_000_000
COMMUNITY = "riverside"


# -- the world the seeds come from ------------------------------------------------------------


@dataclass
class World:
    """A small community with deterministic keys, and valid wire bytes of every kind."""

    rng: random.Random
    admin: SigningKey = field(init=False)
    nodes: list[tuple[SigningKey, Enrollment]] = field(init=False)
    trust: Trust = field(init=False)
    records: list[bytes] = field(init=False)
    revocations: list[bytes] = field(init=False)
    certs: list[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.admin = SigningKey(self.rng.randbytes(32))
        self.trust = Trust(COMMUNITY, frozenset({self.admin.public}))
        self.nodes = []
        for i in range(3):
            key = SigningKey(self.rng.randbytes(32))
            cert = Enrollment.issue(
                self.admin, community=COMMUNITY, hostname=f"n{i}", key=key.public,
                expires=NOW + 86400,
            )  # fmt: skip
            self.nodes.append((key, cert))
        self.records = [r for i in range(3) for r in self._records_of(i)]
        self.revocations = [
            Revocation.issue(
                [self.admin], community=COMMUNITY, key=key.public, issued_at=NOW, reason="stolen"
            ).encode()
            for key, _ in self.nodes
        ]
        self.certs = [canonical_json(cert.to_json()) for _, cert in self.nodes]

    def _records_of(self, i: int) -> list[bytes]:
        key, cert = self.nodes[i]
        other = self.nodes[(i + 1) % 3][0].node_id
        bodies = (
            NodeBody(f"n{i}", "model", "mutualmesh 0.1.0", ("10.42.0.1", "fd00::1"), 1000),
            LinksBody((LinkEntry(other, "mesh0", "wifi", True, 256, 256, 1.5, 0.99, 0.98),)),
            TrafficBody("b0", 10, NOW - 10, (NeighbourCounters(other, "mesh0", 1, 2, 3, 4),)),
        )
        return [
            sign_record(key, cert, b, seq=seq, issued_at=NOW, ttl_s=600).raw
            for b in bodies
            for seq in (5, 6)
        ]

    def held_store(self) -> RecordStore:
        """A store holding the seq-5 record of every slot, so merge, triage and ties all run."""
        store = RecordStore(self.trust)
        for raw in self.records[::2]:
            store.offer(raw, NOW)
        return store

    def key_of(self, tree: Any) -> SigningKey:
        node_id = tree.get("node_id") if isinstance(tree, dict) else None
        for key, _ in self.nodes:
            if key.node_id == node_id:
                return key
        return self.nodes[0][0]


def _without(tree: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in tree.items() if k != name}


def resign_record(world: World, tree: Any) -> bytes | None:
    if not isinstance(tree, dict):
        return None
    unsigned = _without(tree, "sig")
    sig = world.key_of(tree).sign(RECORD_DOMAIN + canonical_json(unsigned))
    return canonical_json({**unsigned, "sig": b64encode(sig)})


def resign_revocation(world: World, tree: Any) -> bytes | None:
    if not isinstance(tree, dict):
        return None
    unsigned = _without(tree, "sigs")
    sig = world.admin.sign(REVOCATION_DOMAIN + canonical_json(unsigned))
    signature = {"admin": world.admin.public.text, "sig": b64encode(sig)}
    return canonical_json({**unsigned, "sigs": [signature]})


def resign_any(world: World, tree: Any) -> bytes | None:
    is_revocation = isinstance(tree, dict) and tree.get("type") == "revocation"
    return (resign_revocation if is_revocation else resign_record)(world, tree)


def resign_cert(world: World, tree: Any) -> bytes | None:
    if not isinstance(tree, dict):
        return None
    unsigned = _without(tree, "sig")
    sig = world.admin.sign(ENROLLMENT_DOMAIN + canonical_json(unsigned))
    return canonical_json({**unsigned, "sig": b64encode(sig)})


# -- targets ----------------------------------------------------------------------------------

Run = Callable[[bytes], object]


@dataclass(frozen=True)
class Target:
    name: str
    doc: str
    make: Callable[[World], Run]  # builds the callable; its state lives in the closure
    allowed: tuple[type[BaseException], ...]  # typed refusals; anything else is a crash
    seeds: Callable[[World], list[bytes]]
    resign: Callable[[World, Any], bytes | None] | None = None


def _record(world: World) -> Run:
    stores = [world.held_store()]
    calls = 0

    def run(data: bytes) -> object:
        nonlocal calls
        calls += 1
        if calls % 500 == 0:  # bounded and deterministic; caches stay warm in between
            stores[0] = world.held_store()
        env = stores[0].offer(data, NOW)
        header = peek_header(data)  # oracle: a header read from accepted bytes is theirs
        assert header is None or (header.node_id, header.seq) == (env.node_id, env.seq)
        return env

    return run


def _revocation(world: World) -> Run:
    base = world.held_store()

    def run(data: bytes) -> object:
        store = RecordStore(world.trust, records=dict(base.records))
        revocation = store.offer_revocation(data)
        assert all(e.node_id != revocation.node_id for e in store)  # oracle: its records gone
        assert decode_revocation(revocation.encode()) == revocation  # and it can be passed on
        return revocation

    return run


def _certificate(world: World) -> Run:
    def run(data: bytes) -> object:
        return decode_certificate(data).problem(world.trust, NOW)

    return run


def _store_verify(world: World) -> Run:
    """The path the CLI's read side runs: revocations first, then every record, per item."""

    def run(data: bytes) -> object:
        store = RecordStore(world.trust)
        items = data.split(b"\n")
        for item in items:
            if b'"type":"revocation"' in item:
                with contextlib.suppress(RecordRejected):
                    store.offer_revocation(item)
        for item in items:
            if b'"type":"revocation"' not in item:
                with contextlib.suppress(RecordRejected):
                    store.offer(item, NOW)
        store.expire(NOW + 1)
        return len(store)

    return run


def _bundles(world: World) -> list[bytes]:
    return [
        b"\n".join([*world.records[i : i + 6], world.revocations[(i // 6 + 1) % 3]])
        for i in (0, 6, 12)
    ]


def _topic(world: World) -> Run:
    def run(data: bytes) -> object:
        parsed = parse_topic(data.decode("utf-8", "replace"))
        if parsed is not None:  # oracle: three non-empty-free parts of the same topic
            assert all(isinstance(p, str) and "/" not in p for p in parsed)
        return parsed

    return run


def _topics(world: World) -> list[bytes]:
    node_id = world.nodes[0][0].node_id
    return [
        t.encode()
        for t in (
            *(record_topic(COMMUNITY, node_id, k) for k in Kind),
            status_topic(COMMUNITY, node_id),
            revocation_topic(COMMUNITY, node_id),
            "mesh/v1/riverside/#",
            "$SYS/broker/uptime",
        )
    ]


def _community(world: World) -> Run:
    """A community file as the core checks it: structure, then the admins' signatures."""

    def run(data: bytes) -> object:
        try:
            value = json.loads(data)  # the file format's own parser is the caller's edge
        except (ValueError, RecursionError):
            return None
        community = parse_community(value)
        message = community_message(value)  # ValueError: no canonical form, so unsigned
        return valid_signers(message, value.get("signatures") or [], community.trust.admins)

    return run


def _communities(world: World) -> list[bytes]:
    data: dict[str, Any] = {
        "name": COMMUNITY,
        "mesh_id": "mm-riverside",
        "radio": {
            "country": "DE",
            "sae_passphrase": "correct horse battery",
            "bands": {"2g": {"channel": 6, "htmode": "HT20"}},
        },
        "ipv4": {"prefix": "10.42.0.0/16"},
        "ipv6": {"prefix": "fd12:3456:789a::/48"},
        "routing": {"protocol": "babel"},
        "mqtt": {"port": 1883},
        "admins": [{"name": "ana", "key": world.admin.public.text}],
        "threshold": 1,
        "contribution": {"base_share": 0.4, "consumption_share": 0.6},
    }
    data["signatures"] = [admin_signature(world.admin, community_message(data))]
    return [canonical_json(data), json.dumps(data, indent=2).encode()]


def resign_community(world: World, tree: Any) -> bytes | None:
    if not isinstance(tree, dict):
        return None
    tree["signatures"] = [admin_signature(world.admin, community_message(tree))]
    return dump(tree)


TARGETS: tuple[Target, ...] = (
    Target(
        "record",
        "decode + check + merge",
        _record,
        (RecordRejected,),
        lambda w: w.records,
        resign_record,
    ),
    Target(
        "revocation",
        "decode + apply",
        _revocation,
        (RecordRejected,),
        lambda w: w.revocations,
        resign_revocation,
    ),
    Target(
        "certificate",
        "parse + verify",
        _certificate,
        (RecordRejected,),
        lambda w: w.certs,
        resign_cert,
    ),
    Target("store_verify", "the CLI's verify loop", _store_verify, (), _bundles, resign_any),
    Target("topic", "parse_topic", _topic, (), _topics),
    Target(
        "community",
        "parse + signatures",
        _community,
        (CommunityError, ValueError),
        _communities,
        resign_community,
    ),
    # the agent's entry points (bench/fuzz_agent.py): each must never raise
    Target("agent_message", "RelayCore.on_message", fuzz_agent.agent_message, (),
           fuzz_agent.agent_message_seeds),
    Target("http", "status server request", fuzz_agent.http, (), fuzz_agent.http_seeds),
    Target("mdns_txt", "TXT parse", fuzz_agent.mdns_txt, (), fuzz_agent.mdns_seeds),
    Target("probe", "probe decode + handle", fuzz_agent.probe, (), fuzz_agent.probe_seeds),
)  # fmt: skip


# -- generated inputs -------------------------------------------------------------------------


def generate(rng: random.Random, target: Target, world: World, seeds: Sequence[bytes]) -> bytes:
    seed = rng.choice(seeds)
    roll = rng.random()
    if roll < 0.03:
        return seed
    if roll < 0.4 and seed.startswith(b"{"):
        items = [seed] if b"\n " in seed else seed.split(b"\n")  # a bundle: mutate one
        i = rng.randrange(len(items))
        tree = mutate_tree(rng, json.loads(items[i]))
        items[i] = dump(tree)
        if target.resign is not None and rng.random() < 0.7:
            with contextlib.suppress(ValueError, TypeError):
                items[i] = target.resign(world, tree) or items[i]
        return b"\n".join(items)
    data = seed
    for mutator in rng.choices(MUTATORS, WEIGHTS, k=rng.choice((1, 1, 2, 3, 4))):
        data = mutator(rng, data, seeds)
    return data


# -- the runner -------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm inside a call that ran past the time limit."""


@dataclass
class Stats:
    target: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    crashes: list[tuple[str, bytes]] = field(default_factory=list)
    hangs: list[bytes] = field(default_factory=list)
    slowest_ms: float = 0.0


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def fuzz(target: Target, world: World, inputs: int, seed: int, time_limit: float) -> Stats:
    rng = random.Random(f"{seed}/{target.name}")
    run = target.make(world)
    seeds = target.seeds(world)
    stats = Stats(target.name)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        for _ in range(inputs):
            data = generate(rng, target, world, seeds)
            stats.inputs += 1
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                run(data)
                stats.accepted += 1
            except target.allowed:
                stats.refused += 1
            except Hang:
                stats.hangs.append(data)
            except Exception as exc:  # the point: anything not declared is a crash
                stats.crashes.append((f"{type(exc).__name__}: {exc}"[:200], data))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = time.perf_counter() - start
            if elapsed > time_limit and (not stats.hangs or stats.hangs[-1] is not data):
                stats.hangs.append(data)  # stuck in C code, where the alarm cannot land
            stats.slowest_ms = max(stats.slowest_ms, elapsed * 1000)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return stats


def run_all(
    targets: Sequence[Target], inputs: int, seed: int, time_limit: float = 1.0
) -> list[Stats]:
    """Fuzz each target with an equal share of `inputs`; deterministic for a given seed."""
    world = World(random.Random(seed))
    share, extra = divmod(inputs, len(targets))
    return [fuzz(t, world, share + (i < extra), seed, time_limit) for i, t in enumerate(targets)]


def report(results: Sequence[Stats], seconds: float) -> str:
    lines = [
        f"{'target':<14}{'inputs':>9}{'returned':>10}{'refused':>10}{'crashes':>9}{'hangs':>7}"
        f"{'slowest ms':>12}"
    ]
    for s in results:
        lines.append(
            f"{s.target:<14}{s.inputs:>9}{s.accepted:>10}{s.refused:>10}{len(s.crashes):>9}"
            f"{len(s.hangs):>7}{s.slowest_ms:>12.1f}"
        )
    total = sum(s.inputs for s in results)
    bad = sum(len(s.crashes) + len(s.hangs) for s in results)
    lines.append(f"{'total':<14}{total:>9}  in {seconds:.1f} s; {bad} crash(es) or hang(s)")
    for s in results:
        kinds: dict[str, int] = {}
        for what, _ in s.crashes:
            kinds[what.split(":")[0]] = kinds.get(what.split(":")[0], 0) + 1
        for (what, data), _ in zip(s.crashes, range(3), strict=False):
            lines.append(f"  {s.target} crash: {what}\n    input: {data[:160]!r}")
        if kinds:
            lines.append(f"  {s.target} crashes by type: {kinds}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    names = [t.name for t in TARGETS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="total, split over targets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", action="append", choices=names, help="default: all")
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds per input")
    parser.add_argument("--save", type=Path, help="write every crashing input to this folder")
    args = parser.parse_args(argv)
    chosen = [t for t in TARGETS if args.target is None or t.name in args.target]
    start = time.perf_counter()
    results = run_all(chosen, args.inputs, args.seed, args.time_limit)
    print(report(results, time.perf_counter() - start))
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for s in results:
            for i, (_, data) in enumerate(s.crashes):
                (args.save / f"{s.target}-{i}.bin").write_bytes(data)
            for i, data in enumerate(s.hangs):
                (args.save / f"{s.target}-hang-{i}.bin").write_bytes(data)
    return 1 if any(s.crashes or s.hangs for s in results) else 0


if __name__ == "__main__":
    sys.exit(main())
