"""What every `mutualmesh lab` subcommand shares: --name, root, loading a lab.

Lab errors are `FixableError`s: `cli.errors` prints them and picks the exit status.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cli.errors import ExitStatus, UserError

if TYPE_CHECKING:
    from cli.lab.lab import Lab

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_NAME = os.environ.get("MUTUALMESH_LAB", "lab")


def name_option(func: F) -> F:
    return click.option(
        "--name",
        default=DEFAULT_NAME,
        show_default=True,
        help="Which lab (1-8 lowercase letters/digits); several labs can run side by side.",
    )(func)


def require_root(action: str, argv_hint: str) -> None:
    from cli.lab.lab import missing_requirements

    missing = missing_requirements()
    if missing:
        raise UserError(
            f"`lab {action}` cannot run here; missing: " + "; ".join(missing),
            fix=f"run it as root on Linux: sudo {sys.executable.rsplit('/', 1)[0]}/mutualmesh "
            f"lab {argv_hint}",
            status=ExitStatus.ERROR,
        )


def load(name: str) -> Lab:
    from cli.lab.lab import Lab

    return Lab.load(name, echo=click.echo)


def say(text: str) -> None:
    """A heading line of the demo and of hints: what the next block shows."""
    click.echo("")
    click.secho(text, bold=True)


def table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def flag(lab: Lab) -> str:
    """The `--name` to repeat in a suggested command (none for the default lab)."""
    return "" if lab.name == "lab" else f" --name {lab.name}"
