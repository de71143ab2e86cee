"""The labs on this machine, as `lab list` shows them, and which of them are stale."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.lab import netns, procs
from cli.lab.procs import ProcRecord
from cli.lab.state import RUN_BASE, list_labs, lock_held, ns_prefix, proc_is, run_dir_of


@dataclass
class LabInfo:
    """One lab on this machine as `lab list` shows it; `stale` says why it is left over."""

    name: str
    phase: str
    spec: str | None
    nodes: int
    namespaces: int
    owner: int | None
    stale: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "topology": self.spec,
            "nodes": self.nodes,
            "namespaces": self.namespaces,
            "owner_pid": self.owner,
            "stale": self.stale,
        }


def lab_info(name: str, base: Path = RUN_BASE) -> LabInfo:
    """What is known about lab `name`, and whether it is stale.

    Stale means nobody will ever remove it but `lab down`: its owning process (a test run) is
    gone, the `lab up` that built it died half-way, none of its processes runs any more, or
    only namespaces are left without a state file. A lab whose lock is held is never stale.
    """
    run_dir = run_dir_of(name, base)
    namespaces = [ns for ns in netns.list_netns() if ns.startswith(ns_prefix(name))]
    try:
        data = json.loads((run_dir / "state.json").read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        data = None
    if data is None:
        young = run_dir.exists() and time.time() - run_dir.stat().st_mtime < 30
        orphan = None if young or lock_held(run_dir) else "no state file (left by a crash)"
        return LabInfo(name, "unknown", None, 0, len(namespaces), None, orphan)
    phase = str(data.get("phase", "unknown"))
    topo = data.get("topology") or {}
    owner = data.get("owner")
    writer = data.get("writer")
    recs = [ProcRecord.from_json(v) for v in (data.get("procs") or {}).values()]
    stale: str | None = None
    if owner and not proc_is(int(owner[0]), int(owner[1])):
        stale = f"its owner (pid {owner[0]}) is gone"
    elif phase != "up" and writer and not proc_is(int(writer[0]), int(writer[1])):
        stale = f"the process that was building it (pid {writer[0]}) is gone"
    elif phase == "up" and recs and not any(procs.alive(r) for r in recs):
        stale = "none of its processes runs any more"
    if stale and lock_held(run_dir):
        stale = None
    return LabInfo(
        name,
        phase,
        str(topo.get("spec")) if topo else None,
        len(topo.get("nodes", [])) if topo else 0,
        len(namespaces),
        int(owner[0]) if owner else None,
        stale,
    )


def list_lab_infos(base: Path = RUN_BASE) -> list[LabInfo]:
    return [lab_info(name, base) for name in list_labs(base)]
