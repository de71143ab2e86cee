"""`mutualmesh community`: init, check (every problem listed), add-admin, sign, k-of-n."""

from __future__ import annotations

import json
import stat

import pytest
import yaml

from meshd.encoding import b64encode
from meshd.ids import SigningKey
from meshd.trust import admin_signature, community_message
from provisioning.community import check
from tests.clikit import invoke


def test_init_writes_a_valid_signed_community_and_a_private_key(comm, tmp_path):
    directory, key = comm
    data = yaml.safe_load((directory / "community.yaml").read_text())
    community = check(data, require_signatures=True)
    assert community.routing == "babel"
    assert community.ipv4.prefixlen == 16
    assert community.ipv6.prefixlen == 48
    # The mesh passphrase is a secret: in secrets/ (0600), not in the shareable community.yaml.
    assert "sae_passphrase" not in data["radio"]
    assert community.sae_passphrase == ""
    secret = directory / "secrets" / "sae-passphrase"
    assert len(secret.read_text().strip()) >= 20
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list(directory.rglob("*.key"))  # the admin key lives outside the folder
    assert "secrets/" in (directory / ".gitignore").read_text()


def test_init_refuses_a_key_inside_the_folder_and_writes_nothing(tmp_path):
    result = invoke(
        "community",
        "init",
        "riverside",
        "--dir",
        tmp_path / "c",
        "--admin-key",
        tmp_path / "c" / "admin.key",
    )
    assert result.exit_code == 2
    assert "keep it outside" in result.output
    assert not (tmp_path / "c").exists()


def test_init_refuses_to_overwrite(comm):
    directory, key = comm
    result = invoke("community", "init", "riverside", "--dir", directory, "--admin-key", key)
    assert result.exit_code == 2
    assert "already exists" in result.output


