"""How results reach people and scripts: rich tables on a terminal, plain columns when piped,
JSON with --json, CSV where asked. NO_COLOR turns colour off (rich honours it too).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import click

T = TypeVar("T")

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
    "pending": "yellow",
    "disputed": "yellow",
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


# Control characters in a record's text (hostnames, reasons) must not reach the terminal.
_CONTROL = dict.fromkeys([*range(32), 127], "?")


def clean(text: str) -> str:
    return text.translate(_CONTROL)


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    right: Sequence[str] = (),
) -> None:
    """A table: rich on a terminal, aligned plain text otherwise (stable for grep and awk).

    Every cell and the title go to rich as `Text`, never as markup: a value from a record that
    starts with `[` or a backslash is shown as typed and cannot open styles or links.
    """
    cells = [[clean("-" if c is None else str(c)) for c in row] for row in rows]
    if is_terminal():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console(no_color=not colour_allowed(), highlight=False)
        t = Table(
            title=None if title is None else Text(clean(title)),
            title_justify="left",
            header_style="bold",
        )
        for col in columns:
            t.add_column(Text(col), justify="right" if col in right else "left")
        for row in cells:
            t.add_row(*[Text(c, style=STYLE.get(c, "")) for c in row])
        console.print(t)
        return
    if title:
        click.echo(clean(title))
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


# -- views: columns described once, rendered as a table, CSV or JSON --------------------------


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column of a view, said once for every format.

    `header`/`cell`: the table's column (no header: not in the table); `json`: the key and value
    in each JSON object; `csv`: the CSV fields it becomes (default: the JSON key and value).
    """

    header: str | None
    cell: Callable[[T], Any] | None = None
    json: tuple[str, Callable[[T], Any]] | None = None
    csv: tuple[tuple[str, Callable[[T], Any]], ...] | None = None
    right: bool = False

    def csv_fields(self) -> tuple[tuple[str, Callable[[T], Any]], ...]:
        if self.csv is not None:
            return self.csv
        return (self.json,) if self.json is not None else ()


class View(Generic[T]):
    """A list of items and its columns; `emit` picks the format."""

    def __init__(self, columns: Sequence[Column[T]]) -> None:
        self.columns = list(columns)

    def json_rows(self, items: Iterable[T]) -> list[dict[str, Any]]:
        keyed = [c.json for c in self.columns if c.json is not None]
        return [{key: get(x) for key, get in keyed} for x in items]

    def emit(
        self,
        items: Sequence[T],
        fmt: str,
        *,
        title: str | None = None,
        json_key: str = "items",
        json_extra: Mapping[str, Any] | None = None,
    ) -> None:
        if fmt == "json":
            emit_json({**(json_extra or {}), json_key: self.json_rows(items)})
        elif fmt == "csv":
            fields = [f for c in self.columns for f in c.csv_fields()]
            emit_csv([k for k, _ in fields], [[get(x) for _, get in fields] for x in items])
        else:
            shown = [c for c in self.columns if c.header is not None and c.cell is not None]
            table(
                [str(c.header) for c in shown],
                [[c.cell(x) for c in shown if c.cell is not None] for x in items],
                title=title,
                right=[str(c.header) for c in shown if c.right],
            )


def output_format(as_json: bool, as_csv: bool = False) -> str:
    return "json" if as_json else "csv" if as_csv else "table"


def say(text: str = "", *, style: str | None = None, err: bool = False) -> None:
    if style and colour_allowed() and not err:
        click.secho(text, fg=style)
    else:
        click.echo(text, err=err)


def human_bytes(n: float | None, *, binary: bool = False) -> str:
    """The one byte formatter: decimal units (kB = 1000 B) for counters people compare with
    their ISP's bill, binary ones (KiB) where the lab reports iperf3 transfers."""
    if n is None:
        return "-"
    value, step = float(n), 1024 if binary else 1000
    units = ("B", "KiB", "MiB", "GiB", "TiB") if binary else ("B", "KB", "MB", "GB", "TB")
    for unit in units:
        if abs(value) < step or unit == units[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= step
    return f"{value:.1f} {units[-1]}"


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
