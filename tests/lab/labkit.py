"""Lab test helpers: skip reasons, unique lab names, snapshots of what a lab leaves behind."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.lab import netns
from cli.lab.lab import Lab, missing_requirements
from cli.lab.topology import Topology


def skip_reason() -> str | None:
    missing = missing_requirements()
    return "lab needs " + "; ".join(missing) if missing else None


# Labs the tests name (`lab_name`); the only ones the suite's stale-lab reaper may remove.
TEST_LAB_RE = re.compile(r"^t\d")


def lab_name(suffix: str) -> str:
    """Short and unique per test process, so parallel runs and a user's own lab never clash."""
    return f"t{os.getpid() % 100000}{suffix}"[:8]


@contextmanager
def running_lab(name: str, topo: Topology) -> Iterator[Lab]:
    """A built lab that is removed afterwards, whatever happens in between."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(name, topo, agents=False, echo=print)
    try:
        lab.up(timeout=60)
        yield lab
    finally:
        lab.down()


def live_processes() -> dict[int, str]:
    """pid -> command line of every process that is not a zombie."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat[stat.rfind(")") + 2] in "ZX":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out[int(entry.name)] = cmd.strip()
    return out


def netns_inodes(prefix: str) -> set[int]:
    """Kernel identities of our namespaces: a process still inside one shows `net:[INODE]`."""
    inodes = set()
    for ns in netns.list_netns():
        if ns.startswith(prefix):
            with suppress(OSError):
                inodes.add((netns.NETNS_DIR / ns).stat().st_ino)
    return inodes


def processes_in(inodes: set[int]) -> dict[int, str]:
    """Live processes whose network namespace is one of `inodes` (even if it was unmounted)."""
    found = {}
    for pid, cmd in live_processes().items():
        try:
            link = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if link.startswith("net:[") and int(link[5:-1]) in inodes:
            found[pid] = cmd
    return found


def nft_tables() -> list[str]:
    proc = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return sorted(proc.stdout.splitlines())


@dataclass
class Snapshot:
    """What the host looks like before a lab, to compare with after it is gone."""

    namespaces: set[str]
    pids: set[int]
    nft: list[str]

    @classmethod
    def take(cls) -> Snapshot:
        return cls(set(netns.list_netns()), set(live_processes()), nft_tables())

    def leftovers(self, prefix: str, run_dir: Path, inodes: set[int]) -> list[str]:
        """Everything a lab with this prefix left behind; empty when teardown was complete."""
        problems = []
        now = set(netns.list_netns())
        ours = sorted(ns for ns in now - self.namespaces if ns.startswith(prefix))
        if ours:
            problems.append(f"namespaces left: {ours}")
        new = {p: c for p, c in live_processes().items() if p not in self.pids}
        mentioning = {p: c for p, c in new.items() if str(run_dir) in c or prefix in c}
        if mentioning:
            problems.append(f"processes left: {mentioning}")
        inside = processes_in(inodes)
        if inside:
            problems.append(f"processes still in our namespaces: {inside}")
        if nft_tables() != self.nft:
            problems.append(f"nft tables changed: {self.nft} -> {nft_tables()}")
        if run_dir.exists():
            problems.append(f"run dir left: {run_dir}")
        return problems
