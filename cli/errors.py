"""User-facing errors and exit codes shared by every command."""

from __future__ import annotations

from enum import IntEnum

import click


class ExitStatus(IntEnum):
    """Documented exit codes (README lists them); scripts may rely on them."""

    OK = 0
    ERROR = 1
    USAGE = 2  # bad input: a file, flag or value the user gave is wrong
    FINDINGS = 3  # audit found problems
    UNREACHABLE = 4  # no broker or node could be reached


class UserError(click.ClickException):
    """A mistake the user can fix: printed as what/where/fix, never as a traceback."""

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        fix: str | None = None,
        status: ExitStatus = ExitStatus.USAGE,
    ) -> None:
        parts = [what]
        if where:
            parts.append(f"  where: {where}")
        if fix:
            parts.append(f"  fix:   {fix}")
        super().__init__("\n".join(parts))
        self.status = status

    @property
    def exit_code(self) -> int:  # type: ignore[override]  # click reads it for the exit status
        return int(self.status)

    def show(self, file: object = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)
