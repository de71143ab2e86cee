"""`mutualmesh lab`: build, break and inspect a real mesh of namespaces on this machine.

One module per subcommand; `common` holds what they share and `demo` the narrated tour.
"""

from __future__ import annotations

import click

from cli.commands.lab import (
    cut,
    demo,
    down,
    heal,
    impair,
    kill,
    listing,
    restore,
    run,
    start,
    status,
    traffic,
    up,
    view,
)


@click.group()
def lab() -> None:
    """Run a real mesh of network namespaces on this machine (needs root).

    Each node is a namespace with its own babeld and mosquitto (and meshd with --agents);
    links are veth pairs that `impair`, `cut` and `restore` can break in real ways.
    """


for _command in (
    up.up,
    down.down,
    listing.list_,
    status.status,
    impair.impair,
    heal.heal,
    cut.cut,
    restore.restore,
    run.exec_,
    traffic.traffic,
    view.view,
    kill.kill,
    start.start,
    demo.demo,
):
    lab.add_command(_command)

__all__ = ["lab"]
