"""A hostile neighbour for the lab: what anyone in radio range of a mesh can do, run in one node.

It announces fake node ids over mDNS (random, malformed, and the real ids of honest nodes, all
pointing at itself) and fills its own broker with what a malicious neighbour would serve:
oversized payloads, JSON nested thousands deep, a revocation whose reason is a lone surrogate,
bytes that are not UTF-8, a record with the largest seq, spoofed `offline` statuses. Then it
keeps publishing fresh junk live, so both the retained replay and the live path are exercised.

    python -m cli.lab.hostile --community C --address IPV4 [--address IPV4 ...]
        [--fake-ids N] [--oversize BYTES] [--victim NODE_ID ...] [--broker-port P]

It runs until SIGTERM. Nothing here is needed by a real router: it is the lab's attacker.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from meshd import defaults
from meshd.records import Kind
from meshd.topics import record_topic, revocation_topic, status_topic

READY = "hostile: ready"
JUNK_EVERY_S = 0.5  # how often a fresh malformed message is published live


def fake_ids(count: int, victims: list[str]) -> list[str]:
    """Ids to announce: honest nodes' own ids first, then malformed ones, then random hex."""
    odd = ["", "x" * 250, "../../etc/passwd", "UPPER-not-an-id", "\u00e9\u00e9"]
    ids = [*victims, *odd]
    while len(ids) < count + len(victims):
        ids.append(secrets.token_hex(16))
    return ids[: count + len(victims)]


def payloads(community: str, victims: list[str], oversize: int) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs a hostile broker holds retained."""
    someone = victims[0] if victims else secrets.token_hex(16)
    deep = b"[" * 5000
    surrogate = json.dumps(
        {
            "community": community,
            "node_id": someone,
            "issued_at": int(time.time()),
            "reason": "\ud800",
            "sigs": [],
        }
    ).encode()
    max_seq = json.dumps({"seq": 2**63 - 1, "node_id": someone, "kind": "node"}).encode()
    out = [
        (record_topic(community, someone, Kind.NODE), b"\0" * oversize),
        (record_topic(community, secrets.token_hex(16), Kind.LINKS), b"\xff" * oversize),
        (revocation_topic(community, someone), surrogate),
        (revocation_topic(community, secrets.token_hex(16)), deep),
        (record_topic(community, someone, Kind.LINKS), deep),
        (record_topic(community, someone, Kind.TRAFFIC), b"\xc3\x28 not utf-8 \xff"),
        (record_topic(community, someone, Kind.TRAFFIC).replace("traffic", "nonsense"), max_seq),
    ]
    out += [(status_topic(community, v), b"offline") for v in victims]
    return out


def _announce(community: str, addresses: list[str], ids: list[str], port: int) -> Zeroconf:
    zc = Zeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
    service = defaults.SERVICE_TYPE
    for i, node_id in enumerate(ids):
        label = (node_id or "empty")[:60].replace(".", "-") or f"fake{i}"
        try:
            info = ServiceInfo(
                service,
                f"{label}-{i}.{service}",
                port=port,
                server=f"fake{i}.local.",
                parsed_addresses=addresses,
                properties={
                    "v": "1",
                    "id": node_id,
                    "community": community,
                    "port": str(port),
                    "probe": str(defaults.PROBE_PORT),
                    "fp": secrets.token_hex(8),
                },
            )
            zc.register_service(info, cooperating_responders=True)
        except Exception as exc:  # a name zeroconf refuses is one fewer fake, not a failure
            print(f"hostile: not announced {node_id[:20]!r}: {exc}", flush=True)
    return zc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.lab.hostile", description=__doc__)
    parser.add_argument("--community", required=True)
    parser.add_argument("--address", action="append", required=True)
    parser.add_argument("--fake-ids", type=int, default=40)
    parser.add_argument("--oversize", type=int, default=20_000_000)
    parser.add_argument("--victim", action="append", default=[])
    parser.add_argument("--broker-port", type=int, default=defaults.BROKER_PORT)
    args = parser.parse_args(argv)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-{os.getpid()}")
    client.connect("127.0.0.1", args.broker_port)
    client.loop_start()
    for topic, payload in payloads(args.community, args.victim, args.oversize):
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(60)
    ids = fake_ids(args.fake_ids, args.victim)
    zc = _announce(args.community, args.address, ids, args.broker_port)
    print(f"{READY}: {len(ids)} ids announced on {', '.join(args.address)}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    junk = [b"[" * 3000, b"{", b"\x00\x01", json.dumps({"seq": -1}).encode()]
    sent = 0
    while not stop.wait(JUNK_EVERY_S):
        victim = args.victim[sent % len(args.victim)] if args.victim else secrets.token_hex(16)
        kind = list(Kind)[sent % len(Kind)]
        client.publish(record_topic(args.community, victim, kind), junk[sent % len(junk)], qos=0)
        sent += 1
    print(f"hostile: stopping after {sent} live junk messages", flush=True)
    zc.close()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
