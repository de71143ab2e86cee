"""Entry point of the `mutualmesh` admin CLI.

Subcommands live in `cli.commands.<module>` and are imported only when invoked, so
`mutualmesh --help` stays fast and one broken optional dependency cannot break every command.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from cli.errors import UserError
from meshd import __version__
from meshd.errors import FixableError

# name -> (module, attribute, one-line help shown in `mutualmesh --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "community": ("cli.commands.community", "community", "Create, check and sign a community."),
    "node": ("cli.commands.node", "node", "Add, image, push and revoke routers."),
    "publish": ("cli.commands.publish", "publish", "Put a signed admin record on a broker."),
    "lab": ("cli.commands.lab", "lab", "Run a real mesh of namespaces on this machine."),
    "snapshot": ("cli.commands.snapshot", "snapshot", "Save the verified records of the mesh."),
    "nodes": ("cli.commands.nodes", "nodes", "List the nodes of the mesh."),
    "links": ("cli.commands.links", "links", "Show link quality in both directions."),
    "contrib": ("cli.commands.contrib", "contrib", "Who contributes what, and is it verified."),
    "audit": ("cli.commands.audit", "audit", "Find what is wrong or concentrated in the mesh."),
    "diagnose": ("cli.commands.diagnose", "diagnose", "Explain the path between two nodes."),
    "topology": ("cli.commands.topology", "topology", "Export the mesh as NetJSON, DOT, PNG."),
    "report": ("cli.commands.report", "report", "One HTML file for a community meeting."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(
            name for name, (mod, _, _) in COMMANDS.items() if importlib.util.find_spec(mod)
        )

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        if importlib.util.find_spec(module_name) is None:
            return None
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> object:
        """The one place a package's fixable error becomes a message and an exit status."""
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except FixableError as exc:
            raise UserError.of(exc) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mutualmesh")
def app() -> None:
    """mutualmesh: run and audit a community Wi-Fi mesh with no central server.

    Exit codes: 0 ok, 1 error, 2 bad input, 3 audit findings, 4 mesh unreachable.
    """


def main() -> None:
    """Console-script entry point."""
    app.main(args=sys.argv[1:], prog_name="mutualmesh")