def test_check_lists_every_problem_with_paths_and_exits_2(comm, tmp_path):
    directory, _ = comm
    data = yaml.safe_load((directory / "community.yaml").read_text())
    data["name"] = "Bad Name"
    data["radio"]["country"] = "germany"
    data["radio"]["bands"]["5g"]["channel"] = 6
    data["ipv4"]["prefix"] = "192.168.1.0/24"
    data["threshold"] = 5
    data["colour"] = "blue"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("community", "check", bad)
    assert result.exit_code == 2
    for path in (
        "name:",
        "radio.country:",
        "radio.bands.5g.channel:",
        "ipv4.prefix:",
        "threshold:",
        "colour:",
    ):
        assert path in result.output, path
    assert result.output.count("(fix: ") >= 6
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_check_reports_yaml_syntax_errors_with_the_line(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("name: x\nradio:\n  country: DE\n bands: [\n")
    result = invoke("community", "check", bad)
    assert result.exit_code == 2
    assert f"{bad}:4:" in result.output or f"{bad}:5:" in result.output
    assert "YAML syntax error" in result.output


def test_check_names_a_file_that_is_not_utf8_as_such(tmp_path):
    """Not a permissions problem: the byte and its offset, and to save the file as UTF-8."""
    bad = tmp_path / "c.yaml"
    bad.write_bytes("name: straße\n".encode("latin-1"))
    result = invoke("community", "check", bad)
    assert result.exit_code == 2
    assert "not UTF-8 text (byte 0xdf at offset 10)" in result.output
    assert "permissions" not in result.output


def test_check_missing_file(tmp_path):
    result = invoke("community", "check", tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert "file not found" in result.output
    assert "community init" in result.output


def test_check_valid_file_prints_a_summary(comm):
    directory, _ = comm
    result = invoke("community", "check", directory / "community.yaml")
    assert result.exit_code == 0
    assert "ok" in result.output
    assert "signed by 1 of 1" in result.output


@pytest.fixture
def two_of_three(comm, tmp_path):
    """A community with three admins and k = 2, every key on disk."""
    directory, ada = comm
    keys = {"ada": ada}
    for name in ("bea", "cyd"):
        keys[name] = tmp_path / "keys" / f"{name}.key"
        pub = invoke("community", "admin-key", "--admin-key", keys[name], "--create")
        assert pub.exit_code == 0, pub.output
        args = ["community", "add-admin", name, "--key", pub.output.strip(), "--dir", directory]
        if name == "cyd":
            args += ["--threshold", "2"]
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        # ada, the one admin of the trusted version, accepts each change.
        signed = invoke("community", "sign", "--dir", directory, "--admin-key", ada)
        assert signed.exit_code == 0, signed.output
    return directory, keys


def signatures_check(directory, sigs):
    path = directory / "community.yaml"
    data = yaml.safe_load(path.read_text())
    data["signatures"] = sigs
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return invoke("community", "check", path)


def load_key(path):
    from provisioning.keys import load_private_key

    return load_private_key(path)


def test_k_of_n(two_of_three):
    directory, keys = two_of_three
    data = yaml.safe_load((directory / "community.yaml").read_text())
    msg = community_message(data)
    ada, bea = load_key(keys["ada"]), load_key(keys["bea"])
    one = admin_signature(ada, msg)
    two = admin_signature(bea, msg)

    result = signatures_check(directory, [one])
    assert result.exit_code == 2
    assert "1 distinct valid admin signature(s) of 1 present, 2 needed" in result.output

    assert signatures_check(directory, [one, two]).exit_code == 0

    result = signatures_check(directory, [one, dict(one)])
    assert result.exit_code == 2, "the same signature twice must count once"

    zero = {"admin": bea.public.text, "sig": b64encode(bytes(64))}
    garbage = {"admin": bea.public.text, "sig": "not base64!"}
    for bad in (zero, garbage, {"admin": "x", "sig": one["sig"]}, "junk"):
        result = signatures_check(directory, [one, bad])
        assert result.exit_code == 2, bad

    outsider = admin_signature(SigningKey.generate(), msg)
    assert signatures_check(directory, [one, outsider]).exit_code == 2


def test_sign_command_reaches_the_threshold(two_of_three):
    directory, keys = two_of_three
    first = invoke("community", "sign", "--dir", directory, "--admin-key", keys["ada"])
    assert first.exit_code == 0
    assert "1 of 2" in first.output
    assert "needs 1 more" in first.output
    again = invoke("community", "sign", "--dir", directory, "--admin-key", keys["ada"])
    assert "1 of 2" in again.output  # signing twice still counts once
    second = invoke("community", "sign", "--dir", directory, "--admin-key", keys["bea"])
    assert "2 of 2" in second.output
    assert invoke("community", "check", directory / "community.yaml").exit_code == 0


def test_a_change_after_signing_invalidates_the_file(comm):
    directory, _ = comm
    path = directory / "community.yaml"
    data = yaml.safe_load(path.read_text())
    data["mqtt"]["port"] = 1884
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = invoke("community", "check", path)
    assert result.exit_code == 2
    assert "signatures:" in result.output


def test_sign_with_a_key_that_is_not_an_admin(comm, tmp_path):
    directory, _ = comm
    other = tmp_path / "other.key"
    invoke("community", "admin-key", "--admin-key", other, "--create")
    result = invoke("community", "sign", "--dir", directory, "--admin-key", other)
    assert result.exit_code == 2
    assert "not an admin" in result.output


def test_check_warns_when_nodes_would_have_no_admin_ssh_key(comm):
    directory, _ = comm
    result = invoke("community", "check", directory / "community.yaml", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["ok"] is True
    assert [w["where"] for w in out["warnings"]] == ["admins[].ssh_keys"]
    assert out["community"]["name"] == "riverside"
    text = invoke("community", "check", directory / "community.yaml")
    assert "warning: admins[].ssh_keys" in text.output


def test_init_with_an_ssh_key_puts_it_in_the_community_and_check_is_quiet(tmp_path):
    from tests.unit.test_provisioning_fixtures import ADA_SSH

    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(ADA_SSH + "\n")
    directory = tmp_path / "c"
    result = invoke(
        "community", "init", "riverside", "--dir", directory,
        "--admin-key", tmp_path / "ada.key", "--ssh-key", pub,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((directory / "community.yaml").read_text())
    assert data["admins"][0]["ssh_keys"] == [ADA_SSH]
    out = json.loads(invoke("community", "check", directory / "community.yaml", "--json").output)
    assert out["warnings"] == []


def test_init_refuses_a_private_key_as_ssh_key(tmp_path):
    private = tmp_path / "id_ed25519"
    private.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    result = invoke(
        "community", "init", "riverside", "--dir", tmp_path / "c",
        "--admin-key", tmp_path / "ada.key", "--ssh-key", private,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "not an SSH public key" in result.output
    assert not (tmp_path / "c").exists()


def test_add_admin_with_an_ssh_key(comm, tmp_path):
    from tests.unit.test_provisioning_fixtures import ADA_SSH

    directory, _ = comm
    key = tmp_path / "bea.key"
    pub = invoke("community", "admin-key", "--admin-key", key, "--create")
    assert pub.exit_code == 0, pub.output
    ssh = tmp_path / "bea.pub"
    ssh.write_text(ADA_SSH.replace("ada@laptop", "bea@laptop") + "\n")
    result = invoke(
        "community", "add-admin", "bea", "--key", pub.output.strip().splitlines()[-1],
        "--dir", directory, "--ssh-key", ssh,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((directory / "community.yaml").read_text())
    assert data["admins"][1]["ssh_keys"] == [ssh.read_text().strip()]
