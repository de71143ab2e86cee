"""`lab impair`: make a link lossy, slow or long; its flags come from `cli.lab.impair.OPTIONS`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cli.commands.lab.common import load, name_option, require_root
from cli.errors import UserError
from cli.lab.impair import OPTIONS


def _impair_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """One `--NAME` flag per impairment option, in table order."""
    for opt in reversed(OPTIONS):
        func = click.option(f"--{opt.name}", opt.name, type=opt.kind, help=opt.help)(func)
    return func


@click.command()
@click.argument("a")
@click.argument("b")
@_impair_options
@click.option("--one-way", is_flag=True, help="Impair only the direction from A to B.")
@name_option
def impair(a: str, b: str, one_way: bool, name: str, **given: Any) -> None:
    """Make link A-B lossy, slow or long (values not given stay as they were)."""
    if all(v is None for v in given.values()):
        flags = ", ".join(f"--{opt.name}" for opt in OPTIONS)
        raise UserError("nothing to do", fix=f"give {flags} (or use `lab heal`)")
    _require_valid(given)
    require_root("impair", f"impair {a} {b} --name {name}")
    imp = load(name).impair(a, b, one_way=one_way, **given)
    click.echo(f"{a}-{b}: {imp.describe()}")


def _require_valid(given: dict[str, Any]) -> None:
    """Bad values are refused before anything is touched (segment loss may reach 100)."""
    from cli.lab.impair import BY_NAME

    for key, value in given.items():
        if value is not None and not (key == "loss" and value == 100):
            BY_NAME[key].parse(value)
