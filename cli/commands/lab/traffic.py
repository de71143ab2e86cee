"""`lab traffic`: real TCP traffic between two nodes with iperf3."""

from __future__ import annotations

import click

from cli.commands.lab.common import load, name_option, require_root


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--seconds", "-s", default=3.0, show_default=True, help="How long to send.")
@name_option
def traffic(a: str, b: str, seconds: float, name: str) -> None:
    """Send real TCP traffic from node A to node B (or `internet`) with iperf3."""
    from cli.output import human_bytes

    require_root("traffic", f"traffic {a} {b} --name {name}")
    lab = load(name)
    lab.require_up()
    r = lab.traffic(a, b, seconds)
    click.echo(
        f"{a} -> {b}: sent {r.sent_bytes} bytes ({human_bytes(r.sent_bytes, binary=True)}), "
        f"received "
        f"{r.received_bytes} bytes in {r.seconds:.1f}s = {r.receiver_mbps:.1f} Mbit/s"
    )
