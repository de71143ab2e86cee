"""The agent's settings and start-up files: JSON without PyYAML, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from meshd.errors import FixableError
from node_agent.__main__ import main
from node_agent.config import ConfigError, read_data
from node_agent.trustpin import TrustError
from tests.agentkit import Broker, argv, free_port, provision

ROOT = Path(__file__).resolve().parents[2]

# Runs the real `meshd` entry point with the named modules unimportable, as on a router without
# python3-yaml or python3-openssl; prints, at exit, which of them got loaded after all.
BLOCKED_RUN = """
import atexit, json, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Blocker())
def report():
    held = [m for m in BLOCKED if m in sys.modules]
    real = sorted(m for m in held if getattr(sys.modules[m], "__file__", None))
    print(json.dumps({"loaded": real}), flush=True)
atexit.register(report)
from node_agent.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def as_json(tmp: Path) -> Path:
    target = tmp / "community.json"
    target.write_text(json.dumps(yaml.safe_load((tmp / "community.yaml").read_text())))
    return target


def test_the_agent_runs_from_a_json_community_with_yaml_and_ssl_unimportable(tmp_path):
    provision(tmp_path, ["solo"])
    broker = Broker(tmp_path, "local")
    try:
        cmd = argv(tmp_path, "solo", broker, free_port(__import__("socket").SOCK_DGRAM), [])
        cmd[cmd.index("--community-file") + 1] = str(as_json(tmp_path))
        blocked = "yaml,_yaml,ssl,_ssl,_hashlib"  # python3-openssl holds _ssl and _hashlib
        agent = subprocess.Popen(
            [sys.executable, "-c", BLOCKED_RUN, blocked, *cmd],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        status = tmp_path / "solo" / "status.json"
        deadline = time.monotonic() + 30
        held = 0
        while time.monotonic() < deadline and agent.poll() is None:
            try:
                held = json.loads(status.read_text())["records_held"]
            except (OSError, ValueError, KeyError):
                held = 0
            if held >= 1:  # its own record came back from the broker: MQTT works without ssl
                break
            time.sleep(0.2)
        agent.terminate()
        out, err = agent.communicate(timeout=20)
    finally:
        broker.stop()
    assert held >= 1, err[-2000:]
    assert agent.returncode == 0, err[-2000:]
    assert json.loads(out.splitlines()[-1]) == {"loaded": []}
    assert "Traceback" not in err


def test_json_needs_no_yaml_and_a_yaml_file_without_pyyaml_says_what_to_do(tmp_path):
    probe = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'yaml': raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, B())\n"
        "from node_agent.config import ConfigError, read_data\n"
        f"print(read_data(__import__('pathlib').Path({str(tmp_path / 'c.json')!r}), 'x'))\n"
        "try:\n"
        f"    read_data(__import__('pathlib').Path({str(tmp_path / 'c.yaml')!r}), 'x')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    (tmp_path / "c.json").write_text('{"name": "riverside"}')
    (tmp_path / "c.yaml").write_text("name: riverside\n")
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "{'name': 'riverside'}"
    assert "PyYAML is not installed" in out[1]
    assert "community.json" in out[1]
    assert read_data(tmp_path / "c.yaml", "x") == {"name": "riverside"}  # with PyYAML: works


def test_config_and_trust_errors_carry_what_where_and_fix():
    for cls in (ConfigError, TrustError):
        exc = cls("not a port", "--broker-port 0", "give a port 1..65535")
        assert isinstance(exc, FixableError)
        assert (exc.what, exc.where, exc.fix) == ("not a port", "--broker-port 0", exc.fix)
        assert str(exc) == "--broker-port 0: not a port. Fix: give a port 1..65535"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--broker-port", "0"], "meshd: --broker-port 0: not a port. Fix: give a port 1..65535"),
        (["--community-file", "{tmp}/bad.json"], "not valid JSON"),
        (["--community-file", "{tmp}/missing.json"], "cannot read"),
        (["--key", "{tmp}/bad.key"], "key file"),
    ],
)
def test_meshd_prints_one_line_and_exits_2(tmp_path, capsys, extra, expected):
    provision(tmp_path, ["solo"])
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "bad.key").write_text("garbage\n")
    cmd = [
        "--key", str(tmp_path / "solo" / "node.key"),
        "--cert", str(tmp_path / "solo" / "cert.json"),
        "--community-file", str(as_json(tmp_path)),
        "--state-dir", str(tmp_path / "state"),
        "--mesh-iface", "lo",
        "--hostname", "solo",
        "--no-mdns",
    ]  # fmt: skip
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1].format(tmp=tmp_path)
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = value
        else:
            cmd += [flag, value]
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshd: "), err
    assert err.count("\n") == 1, err
    assert expected in err
    assert "Fix: " in err
    assert "Traceback" not in err


def test_the_installed_command_has_no_traceback_for_a_user_mistake(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "node_agent", "--key", "k"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("meshd: missing --cert")
    assert run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr
