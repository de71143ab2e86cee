"""Where the read side's records come from: a snapshot file, a node's broker, or mDNS.

A source only transports bytes; nothing it returns is trusted until `cli.read.verify` checks it.
Hostile input is counted and dropped per message (`Raw.dropped`), never fatal: a broker anyone
can answer for must not be able to crash or bloat the CLI.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import Unreachable, UserError
from cli.read.mqttcap import PacketCap, connect_properties
from meshd import defaults
from meshd.community import Community
from meshd.topics import CONTROL, PUSH, community_filter, parse_topic

SNAPSHOT_FORMAT = "mutualmesh-snapshot"
SNAPSHOT_VERSION = 1
MAX_STATUS_CHARS = 32


@dataclass
class Raw:
    """What was read, before verification: wire records, retained statuses, revocations."""

    community: str
    taken_at: float
    records: list[bytes]
    statuses: dict[str, str] = field(default_factory=dict)
    revocations: list[bytes] = field(default_factory=list)
    source: str = ""
    dropped: Counter[str] = field(default_factory=Counter)  # by reason, before verification


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


def _strings(doc: dict[str, Any], key: str) -> list[str] | None:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        return None
    return value


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
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad(f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        raise bad("missing format marker")
    if doc.get("version") != SNAPSHOT_VERSION:
        raise bad(f"unsupported version {doc.get('version')!r}")
    records, revocations = _strings(doc, "records"), _strings(doc, "revocations")
    statuses, taken_at = doc.get("statuses", {}), doc.get("taken_at")
    if "records" not in doc or records is None:
        raise bad("records must be a list of strings")
    if revocations is None:
        raise bad("revocations must be a list of strings")
    if not isinstance(statuses, dict):
        raise bad("statuses must be a mapping")
    if isinstance(taken_at, bool) or not isinstance(taken_at, (int, float)):
        raise bad("taken_at must be a time in seconds")
    if not math.isfinite(taken_at) or taken_at < 0:
        raise bad(f"taken_at {taken_at!r} is not a time")
    return Raw(
        str(doc.get("community", "")),
        float(taken_at),
        [r.encode("utf-8", "surrogatepass") for r in records],
        {str(k): str(v)[:MAX_STATUS_CHARS] for k, v in statuses.items()},
        [r.encode("utf-8", "surrogatepass") for r in revocations],
        f"snapshot {path}",
    )


# -- brokers ----------------------------------------------------------------------------------


def parse_broker(text: str, default_port: int = defaults.BROKER_PORT) -> tuple[str, int]:
    """ADDR, ADDR:PORT, [V6ADDR]:PORT or a bare IPv6 address (every command's --broker)."""
    host, port = text, default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise _bad_broker(text, "missing ] after an IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _bad_broker(text, "write [ADDR]:PORT")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    elif text.count(":") > 1:
        try:
            ipaddress.IPv6Address(text)  # a bare IPv6 address, no port
        except ValueError as exc:
            raise _bad_broker(text, str(exc)) from None
    if not host:
        raise _bad_broker(text, "the address is empty")
    return host, port


def _bad_broker(text: str, why: str) -> UserError:
    return UserError(
        f"invalid --broker {text!r}: {why}",
        where="--broker",
        fix="write ADDR, ADDR:PORT or [IPV6]:PORT",
    )


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _bad_broker(whole, f"{text!r} is not a port (1-65535)")
    return int(text)


def _take(raw: Raw, records: dict[str, bytes], topic: str, payload: Any) -> None:
    """File one message under what it is; anything odd is counted, not raised."""
    parsed = parse_topic(topic)
    if parsed is None or not isinstance(payload, bytes) or not payload:
        raw.dropped["not_a_record"] += 1
        return
    _, subject, leaf = parsed
    if subject in (PUSH, CONTROL):  # relay-to-relay traffic, never retained: not the store
        raw.dropped["relay_traffic"] += 1
    elif subject == "_revocations":
        raw.revocations.append(payload)
    elif leaf == "status":
        raw.statuses[subject] = payload.decode("utf-8", "replace")[:MAX_STATUS_CHARS]
    else:
        records[topic] = payload


async def _collect(host: str, port: int, community: str, quiet_s: float, limit_s: float) -> Raw:
    import aiomqtt  # admin-side dependency, only needed when reading a live broker

    raw = Raw(community, time.time(), [], source=f"broker {host}:{port}")
    records: dict[str, bytes] = {}
    client = aiomqtt.Client(
        host,
        port,
        timeout=5,
        identifier=f"mutualmesh-cli-{os.getpid()}",
        protocol=aiomqtt.ProtocolVersion.V5,
        properties=connect_properties(),
    )
    cap = PacketCap(client._client)
    try:
        async with client as c:
            await c.subscribe(community_filter(community), qos=1)
            deadline = time.monotonic() + limit_s
            quiet_until = time.monotonic() + max(quiet_s, 3.0)  # first retained message may lag
            messages = c.messages.__aiter__()
            # The broker replays its retained set right after subscribing; live publications
            # keep arriving on a busy mesh, so only retained messages extend the wait.
            while (now := time.monotonic()) < min(deadline, quiet_until):
                try:
                    msg = await asyncio.wait_for(
                        messages.__anext__(), min(deadline, quiet_until) - now
                    )
                except TimeoutError:
                    break
                if msg.retain:
                    quiet_until = time.monotonic() + quiet_s
                try:
                    _take(raw, records, str(msg.topic), msg.payload)
                except Exception:  # one hostile message must not end the read
                    raw.dropped["unreadable"] += 1
    except aiomqtt.MqttError:
        if not cap.tripped:
            raise
        # the broker sent a packet over the cap: keep what arrived before it
    raw.dropped["too_large"] += cap.tripped
    raw.records = list(records.values())
    raw.taken_at = time.time()
    return raw


def read_broker(host: str, port: int, community: str, *, quiet_s: float = 0.5) -> Raw:
    import aiomqtt

    try:
        return asyncio.run(_collect(host, port, community, quiet_s, limit_s=60))
    except (aiomqtt.MqttError, OSError) as exc:
        raise Unreachable(
            f"cannot read the broker at {host}:{port}: {exc}",
            fix="check that the node is up and reachable, or use --snapshot FILE",
        ) from None


def discover_broker(community: str, timeout_s: float = 3.0) -> tuple[str, int] | None:
    """The first node announcing this community over mDNS whose broker takes a connection.

    This machine's own agent announces itself too, and its broker may be the one that is down,
    so every announced address is tried (IPv4 first) rather than taking the first answer.
    zeroconf calls back on its own thread; the candidates list is shared under a lock.
    """
    import socket
    import threading

    try:
        from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf
    except ImportError:
        return None
    lock = threading.Lock()
    candidates: list[tuple[str, int]] = []

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Added:
            return
        try:
            info = zeroconf.get_service_info(service_type, name, timeout=1000)
            if info is None:
                return
            props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
            if props.get("community") != community:
                return
            port = int(props.get("port") or info.port or defaults.BROKER_PORT)
        except (ValueError, UnicodeDecodeError):
            return  # a hostile or broken announcement: ignore it
        addrs = sorted(info.parsed_scoped_addresses(), key=lambda a: ":" in a)  # IPv4 first
        with lock:
            candidates.extend((a, port) for a in addrs)

    tried: set[tuple[str, int]] = set()
    zc = Zeroconf()
    try:
        ServiceBrowser(zc, defaults.SERVICE_TYPE, handlers=[on_change])
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


def default_broker(community: Community) -> tuple[str, int]:
    """This machine's broker if it answers, else a neighbour's found over mDNS."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", community.mqtt_port), timeout=1):
            return "127.0.0.1", community.mqtt_port
    except OSError:
        pass
    found = discover_broker(community.name)
    if found is None:
        raise Unreachable(
            "no broker on this machine and no mutualmesh node found over mDNS",
            fix="pass --broker HOST[:PORT] or --snapshot FILE",
        )
    return found
