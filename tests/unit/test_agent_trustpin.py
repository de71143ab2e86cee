"""meshd --trust-file: the router refuses a community file its pinned admins did not authorise.

Bundles come from the real admin CLI (`community init`, `node add`, `add-admin`, `sign`).
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from node_agent.__main__ import _load_identity, main
from node_agent.config import load
from tests.clikit import invoke as run_cli


def invoke(*args):
    """Run `mutualmesh ARGS...`, which must succeed; its output."""
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


def admin_key(tmp_path, name):
    path = tmp_path / "keys" / f"{name}.key"
    return path, invoke("community", "admin-key", "--admin-key", path, "--create").strip()


@pytest.fixture
def community(tmp_path):
    """A community (version 1, admin ada) with the bundle of node `bakery` rendered."""
    directory = tmp_path / "c"
    ada, _ = admin_key(tmp_path, "ada")
    invoke("community", "init", "riverside", "--dir", directory, "--admin-key", ada)
    invoke(
        "node", "add", "bakery", "--model", "zyxel_nwa50ax", "--dir", directory, "--admin-key", ada
    )
    return directory, ada


def as_json(community_yaml, etc):
    """What a router holds: the JSON copy of an admin's community.yaml (same parsed content)."""
    data = yaml.safe_load(community_yaml.read_text())
    (etc / "community.json").write_text(json.dumps(data))


def bundle(directory):
    return directory / "build" / "bakery" / "etc" / "meshd"


def argv(etc, tmp_path):
    return [
        "--key", str(etc / "node.key"),
        "--cert", str(etc / "cert.json"),
        "--community-file", str(etc / "community.json"),
        "--trust-file", str(etc / "trust.json"),
        "--state-dir", str(tmp_path / "state"),
        "--mesh-iface", "lo",
        "--hostname", "bakery",
    ]  # fmt: skip


def refused(etc, tmp_path, capsys) -> str:
    """Exit status 2 and one clear line (no traceback); returns it."""
    assert main(argv(etc, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("meshd: ")
    assert err.count("\n") == 1
    assert "refusing the community file: " in err
    assert "Fix: " in err
    assert "Traceback" not in err
    return err


def add_bea(tmp_path, directory, ada):
    """Version 2: bea added with k = 2, accepted by ada (k of version 1), signed by both."""
    bea, bea_pub = admin_key(tmp_path, "bea")
    invoke(
        "community", "add-admin", "bea", "--key", bea_pub, "--dir", directory, "--threshold", "2"
    )
    assert "trusted version 2" in invoke(
        "community", "sign", "--dir", directory, "--admin-key", ada
    )
    invoke("community", "sign", "--dir", directory, "--admin-key", bea)
    return bea


def test_the_rendered_bundle_starts_and_a_self_made_admin_is_refused(community, tmp_path, capsys):
    directory, _ = community
    etc = bundle(directory)
    _key, _cert, parsed = _load_identity(load(argv(etc, tmp_path)))
    assert parsed.name == "riverside"  # type: ignore[attr-defined]

    # mallory rewrites the router's community file: herself as admin, k = 1, signed by herself
    mallory, mallory_pub = admin_key(tmp_path, "mallory")
    forged = tmp_path / "forged"
    shutil.copytree(directory, forged, ignore=shutil.ignore_patterns("build"))
    data = yaml.safe_load((forged / "community.yaml").read_text())
    data["admins"] = [{"name": "mallory", "key": mallory_pub}]
    data["signatures"] = []
    (forged / "community.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    invoke("community", "sign", "--dir", forged, "--admin-key", mallory)  # valid by its own list
    as_json(forged / "community.yaml", etc)
    err = refused(etc, tmp_path, capsys)
    assert "is not the pinned version 1" in err
    assert str(etc / "trust.json") in err


def test_a_newer_version_is_accepted_only_with_a_chain_from_the_pin(
    community, tmp_path, capsys, caplog
):
    directory, ada = community
    etc = bundle(directory)  # pins version 1
    pinned = (etc / "trust.json").read_bytes()
    add_bea(tmp_path, directory, ada)
    as_json(directory / "community.yaml", etc)
    err = refused(etc, tmp_path, capsys)
    assert "needs its chain" in err

    shutil.copytree(directory / "trust", etc / "trust")
    with caplog.at_level("INFO", "meshd"):
        _load_identity(load(argv(etc, tmp_path)))
    assert "version 2 of the chain from the pinned genesis (pin: 1)" in caplog.text

    # a chain of another genesis (a community of the same name made by someone else) is refused
    other = tmp_path / "other"
    eve, _ = admin_key(tmp_path, "eve")
    invoke("community", "init", "riverside", "--dir", other, "--admin-key", eve)
    shutil.rmtree(etc / "trust")
    shutil.copytree(other / "trust", etc / "trust")
    as_json(other / "community.yaml", etc)
    assert "not the pinned" in refused(etc, tmp_path, capsys)
    assert (etc / "trust.json").read_bytes() == pinned  # the agent never rewrites its pin


def test_a_pin_past_genesis_checks_admins_and_signatures_without_a_chain(
    community, tmp_path, capsys
):
    directory, ada = community
    add_bea(tmp_path, directory, ada)
    invoke("node", "render", "bakery", "--dir", directory)
    etc = bundle(directory)  # pins version 2 (ada, bea, k = 2); no chain on the router
    assert not (etc / "trust").exists()
    _load_identity(load(argv(etc, tmp_path)))

    # one signature dropped: the same admin set, but only 1 of the 2 needed
    data = json.loads((etc / "community.json").read_text())
    data["signatures"] = data["signatures"][:1]
    (etc / "community.json").write_text(json.dumps(data))
    assert "1 valid signature(s) of the pinned admins, 2 needed" in refused(etc, tmp_path, capsys)

    # a changed file keeps its old signatures: they no longer verify
    data["signatures"] = yaml.safe_load((directory / "community.yaml").read_text())["signatures"]
    data["radio"]["sae_passphrase"] = "mallory-knows-this-one"
    (etc / "community.json").write_text(json.dumps(data))
    assert "0 valid signature(s)" in refused(etc, tmp_path, capsys)


def test_an_unreadable_or_foreign_pin_is_a_clear_error(community, tmp_path, capsys):
    directory, _ = community
    etc = bundle(directory)
    (etc / "trust.json").write_text("{")
    assert "not valid JSON" in refused(etc, tmp_path, capsys)
    (etc / "trust.json").unlink()
    assert "cannot read" in refused(etc, tmp_path, capsys)


def test_the_pin_moves_forward_and_an_older_version_is_never_accepted_again(
    community, tmp_path, capsys
):
    directory, ada = community
    etc = bundle(directory)  # the bundle pins version 1
    v1_file = (etc / "community.json").read_bytes()
    v1_chain = tmp_path / "v1-trust"
    shutil.copytree(directory / "trust", v1_chain)
    add_bea(tmp_path, directory, ada)
    as_json(directory / "community.yaml", etc)
    shutil.copytree(directory / "trust", etc / "trust")
    _load_identity(load(argv(etc, tmp_path)))  # version 2 accepted: the router remembers it
    assert (tmp_path / "state" / "trust-pin.json").exists()

    # someone puts version 1 back (with its own chain, or without): refused from now on
    (etc / "community.json").write_bytes(v1_file)
    shutil.rmtree(etc / "trust")
    shutil.copytree(v1_chain, etc / "trust")
    assert "version 2 was already trusted" in refused(etc, tmp_path, capsys)
    shutil.rmtree(etc / "trust")
    assert "differ from version 2" in refused(etc, tmp_path, capsys)
