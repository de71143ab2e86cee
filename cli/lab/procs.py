"""Processes the lab starts: launch in a namespace, remember (pid, start time), check, stop.

A pid alone is not an identity: after a crash the lab may be torn down much later, when the pid
belongs to someone else. The kernel's start time of the process (field 22 of /proc/PID/stat) is
recorded with it, and a process is only signalled when both still match.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cli.lab import netns

# Children started by this Python process, so they can be reaped (no zombies in tests).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class ProcRecord:
    """A process the lab started; saved in the lab's state file."""

    name: str  # e.g. "n3/babeld", "internet/sink", "link/n2-n3/relay"
    ns: str
    pid: int
    start_time: int
    argv: list[str]
    log: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcRecord:
        return cls(
            name=str(data["name"]),
            ns=str(data["ns"]),
            pid=int(data["pid"]),
            start_time=int(data["start_time"]),
            argv=[str(a) for a in data["argv"]],
            log=str(data["log"]),
        )


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # the command name is in parentheses and may itself contain spaces or parentheses
    rest = raw[raw.rfind(")") + 2 :].split()
    try:
        return rest[0], int(rest[19])
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int:
    st = _stat(pid)
    return st[1] if st else 0


def alive(rec: ProcRecord) -> bool:
    """True if the recorded process still runs (zombies and reused pids count as dead)."""
    child = _children.get(rec.pid)
    if child is not None and child.poll() is not None:
        _children.pop(rec.pid, None)
        return False
    st = _stat(rec.pid)
    return st is not None and st[0] not in ("Z", "X") and st[1] == rec.start_time


def pid_alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _net_inode(link: str) -> int | None:
    return int(link[5:-1]) if link.startswith("net:[") and link.endswith("]") else None


def in_netns(inodes: set[int]) -> list[int]:
    """Live processes inside one of the namespaces `inodes`, or holding one open (and so able
    to enter it later, as `ip netns exec` does between opening and entering), even unmounted."""
    found = []
    for pid in _pids():
        try:
            links = [os.readlink(f"/proc/{pid}/ns/net")]
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        if any(_net_inode(x) in inodes for x in links) and pid_alive(pid) and pid != os.getpid():
            found.append(pid)
    return found


def entering(prefix: str) -> list[int]:
    """Live `ip netns exec NS ...` processes (how the lab spawns) for a namespace named prefix*."""
    found = []
    for pid in _pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        head = [a.decode(errors="replace") for a in argv[:4]]
        if (
            len(head) == 4
            and head[0].rsplit("/", 1)[-1] == "ip"
            and head[1:3] == ["netns", "exec"]
            and head[3].startswith(prefix)
            and pid_alive(pid)
        ):
            found.append(pid)
    return found


def spawn(name: str, ns: str, argv: Sequence[str], log: Path) -> ProcRecord:
    """Start `argv` inside `ns` in the foreground of its own session, output to `log`."""
    full = netns.nsexec(ns, *argv)
    with open(log, "ab") as out:
        child = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C or a closed terminal must not take the mesh down
            close_fds=True,
        )
    _children[child.pid] = child
    return ProcRecord(name, ns, child.pid, start_time(child.pid), list(argv), str(log))


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=1)
        except subprocess.TimeoutExpired:
            _children[pid] = child


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop_pids(pids: Iterable[int], grace: float = 1.0) -> None:
    """SIGTERM, wait up to `grace` seconds (polling), then SIGKILL what is left; reap our own."""
    todo = [p for p in set(pids) if p > 1 and p != os.getpid()]
    for pid in todo:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while True:
        for pid in todo:
            if pid in _children and _children[pid].poll() is not None:
                _reap(pid)
        todo = [p for p in todo if pid_alive(p)]
        if not todo or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for pid in todo:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while todo and time.monotonic() < deadline:
        for pid in todo:
            if pid in _children:
                _reap(pid)
        todo = [p for p in todo if pid_alive(p)]
        if todo:
            time.sleep(0.02)


def stop(records: Iterable[ProcRecord], grace: float = 1.0) -> None:
    """Stop recorded processes that are still the ones we started."""
    stop_pids([r.pid for r in records if alive(r)], grace)


def send(rec: ProcRecord, sig: int) -> bool:
    if not alive(rec):
        return False
    _signal(rec.pid, sig)
    return True


def log_tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
