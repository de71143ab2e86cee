"""Pieces the bench scripts share: a link row with every measurement filled in, and the run of one
core version's child process that reports its figures as JSON on stdout."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
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


def best_of_both(
    child: str, root: Path, baseline: str, spec: dict[str, object], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The lowest figure of `rounds` children each, for `baseline`'s meshd (from git) and this
    tree's, alternated so load from elsewhere hits both alike."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", "--format=tar", baseline, "meshd"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(base, filter="data")
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec))
        before: dict[str, float] = {}
        after: dict[str, float] = {}
        for _ in range(rounds):
            for best, where in ((before, base), (after, root)):
                for name, value in run_child(child, where, spec_file).items():
                    best[name] = min(value, best.get(name, value))
    return before, after
