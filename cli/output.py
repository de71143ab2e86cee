"""How results reach people and scripts: rich tables on a terminal, plain columns when piped,
JSON with --json, CSV where asked. NO_COLOR turns colour off (rich honours it too).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

STYLE = {
    "good": "green",
    "verified": "green",
    "ok": "green",
    "online": "green",
    "lossy": "yellow",
    "asymmetric": "yellow",
    "warning": "yellow",
    "stale": "yellow",
    "unchecked": "yellow",
    "flapping": "red",
    "one-sided": "red",
    "down": "red",
    "critical": "red",
    "contradicted": "red",
    "offline": "red",
}


def is_terminal() -> bool:
    return sys.stdout.isatty()


def colour_allowed() -> bool:
    return is_terminal() and not os.environ.get("NO_COLOR")


@contextmanager
def progress_status(message: str, *, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while something slow runs; silent when stderr is not a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _text: None
        return
    from rich.console import Console

    console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")))
    with console.status(message) as status:
        yield lambda text: status.update(text)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def emit_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    click.echo(buf.getvalue(), nl=False)


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    right: Sequence[str] = (),
) -> None:
    """A table: rich on a terminal, aligned plain text otherwise (stable for grep and awk)."""
    cells = [["-" if c is None else str(c) for c in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table

        console = Console(no_color=not colour_allowed(), highlight=False)
        t = Table(title=title, title_justify="left", header_style="bold")
        for col in columns:
            t.add_column(col, justify="right" if col in right else "left")
        for row in cells:
            t.add_row(*[f"[{STYLE[c]}]{c}[/]" if c in STYLE else _escape(c) for c in row])
        console.print(t)
        return
    if title:
        click.echo(title)
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)).rstrip())
    for row in cells:
        click.echo(
            "  ".join(
                c.rjust(w) if col in right else c.ljust(w)
                for c, w, col in zip(row, widths, columns, strict=False)
            ).rstrip()
        )


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def say(text: str = "", *, style: str | None = None, err: bool = False) -> None:
    if style and colour_allowed() and not err:
        click.secho(text, fg=style)
    else:
        click.echo(text, err=err)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def parse_duration(text: str) -> int:
    """'90s', '15m', '24h', '7d', '2w' -> seconds; click-friendly error otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    if len(t) >= 2 and t[-1] in units and t[:-1].isdigit() and int(t[:-1]) > 0:
        return int(t[:-1]) * units[t[-1]]
    raise click.BadParameter(f"{text!r} is not a duration; use e.g. 90s, 15m, 24h, 7d, 2w")
