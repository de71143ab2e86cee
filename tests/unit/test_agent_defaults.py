"""The agent takes its shared facts from meshd.defaults (one home), and says its version."""

from __future__ import annotations

import subprocess
import sys

from meshd import defaults
from node_agent.config import Config, build_parser


def test_meshd_version_prints_the_one_version():
    out = subprocess.run(
        [sys.executable, "-m", "node_agent", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"meshd {defaults.VERSION}"


def test_ports_default_to_meshd_defaults():
    fields = Config.__dataclass_fields__
    assert fields["broker_port"].default == defaults.BROKER_PORT
    assert fields["metrics_port"].default == defaults.HTTP_PORT
    assert fields["probe_port"].default == defaults.PROBE_PORT
    text = build_parser().format_help()
    assert f"(default {defaults.PROBE_PORT})" in text
