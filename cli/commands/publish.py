"""`mutualmesh publish`: put a signed admin record (a revocation) on any node's broker.

Retained on `mesh/v1/<community>/_revocations/<node_id>`: agents relay it like any record, so one
broker is enough for it to reach the whole mesh.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from cli.errors import Unreachable, UserError
from cli.read.source import parse_broker
from meshd.topics import revocation_topic
from meshd.trust import Revocation
from meshd.validate import Invalid


def load_revocation(file: Path) -> Revocation:
    try:
        return Revocation.from_json(json.loads(file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(
            "file not found",
            where=str(file),
            fix="write one with `mutualmesh node revoke HOSTNAME`",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"cannot read a revocation ({exc})",
            where=str(file),
            fix="pass a revocations/<host>.json file",
        ) from None
    except Invalid as exc:
        raise UserError(
            f"not a valid revocation: {exc}",
            where=str(file),
            fix="write it again with `mutualmesh node revoke HOSTNAME`",
        ) from None


async def _publish(host: str, port: int, topic: str, payload: bytes, seconds: float) -> None:
    import aiomqtt

    async with asyncio.timeout(seconds), aiomqtt.Client(host, port, timeout=seconds) as client:
        await client.publish(topic, payload, qos=1, retain=True)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--broker", required=True, help="ADDR[:PORT] of any node's broker.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds.")
@click.option("--dry-run", is_flag=True, help="Show topic and payload; send nothing.")
def publish(file: Path, broker: str, timeout: float, dry_run: bool) -> None:
    """Publish FILE (a signed revocation) as a retained message."""
    host, port = parse_broker(broker)
    revocation = load_revocation(file)
    topic = revocation_topic(revocation.community, revocation.node_id)
    payload = revocation.encode()
    click.echo(f"topic {topic} ({len(payload)} bytes, retained) -> {host}:{port}")
    if dry_run:
        click.echo(payload.decode())
        return
    try:
        asyncio.run(_publish(host, port, topic, payload, timeout))
    except Exception as exc:  # aiomqtt raises its own and OS errors; all mean "not reached"
        raise Unreachable(
            f"cannot publish to {host}:{port} ({exc})",
            where="--broker",
            fix="check the address and that the node's broker listens there",
        ) from None
    click.echo(f"published: every agent drops {revocation.node_id}'s records and refuses new ones")
