"""A router made with `mutualmesh node add` joins a real lab mesh; after `node revoke` and
`publish` its records vanish from every broker and new ones are refused.

Real babeld, mosquitto and meshd agents in namespaces (the lab); the node's key and certificate
come from the provisioning CLI, signed by the lab community's admin key.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from cli.lab import agent as lab_agent
from cli.lab.lab import Lab
from cli.lab.topology import chain
from tests.clikit import invoke
from tests.lab.labkit import FAST_AGENT, lab_name, skip_reason, wait_subscribed
from tests.lab.test_agent_mesh import Watch

pytestmark = pytest.mark.lab

MUTUALMESH = str(Path(sys.executable).with_name("mutualmesh"))


def wait_for(predicate, timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_node_add_joins_and_revocation_removes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MUTUALMESH_CONFIG_DIR", str(tmp_path / "config"))
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab(lab_name("j"), chain(3), agents=False, echo=print)
    watches: dict[str, Watch] = {}
    try:
        lab.up(timeout=60)
        nodes = lab.node_names()
        joiner = nodes[-1]
        lab_agent.provision_identities(lab.topology, lab.run_dir)

        # The community folder: the lab's signed community.yaml, the lab admin's key.
        folder = tmp_path / "community"
        folder.mkdir()
        shutil.copy(lab.run_dir / "community.yaml", folder / "community.yaml")
        admin_key = lab.run_dir / "admin.key"
        # The lab's file has no trust/ chain yet: its admin starts one (version 1).
        adopted = invoke("community", "adopt", "--dir", folder, "--admin-key", admin_key)
        assert adopted.exit_code == 0, adopted.output
        added = invoke(
            "node", "add", joiner, "--model", "cudy_wr3000-v1", "--dir", folder,
            "--admin-key", admin_key,
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        bundle = folder / "build" / joiner / "etc" / "meshd"
        files = lab_agent.AgentFiles.of(lab.run_dir, joiner)
        files.key.write_bytes((bundle / "node.key").read_bytes())
        files.key.chmod(0o600)
        files.cert.write_bytes((bundle / "cert.json").read_bytes())
        from provisioning.keys import load_private_key

        joiner_id = load_private_key(files.key).node_id

        watches = {n: Watch(lab, n) for n in nodes}
        wait_subscribed(lab, nodes)
        for n in nodes:
            lab.start_agent(n, FAST_AGENT)

        node_topic = f"mesh/v1/{lab_agent.COMMUNITY}/{joiner_id}/node"

        def everywhere() -> bool:
            return all(node_topic in w.latest() for w in watches.values())

        assert wait_for(everywhere, 90), {n: sorted(w.latest()) for n, w in watches.items()}

        revoked = invoke("node", "revoke", joiner, "--dir", folder, "--admin-key", admin_key)
        assert revoked.exit_code == 0, revoked.output
        revocation = folder / "revocations" / f"{joiner}.json"
        assert (
            lab.exec(
                nodes[0], [MUTUALMESH, "publish", str(revocation), "--broker", "127.0.0.1:1883"]
            )
            == 0
        )
        revoked_at = time.time()
        prefix = f"mesh/v1/{lab_agent.COMMUNITY}/{joiner_id}/"

        def gone() -> bool:
            return all(
                not any(t.startswith(prefix) for t in w.latest())
                for n, w in watches.items()
                if n != joiner
            )

        assert wait_for(gone, 60), {n: sorted(w.latest()) for n, w in watches.items()}
        # The joiner keeps publishing; nobody else may take its records any more. Its neighbours
        # must have refused at least three of its records since (their agents count them).
        near = lab.topology.neighbours(joiner)

        def refused(n: str) -> int:
            status = lab_agent.read_status(
                lab.ns(n), lab_agent.AgentFiles.of(lab.run_dir, n).status, lab_agent.METRICS_PORT
            )
            return int(status.get("rejections", {}).get("revoked", 0))

        base = {n: refused(n) for n in near}
        assert wait_for(lambda: all(refused(n) >= base[n] + 3 for n in near), 30), base
        for n, w in watches.items():
            if n == joiner:
                continue
            late = [
                topic
                for t, topic, _, payload in list(w.messages)
                if t > revoked_at + 5 and topic.startswith(prefix) and payload
            ]
            assert not late, (n, late)
    finally:
        for w in watches.values():
            w.stop()
        lab.down()
