"""Running the real `mutualmesh` click app in tests."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner, Result

from cli.main import app


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])
