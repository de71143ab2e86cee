"""User-facing errors and exit codes shared by every command.

Every package raises a `meshd.errors.FixableError` (what / where / fix) for a mistake a person
can correct. This module is the one place that turns such an error into a printed message and an
exit status: `LazyGroup` in `cli.main` translates any that escapes a command, so commands raise
their package's own error and never re-wrap it by hand.
"""

from __future__ import annotations

from enum import IntEnum

import click

from meshd.errors import FixableError


class ExitStatus(IntEnum):
    """Documented exit codes (README lists them); scripts may rely on them."""

    OK = 0
    ERROR = 1
    USAGE = 2  # bad input: a file, flag or value the user gave is wrong
    FINDINGS = 3  # audit found problems
    UNREACHABLE = 4  # no broker or node could be reached


class Unreachable(FixableError):
    """No broker or node answered: the mesh, not the user's input, is the problem."""


class ToolFailed(FixableError):
    """A program or probe this machine runs failed (Graphviz missing, no root for a probe)."""


class BadInput(FixableError):
    """The user's input is wrong. Unlisted kinds already exit USAGE; a subclass of a kind that
    exits otherwise names this first among its bases to say "this one is the user's input"."""


#: The exit status of each kind of error; a kind not listed here is bad input (USAGE).
#: Other packages' error classes can be added here without touching a command.
EXIT_STATUS: dict[type[FixableError], ExitStatus] = {
    Unreachable: ExitStatus.UNREACHABLE,
    ToolFailed: ExitStatus.ERROR,
    BadInput: ExitStatus.USAGE,
}


def exit_status_of(exc: FixableError) -> ExitStatus:
    for cls in type(exc).__mro__:
        if cls in EXIT_STATUS:
            return EXIT_STATUS[cls]
    return ExitStatus.USAGE


def render(what: str, where: str | None, fix: str | None) -> str:
    parts = [what]
    if where:
        parts.append(f"  where: {where}")
    if fix:
        parts.append(f"  fix:   {fix}")
    return "\n".join(parts)


class UserError(click.ClickException, FixableError):
    """A mistake the user can fix: printed as what/where/fix, never as a traceback."""

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        status: ExitStatus = ExitStatus.USAGE,
    ) -> None:
        super().__init__(render(what, where, fix))
        self.what, self.where, self.fix = what, where, fix
        self.status = status

    @classmethod
    def of(cls, exc: FixableError) -> UserError:
        """The one translation from any package's fixable error to a CLI exit."""
        if isinstance(exc, UserError):
            return exc
        return cls(exc.what, where=exc.where, fix=exc.fix, status=exit_status_of(exc))

    @property
    def exit_code(self) -> int:  # type: ignore[override]  # click reads it for the exit status
        return int(self.status)

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
