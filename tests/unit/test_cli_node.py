"""`mutualmesh node` and `publish`: add, bad input, render, image/push dry runs, revoke."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from pathlib import Path

import pytest
import yaml

from meshd.community import parse_community
from meshd.ids import PublicKey
from meshd.topics import revocation_topic
from meshd.trust import Enrollment, Revocation
from provisioning.keys import load_private_key
from tests.clikit import invoke

ROOT = Path(__file__).resolve().parents[2]


def add(comm, hostname, *extra):
    directory, key = comm
    return invoke("node", "add", hostname, "--dir", directory, "--admin-key", key, *extra)


def snapshot(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_add_writes_registry_key_certificate_and_bundle(comm):
    directory, _ = comm
    result = add(
        comm, "bakery", "--model", "cudy_wr3000-v1", "--gateway", "--location", "52.5,13.4"
    )
    assert result.exit_code == 0, result.output
    registry = yaml.safe_load((directory / "nodes.yaml").read_text())["nodes"]
    assert [n["hostname"] for n in registry] == ["bakery"]
    entry = registry[0]
    community = parse_community(yaml.safe_load((directory / "community.yaml").read_text()))
    cert = Enrollment.from_json(entry["cert"])
    assert cert.problem(community.trust, now=0) is None
    node_key = load_private_key(directory / "secrets" / "bakery.key")
    assert node_key.public == PublicKey.from_text(entry["key"]) == cert.key
    assert entry["gateway"] is True
    assert entry["location"] == [52.5, 13.4]
    tree = directory / "build" / "bakery"
    assert (tree / "etc/meshd/node.key").read_text().strip().endswith(node_key.seed_text)
    assert (directory / "build" / "bakery.tar.gz").stat().st_size > 1000
    meshd = (tree / "etc/config/meshd").read_text()
    assert "option hostname 'bakery'" in meshd
    assert "gateway_network 'wan'" in meshd


def test_render_again_is_byte_identical(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "glinet_gl-b1300").exit_code == 0
    first = (directory / "build" / "bakery.tar.gz").read_bytes()
    result = invoke("node", "render", "bakery", "--dir", directory)
    assert result.exit_code == 0, result.output
    assert hashlib.sha256((directory / "build" / "bakery.tar.gz").read_bytes()).digest() == (
        hashlib.sha256(first).digest()
    )


def test_several_real_adds_never_collide(comm):
    directory, _ = comm
    for i in range(6):
        assert add(comm, f"n{i}", "--model", "zyxel_nwa50ax").exit_code == 0
    nodes = yaml.safe_load((directory / "nodes.yaml").read_text())["nodes"]
    for field in ("slot", "ipv4", "ipv4_client", "ipv6", "ipv6_client"):
        values = [n["addresses"][field] for n in nodes]
        assert len(set(values)) == len(values), field
    clients = [ipaddress.ip_network(n["addresses"]["ipv4_client"]) for n in nodes]
    assert not any(a.overlaps(b) for i, a in enumerate(clients) for b in clients[i + 1 :])


@pytest.mark.parametrize(
    ("args", "message", "fix"),
    [
        (["Bad_Host", "--model", "cudy_wr3000-v1"], "invalid hostname", "lowercase letters"),
        (["ok", "--model", "cudy-wr3000"], "unknown model", "did you mean cudy_wr3000-v1"),
        (["ok", "--model", "tplink_tl-wr841n-v14"], "32 MB RAM", "node models"),
        (["ok", "--model", "glinet_gl-ar150"], "64 MB RAM", "128 MB"),
        (["ok", "--model", "cudy_wr3000-v1", "--location", "north"], "--location", "LAT,LON"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(comm, args, message, fix):
    directory, _ = comm
    before = snapshot(directory)
    result = add(comm, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert fix in result.output
    assert "Traceback" not in result.output
    assert snapshot(directory) == before


def test_duplicate_hostname(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    before = snapshot(directory)
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1")
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert "pick another hostname" in result.output
    assert snapshot(directory) == before


def test_missing_community(tmp_path):
    result = invoke(
        "node",
        "add",
        "x",
        "--model",
        "cudy_wr3000-v1",
        "--dir",
        tmp_path / "none",
        "--admin-key",
        tmp_path / "k",
    )
    assert result.exit_code == 2
    assert "community folder not found" in result.output
    assert "community init" in result.output
    assert not (tmp_path / "none").exists()


def test_unwritable_output_leaves_no_partial_files(comm, tmp_path):
    directory, _ = comm
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    before = snapshot(directory)
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1", "--out", blocker / "out")
    assert result.exit_code == 2
    assert "cannot write the output" in result.output
    assert "--out" in result.output
    assert snapshot(directory) == before
    assert blocker.read_text() == "a file, not a folder"


def test_unsigned_change_blocks_node_add(comm):
    directory, _ = comm
    path = directory / "community.yaml"
    data = yaml.safe_load(path.read_text())
    data["mqtt"]["port"] = 1884
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1")
    assert result.exit_code == 2
    assert "signatures" in result.output
    assert "community sign" in result.output


def test_image_without_imagebuilder_prints_the_command(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "tplink_archer-c7-v5").exit_code == 0
    result = invoke("node", "image", "bakery", "--dir", directory)
    assert result.exit_code == 0, result.output
    assert "target ath79/generic" in result.output
    assert (
        "make image PROFILE=tplink_archer-c7-v5 'PACKAGES=meshd mosquitto-nossl ip-full babeld"
        in (result.output)
    )
    assert f"FILES={(directory / 'build' / 'bakery').resolve()}" in result.output


def test_image_with_a_folder_that_is_not_an_imagebuilder(comm, tmp_path):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    result = invoke("node", "image", "bakery", "--dir", directory, "--imagebuilder", tmp_path)
    assert result.exit_code == 2
    assert "not an OpenWrt Image Builder" in result.output


def test_push_dry_run_only_prints(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    result = invoke(
        "node", "push", "bakery", "--dir", directory, "--host", "192.0.2.1", "--dry-run"
    )
    assert result.exit_code == 0, result.output
    assert "scp -O" in result.output
    assert "root@192.0.2.1:/tmp/meshd-bundle.tar.gz" in result.output
    assert "/etc/uci-defaults/90-meshd-node" in result.output
    assert "dry run: nothing was done" in result.output


def test_models_lists_profiles_with_their_budget():
    result = invoke("node", "models")
    assert result.exit_code == 0
    assert result.output.endswith("\n")
    lines = result.output.splitlines()
    header = lines[0]
    assert "overlay" in header
    assert "status" in header
    table = lines[1 : lines.index("")]
    assert len(table) == 15
    # Aligned: the status column starts at the same place on every row.
    column = header.index("status")
    assert {line[column:].split()[0] for line in table} <= {"ok", "experimental", "refused"}
    assert any(line.startswith("tplink_tl-wr841n-v14") and "refused" in line for line in table)
    assert any(
        line.startswith("tplink_eap225-outdoor-v1") and "experimental" in line for line in table
    )


def test_models_json_has_the_numbers():
    result = invoke("node", "models", "--json")
    assert result.exit_code == 0
    rows = {r["profile"]: r for r in json.loads(result.output)}
    cudy = rows["cudy_wr3000-v1"]
    assert cudy["flash_mb"] == 16  # 16 MB SPI-NOR, not 128
    assert cudy["overlay_kib"] == (
        cudy["firmware_kib"] - cudy["base_kib_estimate"] - cudy["packages_kib_estimate"]
    )
    assert rows["ubnt_nanostation-m"]["target"] == "ath79/tiny"
    assert rows["tplink_eap225-outdoor-v1"]["status"] == "experimental"  # 0.9 MiB overlay


def test_list_json(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    result = invoke("node", "list", "--dir", directory, "--json")
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert entry["hostname"] == "bakery"
    assert entry["state"] == "active"


def test_revoke_then_publish_dry_run(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    result = invoke("node", "revoke", "bakery", "--dir", directory, "--admin-key", comm[1])
    assert result.exit_code == 0, result.output
    path = directory / "revocations" / "bakery.json"
    revocation = Revocation.from_json(json.loads(path.read_text()))
    community = parse_community(yaml.safe_load((directory / "community.yaml").read_text()))
    assert revocation.problem(community.trust) is None
    node_id = yaml.safe_load((directory / "nodes.yaml").read_text())["nodes"][0]["node_id"]
    assert revocation.node_id == node_id
    out = invoke("publish", path, "--broker", "[fd00::1]:1884", "--dry-run")
    assert out.exit_code == 0, out.output
    assert revocation_topic("riverside", node_id) in out.output
    assert "fd00::1:1884" in out.output
    assert revocation.encode().decode() in out.output


def test_publish_rejects_bad_input(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{}")
    assert invoke("publish", bad, "--broker", "h:99999").exit_code == 2
    result = invoke("publish", bad, "--broker", "127.0.0.1")
    assert result.exit_code == 2
    assert "not a valid revocation" in result.output


def node_list(directory):
    result = invoke("node", "list", "--dir", directory)
    assert result.exit_code == 0, result.output
    return [line.split() for line in result.output.splitlines()]


def test_revoked_nodes_stay_listed_and_their_hostname_needs_replace(comm):
    directory, key = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    assert add(comm, "library", "--model", "cudy_wr3000-v1").exit_code == 0
    old = yaml.safe_load((directory / "nodes.yaml").read_text())["nodes"][0]
    assert [row[2] for row in node_list(directory)] == ["active", "active"]

    assert invoke("node", "revoke", "bakery", "--dir", directory, "--admin-key", key).exit_code == 0
    rows = {row[0]: row for row in node_list(directory)}
    assert rows["bakery"][2] == "revoked"
    assert rows["library"][2] == "active"

    before = snapshot(directory)
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1")
    assert result.exit_code == 2
    assert "was revoked" in result.output
    assert "bakery-2" in result.output
    assert "--replace" in result.output
    assert snapshot(directory) == before
    refused = add(comm, "library", "--model", "cudy_wr3000-v1", "--replace")
    assert refused.exit_code == 2
    assert "only for revoked nodes" in refused.output
    assert snapshot(directory) == before

    result = add(comm, "bakery", "--model", "cudy_wr3000-v1", "--replace")
    assert result.exit_code == 0, result.output
    registry = yaml.safe_load((directory / "nodes.yaml").read_text())
    new = next(n for n in registry["nodes"] if n["hostname"] == "bakery")
    (retired,) = registry["retired"]
    assert retired == old  # the revoked entry, key and slot are kept as they were
    assert new["key"] != old["key"]
    assert new["addresses"]["slot"] != old["addresses"]["slot"]
    assert new["addresses"]["ipv4"] != old["addresses"]["ipv4"]
    assert (directory / "revocations" / f"bakery-{old['node_id']}.json").exists()
    assert (directory / "secrets" / f"bakery-{old['node_id']}.key").exists()
    assert not (directory / "revocations" / "bakery.json").exists()
    node_key = load_private_key(directory / "secrets" / "bakery.key")
    assert node_key.public.text == new["key"]

    rows = node_list(directory)
    bakery = [(row[1], row[2]) for row in rows if row[0] == "bakery"]
    assert bakery == [(new["node_id"], "active"), (old["node_id"], "revoked")]
    # The new node can be revoked in its turn without touching the old revocation.
    assert invoke("node", "revoke", "bakery", "--dir", directory, "--admin-key", key).exit_code == 0
    revocation = Revocation.from_json(
        json.loads((directory / "revocations" / "bakery.json").read_text())
    )
    assert revocation.node_id == new["node_id"]
    # Many later adds never land on a revoked node's addresses.
    for i in range(5):
        assert add(comm, f"n{i}", "--model", "zyxel_nwa50ax").exit_code == 0
    registry = yaml.safe_load((directory / "nodes.yaml").read_text())
    slots = [n["addresses"]["slot"] for n in registry["nodes"] + registry["retired"]]
    assert len(slots) == len(set(slots))


def test_a_half_signed_revocation_is_shown_as_revoking(comm, tmp_path):
    directory, ada = comm
    bea = tmp_path / "keys" / "bea.key"
    pub = invoke("community", "admin-key", "--admin-key", bea, "--create").output.strip()
    added = invoke(
        "community", "add-admin", "bea", "--key", pub, "--dir", directory, "--threshold", "2"
    )
    assert added.exit_code == 0, added.output
    for key in (ada, bea):
        assert invoke("community", "sign", "--dir", directory, "--admin-key", key).exit_code == 0
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    result = invoke("node", "revoke", "bakery", "--dir", directory, "--admin-key", ada)
    assert result.exit_code == 1  # written, not valid yet
    (row,) = node_list(directory)
    assert row[2] == "revoking"
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1", "--replace")
    assert result.exit_code == 2
    assert "finish the revocation" in result.output


def test_gateway_uplink_reaches_the_agent_config(comm):
    directory, _ = comm
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1", "--gateway", "--uplink-kbit", 40000)
    assert result.exit_code == 0, result.output
    assert "gateway (40000 kbit/s)" in result.output
    entry = yaml.safe_load((directory / "nodes.yaml").read_text())["nodes"][0]
    assert entry["uplink_kbit"] == 40000
    config = directory / "build" / "bakery" / "etc" / "config" / "meshd"
    assert "option gateway_kbit '40000'" in config.read_text()
    first = config.read_bytes()
    assert invoke("node", "render", "bakery", "--dir", directory).exit_code == 0
    assert config.read_bytes() == first  # stored, not a one-off of `node add`
    # The init script turns the option into the agent's flag.
    init = (ROOT / "openwrt" / "meshd" / "files" / "meshd.init").read_text()
    assert "append_option main gateway_kbit --gateway-kbit" in init


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--uplink-kbit", "40000"], "add --gateway"),
        (["--gateway", "--uplink-kbit", "0"], "outside 1.."),
        (["--gateway", "--uplink-kbit", "lots"], "not a valid integer"),
    ],
)
def test_bad_uplink_is_refused_and_nothing_is_written(comm, args, message):
    directory, _ = comm
    before = snapshot(directory)
    result = add(comm, "bakery", "--model", "cudy_wr3000-v1", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert snapshot(directory) == before


def test_a_hand_edited_uplink_on_a_plain_node_is_refused(comm):
    directory, _ = comm
    assert add(comm, "library", "--model", "cudy_wr3000-v1").exit_code == 0
    path = directory / "nodes.yaml"
    data = yaml.safe_load(path.read_text())
    data["nodes"][0]["uplink_kbit"] = 1000
    path.write_text(yaml.safe_dump(data))
    result = invoke("node", "render", "library", "--dir", directory)
    assert result.exit_code == 2
    assert "nodes[0].uplink_kbit: only a gateway has an uplink to share" in result.output


def test_bundle_and_build_folder_are_owner_only(comm):
    directory, _ = comm
    assert add(comm, "bakery", "--model", "cudy_wr3000-v1").exit_code == 0
    build = directory / "build"
    assert build.stat().st_mode & 0o777 == 0o700
    assert (build / "bakery.tar.gz").stat().st_mode & 0o777 == 0o600
    assert (build / "bakery").stat().st_mode & 0o077 == 0


def test_push_runs_the_reloads_detached(comm):
    from cli.commands.node import REMOTE_APPLY, REMOTE_BUNDLE

    head, tail = REMOTE_APPLY.split("{ (", 1)
    assert f"rm -f {REMOTE_BUNDLE}" in head  # the copy with the node key does not stay in /tmp
    assert "reload_config" not in head  # nothing that cuts the session runs inside it
    assert "reload_config" in tail
    assert "/etc/init.d/dropbear restart" in tail  # key-only SSH takes effect
    assert tail.rstrip().endswith("& }")
