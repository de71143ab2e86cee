"""Community changes need k signatures of the admins trusted *before* the change.

The attacks: rewrite the admin list and sign it yourself (Gluon's CVE-2022-24884 class), lower
the threshold alone, forge the next chain link, put an older signed file back, cut the chain.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from meshd.ids import SigningKey
from provisioning.community import load_chain
from provisioning.keys import load_private_key
from provisioning.trustchain import ChainError, Pin, check_pin, propose, verify_chain
from tests.clikit import invoke


def new_key(tmp_path, name):
    path = tmp_path / "keys" / f"{name}.key"
    result = invoke("community", "admin-key", "--admin-key", path, "--create")
    assert result.exit_code == 0, result.output
    return path, result.output.strip()


def sign(directory, key):
    result = invoke("community", "sign", "--dir", directory, "--admin-key", key)
    assert result.exit_code == 0, result.output
    return result.output


def check(directory):
    return invoke("community", "check", directory / "community.yaml")


def add_node(directory, key, hostname):
    return invoke(
        "node", "add", hostname, "--model", "zyxel_nwa50ax", "--dir", directory, "--admin-key", key
    )


@pytest.fixture
def two_admins(tmp_path):
    """ada and bea, k = 2: version 2 of the chain."""
    directory = tmp_path / "c"
    ada, _ = new_key(tmp_path, "ada")
    assert (
        invoke("community", "init", "riverside", "--dir", directory, "--admin-key", ada).exit_code
        == 0
    )
    bea, bea_pub = new_key(tmp_path, "bea")
    added = invoke(
        "community", "add-admin", "bea", "--key", bea_pub, "--dir", directory, "--threshold", "2"
    )
    assert added.exit_code == 0, added.output
    assert "trusted version 2" in sign(directory, ada)  # k was 1: ada alone accepts it
    sign(directory, bea)  # the new file itself needs 2 of its admins
    assert check(directory).exit_code == 0
    assert [v.version for v in load_chain(directory)] == [1, 2]
    return directory, {"ada": ada, "bea": bea}


def edit(directory, change):
    path = directory / "community.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_an_admin_added_and_signed_only_by_the_new_admin_is_rejected(two_admins, tmp_path):
    directory, _ = two_admins
    mallory, mallory_pub = new_key(tmp_path, "mallory")

    def take_over(data):
        data["admins"].append({"name": "mallory", "key": mallory_pub})
        data["threshold"] = 1
        data["signatures"] = []

    edit(directory, take_over)
    out = sign(directory, mallory)
    # The file is valid by its own (new) admin list: exactly the old, broken check.
    assert "signed: 1 of 1" in out
    assert "0 of 2 signature(s) from the admins of version 2" in out
    result = check(directory)
    assert result.exit_code == 2
    assert "differs from trusted version 2" in result.output
    before = sorted(p.name for p in directory.rglob("*"))
    result = add_node(directory, mallory, "evil")
    assert result.exit_code == 2
    assert "not accepted yet" in result.output
    assert sorted(p.name for p in directory.rglob("*")) == before

    # Forging the next link by hand does not help: it must be signed by ada and bea.
    data = yaml.safe_load((directory / "community.yaml").read_text())
    chain = load_chain(directory)
    forged = propose(data, chain[-1]).signed_by(load_private_key(mallory))
    (directory / "trust" / "000003.json").write_text(json.dumps(forged.to_json()))
    result = check(directory)
    assert result.exit_code == 2
    assert "000003.json" in result.output
    assert "0 valid signature(s) of version 2's admins, 2 needed" in result.output
    with pytest.raises(ChainError):
        verify_chain([*chain, forged])


def test_an_admin_added_with_k_old_signatures_is_accepted(two_admins, tmp_path):
    directory, keys = two_admins
    cyd, cyd_pub = new_key(tmp_path, "cyd")
    assert (
        invoke("community", "add-admin", "cyd", "--key", cyd_pub, "--dir", directory).exit_code == 0
    )
    out = sign(directory, keys["ada"])
    assert "change to version 3: 1 of 2" in out
    assert check(directory).exit_code == 2  # one old admin is not enough
    out = sign(directory, keys["bea"])
    assert "trusted version 3" in out
    assert not (directory / "trust" / "pending.json").exists()
    assert check(directory).exit_code == 0
    result = add_node(directory, cyd, "bakery")  # the new admin can now enroll nodes
    assert result.exit_code == 0, result.output
    pin = Pin.from_json(
        json.loads((directory / "build" / "bakery" / "etc" / "meshd" / "trust.json").read_text())
    )
    chain = load_chain(directory)
    assert (pin.version, pin.genesis, pin.threshold) == (3, chain[0].fingerprint, 2)
    assert len(pin.admins) == 3


def test_lowering_the_threshold_needs_k_old_signatures(two_admins):
    directory, keys = two_admins

    def lower(data):
        data["threshold"] = 1
        data["signatures"] = []

    edit(directory, lower)
    out = sign(directory, keys["ada"])
    assert "signed: 1 of 1" in out  # enough for the new k...
    assert "1 of 2 signature(s) from the admins of version 2" in out  # ...not for the old one
    assert check(directory).exit_code == 2
    assert add_node(directory, keys["ada"], "bakery").exit_code == 2
    assert "trusted version 3" in sign(directory, keys["bea"])
    assert check(directory).exit_code == 0


def test_replaying_an_older_signed_version_is_detected(two_admins):
    directory, keys = two_admins
    old_file = (directory / "community.yaml").read_text()
    assert add_node(directory, keys["ada"], "bakery").exit_code == 0
    node_pin = Pin.from_json(
        json.loads((directory / "build" / "bakery" / "etc" / "meshd" / "trust.json").read_text())
    )
    edit(directory, lambda d: d["mqtt"].update(port=1884))
    sign(directory, keys["ada"])
    assert "trusted version 3" in sign(directory, keys["bea"])
    saved_v3 = directory / "v3.json"
    shutil.copy(directory / "trust" / "000003.json", saved_v3)

    # The old file still carries valid signatures of its own admins, but it is version 2.
    (directory / "community.yaml").write_text(old_file)
    result = check(directory)
    assert result.exit_code == 2
    assert "is version 2, older than the trusted version 3" in result.output
    result = invoke("community", "sign", "--dir", directory, "--admin-key", keys["ada"])
    assert result.exit_code == 2
    assert "replay" in result.output

    # Cutting the chain back to version 2 as well: this admin's pin remembers version 3.
    (directory / "trust" / "000003.json").unlink()
    result = check(directory)
    assert result.exit_code == 2
    assert "version 3 was already trusted" in result.output
    chain = load_chain(directory)
    verify_chain(chain)  # the cut chain is internally fine: only a pin can tell
    later = Pin.of([*chain, json_version(saved_v3)])
    with pytest.raises(ChainError, match="already trusted"):
        check_pin(chain, later)
    check_pin(chain, node_pin)  # a node pinned at version 2 still accepts version 2


def json_version(path):
    from provisioning.trustchain import Version

    return Version.from_json(json.loads(path.read_text()))


def test_another_genesis_is_refused(two_admins, tmp_path):
    directory, _ = two_admins
    genesis = load_chain(directory)[0].fingerprint
    ok = invoke("community", "check", directory / "community.yaml", "--genesis", genesis)
    assert ok.exit_code == 0, ok.output
    assert genesis in ok.output
    wrong = "sha256:" + "0" * 64
    result = invoke("community", "check", directory / "community.yaml", "--genesis", wrong)
    assert result.exit_code == 2
    assert "not the expected" in result.output

    # A whole new chain under the same name (e.g. someone re-ran init over the folder).
    other = SigningKey.generate()
    data = yaml.safe_load((directory / "community.yaml").read_text())
    data["admins"] = [{"name": "eve", "key": other.public.text}]
    data["threshold"] = 1
    from provisioning.community import sign as sign_file

    data = sign_file({**data, "signatures": []}, other)
    shutil.rmtree(directory / "trust")
    (directory / "trust").mkdir()
    (directory / "trust" / "000001.json").write_text(
        json.dumps(propose(data, None).signed_by(other).to_json())
    )
    (directory / "community.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = check(directory)
    assert result.exit_code == 2
    assert "is not the pinned" in result.output


def test_a_folder_without_a_chain_is_refused_until_adopted(tmp_path):
    directory = tmp_path / "c"
    ada, _ = new_key(tmp_path, "ada")
    assert (
        invoke("community", "init", "riverside", "--dir", directory, "--admin-key", ada).exit_code
        == 0
    )
    shutil.rmtree(directory / "trust")
    (tmp_path / "config" / "pins" / "riverside.json").unlink()
    result = add_node(directory, ada, "bakery")
    assert result.exit_code == 2
    assert "community adopt" in result.output
    stranger, _ = new_key(tmp_path, "stranger")
    refused = invoke("community", "adopt", "--dir", directory, "--admin-key", stranger)
    assert refused.exit_code == 2
    assert not (directory / "trust").exists()
    adopted = invoke("community", "adopt", "--dir", directory, "--admin-key", ada)
    assert adopted.exit_code == 0, adopted.output
    assert add_node(directory, ada, "bakery").exit_code == 0
