"""Pieces the bench scripts share: a link row with every measurement filled in, and the run of one
core version's child process that reports its figures as JSON on stdout."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from meshd.records import LinkEntry


def measured_link(peer: str, rng: random.Random) -> LinkEntry:
    """A wifi link to `peer` with every optional measurement set, the largest a link row gets."""
    return LinkEntry(
        peer,
        "mesh0",
        "wifi",
        True,
        256,
        256 + rng.randrange(64),
        round(rng.uniform(1, 30), 4),
        round(rng.uniform(0.8, 1), 4),
        round(rng.uniform(0.8, 1), 4),
        round(rng.uniform(0, 0.2), 4),
        round(rng.uniform(1, 1.5), 4),
        -rng.randrange(40, 90),
        round(rng.uniform(6, 300), 1),
        round(rng.uniform(3, 150), 2),
    )


def run_child(child: str, meshd_parent: Path, spec_file: Path) -> dict[str, float]:
    """Run the `child` script with only `meshd_parent` on its path, so it imports that `meshd`."""
    out = subprocess.run(
        [sys.executable, "-c", child, str(spec_file)],
        env={"PYTHONPATH": str(meshd_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        cwd=meshd_parent,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result
