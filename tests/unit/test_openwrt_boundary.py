"""The router gets meshd and node_agent only: importing the agent loads nothing of the admin side.

The feed's filespec ships those two packages (openwrt/meshd/Makefile); an import of provisioning,
cli or an admin-only library from the agent would fail on the router at start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADMIN_ONLY = ("provisioning", "cli", "click", "rich", "networkx", "scapy")

# Everything the agent imports at start-up and to run, then the names of what got loaded.
PROBE = """
import json, sys
import node_agent.__main__, node_agent.agent, node_agent.trustpin, node_agent.config
import meshd.keyfile, meshd.trustchain
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules() -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_the_agent_loads_no_admin_module():
    modules = loaded_modules()
    assert "node_agent.agent" in modules  # the probe really imported the agent
    leaked = sorted(m for m in modules if m.split(".", 1)[0] in ADMIN_ONLY)
    assert not leaked, leaked


def test_the_agent_imports_nothing_from_provisioning_in_its_source():
    """Lazy imports inside functions too (a subprocess import only sees what runs at import)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "node_agent").rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.strip().startswith(("from provisioning", "import provisioning", "from cli"))
    ]
    assert not offenders, offenders
