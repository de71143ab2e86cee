"""The agent's entry points as fuzz targets for bench/fuzz.py (registered in its TARGETS).

Each factory takes the fuzzer's `World` and returns a callable on bytes; every one of these must
never raise (the agent counts and drops), so their oracles check what "never fatal" hides:

- agent_message: `RelayCore.on_message`, topic and payload split at the first NUL; a Drop of
  reason `internal_error` (an exception the core caught) is a crash.
- http: the status server's request reader and router on raw request bytes.
- mdns_txt: a DNS TXT rdata (length-prefixed strings) through `parse_announcement`.
- probe: a datagram into `Prober.on_datagram` with a verified neighbour in the table; the
  neighbour must not be brought back by a packet from another address.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

from meshd import defaults
from meshd.codec import decode
from meshd.linkquality import ECHO, PROBE, Packet
from meshd.topics import record_topic, revocation_topic, status_topic
from node_agent.discovery import parse_announcement
from node_agent.neighbours import NeighbourTable
from node_agent.probes import Prober
from node_agent.relay_core import LOCAL, Drop, RelayCore, Source
from node_agent.runtime import Clock, Runtime
from node_agent.status import HttpError, StatusServer

Run = Any  # Callable[[bytes], object], as in bench/fuzz.py
NOW = 1_800_000_000


# -- the relay's message handler --------------------------------------------------------------


def agent_message(world: Any) -> Run:
    node_id = world.nodes[0][0].node_id
    neighbour = world.nodes[1][0].node_id
    sources = (LOCAL, Source("fe80::1%mesh0", neighbour, world.nodes[1][0].public.fingerprint))
    cores = [RelayCore(world.held_store(), node_id, rate=1e9, burst=1e9)]
    calls = 0

    def run(data: bytes) -> object:
        nonlocal calls
        calls += 1
        if calls % 500 == 0:
            cores[0] = RelayCore(world.held_store(), node_id, rate=1e9, burst=1e9)
        topic, _, payload = data.partition(b"\0")
        actions = cores[0].on_message(
            sources[calls % 2], topic.decode("utf-8", "replace"), payload, NOW
        )
        for a in actions:
            if isinstance(a, Drop) and a.reason == "internal_error":
                raise AssertionError(a.detail) from a.error
        return actions

    return run


def agent_message_seeds(world: Any) -> list[bytes]:
    community = world.trust.community
    out = []
    for raw in world.records:
        env = decode(raw)
        out.append(record_topic(community, env.node_id, env.kind).encode() + b"\0" + raw)
    for (key, _), rev in zip(world.nodes, world.revocations, strict=True):
        out.append(revocation_topic(community, key.node_id).encode() + b"\0" + rev)
        out.append(status_topic(community, key.node_id).encode() + b"\0offline")
    return out


# -- the status/metrics HTTP server -----------------------------------------------------------


def http(world: Any) -> Run:
    server = StatusServer(lambda: {"node_id": "n", "counters": {}, "neighbours": []})
    loop = asyncio.new_event_loop()

    async def one(data: bytes) -> object:
        reader = asyncio.StreamReader(limit=8 * 1024 + 2, loop=loop)
        reader.feed_data(data)
        reader.feed_eof()
        try:
            path = await server._read_request(reader)
        except HttpError as exc:
            refused = exc.code
        else:
            code, _, _ = server.response(path)
            assert code[:3] in ("200", "404"), code
            return code
        assert refused[:3] in ("414", "431"), refused
        return refused

    def run(data: bytes) -> object:
        return loop.run_until_complete(one(data))

    return run


def http_seeds(world: Any) -> list[bytes]:
    return [
        b"GET /status HTTP/1.0\r\nHost: x\r\n\r\n",
        b"GET /metrics?x=1 HTTP/1.1\r\nAccept: */*\r\nUser-Agent: f\r\n\r\n",
        b"HEAD / HTTP/1.0\r\n\r\n",
    ]


# -- mDNS TXT ---------------------------------------------------------------------------------


def decode_txt(rdata: bytes) -> dict[bytes, bytes | None]:
    """RFC 6763 TXT rdata: length-prefixed strings, `key=value`, a key without `=` has None."""
    out: dict[bytes, bytes | None] = {}
    i = 0
    while i < len(rdata):
        n = rdata[i]
        item = rdata[i + 1 : i + 1 + n]
        i += 1 + n
        key, eq, value = item.partition(b"=")
        if key and key not in out:
            out[key] = value if eq else None
    return out


def encode_txt(props: dict[str, str]) -> bytes:
    out = b""
    for k, v in props.items():
        item = f"{k}={v}".encode()
        out += bytes([len(item)]) + item
    return out


def mdns_txt(world: Any) -> Run:
    community = world.trust.community
    own = world.nodes[0][0].node_id

    def run(data: bytes) -> object:
        ann, why = parse_announcement(decode_txt(data), community, own)
        assert (ann is None) == bool(why)
        return ann

    return run


def mdns_seeds(world: Any) -> list[bytes]:
    key = world.nodes[1][0]
    props = {
        "v": "1",
        "id": key.node_id,
        "community": world.trust.community,
        "port": str(defaults.BROKER_PORT),
        "probe": str(defaults.PROBE_PORT),
        "fp": key.public.fingerprint,
    }
    return [encode_txt(props), encode_txt({**props, "probe": "0"})]


# -- UDP probes -------------------------------------------------------------------------------


class _Transport:
    def sendto(self, data: bytes, addr: object) -> None:
        assert len(data) < 200


def probe(world: Any) -> Run:
    neighbour = world.nodes[1][0].node_id
    config = types.SimpleNamespace(probe_interval=1.0, probe_window=64, probe_port=0)
    table = NeighbourTable()
    prober = Prober(
        config,  # type: ignore[arg-type]
        Runtime(clock=Clock(now=lambda: NOW, monotonic=lambda: 100.0)),
        world.nodes[0][0].node_id,
        table,
        lambda node_id, event: None,
    )
    prober.transport = _Transport()  # type: ignore[assignment]
    table.seen(neighbour, "mesh0", "fe80::1%mesh0", 1883, 0.0)
    table.verify(neighbour, "fe80::1%mesh0")

    def run(data: bytes) -> object:
        table.entries[neighbour].up = False
        prober.on_datagram(data, ("fe80::666", 4243, 0, 1))  # not the neighbour's address
        assert not table.entries[neighbour].up
        prober.on_datagram(data, ("fe80::1", 4243, 0, 1))
        if len(prober.estimators) > 64:
            prober.estimators.clear()
        return None

    return run


def probe_seeds(world: Any) -> list[bytes]:
    neighbour = world.nodes[1][0].node_id
    return [
        Packet(PROBE, 7, 1, 1.5, 0, 0, neighbour).encode(),
        Packet(ECHO, 7, 1, 1.5, 3, 4, neighbour).encode(),
    ]
