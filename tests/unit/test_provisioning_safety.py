"""Every routing fix and security default of a rendered node, each in a test that fails without it.

Upstream facts (openwrt-facts.md rows 4a-4e): Gluon and LibreMesh set mesh_fwding off on 802.11s;
LibreMesh's lime-proto-babeld sets `type wireless`; fw4 rules match src_port/dest_port as given;
OpenWrt's dropbear reads /etc/dropbear/authorized_keys and the PasswordAuth/RootPasswordAuth
options (dropbear.init's validate_section_dropbear).
"""

from __future__ import annotations

import pytest

from meshd.defaults import RESPONDD_PORT
from provisioning import uci
from provisioning.security import MANAGEMENT_PORTS, admin_ssh_keys, open_findings, ssh_key_problem
from tests.unit.test_provisioning_fixtures import ADA_SSH, PASSPHRASE, community_data
from tests.unit.test_provisioning_render import render


def package(files, name):
    return uci.loads(files[f"etc/meshd/uci/{name}"].data.decode())


def sections(files, name, type_):
    return [dict(s.options) for s in package(files, name).sections if s.type == type_]


@pytest.mark.parametrize("routing", ["babel", "batman-adv"])
def test_802_11s_does_not_forward_under_our_routing(routing):
    meshes = [w for w in sections(render("gateway", routing), "wireless", "wifi-iface")
              if w["mode"] == "mesh"]  # fmt: skip
    assert meshes
    assert {w.get("mesh_fwding") for w in meshes} == {"0"}


def test_babeld_treats_mesh_interfaces_as_wireless():
    interfaces = sections(render("gateway"), "babeld", "interface")
    assert interfaces
    assert {i.get("type") for i in interfaces} == {"wireless"}


def test_ax_radios_get_he_modes():
    radios = sections(render("gateway"), "wireless", "wifi-device")  # fixture: Cudy WR3000 (AX)
    assert {r["htmode"] for r in radios} == {"HE20", "HE80"}


def test_dhcp_rule_blocks_servers_not_clients():
    (rule,) = [r for r in sections(render("ordinary"), "firewall", "rule")
               if r.get("name") == "Block-mesh-DHCP-server"]  # fmt: skip
    assert rule["src_port"] == "67 547"
    assert rule["dest_port"] == "68 546"


def test_no_ipv6_default_is_announced():
    filters = sections(render("gateway"), "babeld", "filter")
    assert not [f for f in filters if f.get("ip") == "::/0"]
    assert [f for f in filters if f.get("ip") == "0.0.0.0/0"]


def _accepts_from_client(rules, port):
    for r in rules:
        if r.get("src") != "client" or r.get("target") != "ACCEPT" or r.get("dest"):
            continue
        ports = str(r.get("dest_port", "")).replace("-", " ").split()
        if (not ports or str(port) in ports) and r.get("proto") not in ("icmp", "icmpv6"):
            return True
    return False


def _accepts_udp(rules, src, port):
    """True when a rule lets UDP to `port` in from zone `src` (a rule for any port counts)."""
    for r in rules:
        if r.get("src") != src or r.get("target") != "ACCEPT" or r.get("dest"):
            continue
        ports = str(r.get("dest_port", "")).replace("-", " ").split()
        if (not ports or str(port) in ports) and r.get("proto") in (None, "udp", "tcpudp", "all"):
            return True
    return False


@pytest.mark.parametrize("case", ["gateway", "ordinary"])
def test_respondd_answers_the_mesh_and_never_the_clients(case):
    rules = sections(render(case), "firewall", "rule")
    assert _accepts_udp(rules, "mesh", RESPONDD_PORT)
    assert not _accepts_udp(rules, "client", RESPONDD_PORT)
    assert not _accepts_udp(rules, "uplink", RESPONDD_PORT)


@pytest.mark.parametrize("case", ["gateway", "ordinary"])
def test_management_ports_are_shut_to_the_open_ssid(case):
    files = render(case)
    (client,) = [z for z in sections(files, "firewall", "zone") if z["name"] == "client"]
    assert client["input"] == "REJECT"
    rules = sections(files, "firewall", "rule")
    for port, what in MANAGEMENT_PORTS.items():
        assert not _accepts_from_client(rules, port), what
    assert _accepts_from_client(rules, 67)  # clients still get DHCP
    assert _accepts_from_client(rules, 53)  # and DNS


def test_ssh_is_key_only_with_the_admins_keys():
    files = render("ordinary")
    (dropbear,) = sections(files, "dropbear", "dropbear")
    assert dropbear["PasswordAuth"] == "0"
    assert dropbear["RootPasswordAuth"] == "0"
    keys = files["etc/dropbear/authorized_keys"]
    assert keys.data.decode().splitlines() == [ADA_SSH]
    assert keys.mode == 0o600


def test_the_apply_script_installs_our_dropbear_config():
    from tests.unit.test_openwrt_init import ROOT

    script = (ROOT / "openwrt/meshd/files/meshd-apply.sh").read_text()
    assert "dropbear" in script.split("for pkg in ", 1)[1].splitlines()[0]


@pytest.mark.parametrize("case", ["gateway", "ordinary"])
def test_mesh_listener_is_read_only(case):
    files = render(case)
    lines = files["etc/mosquitto/meshd-mesh.acl"].data.decode().splitlines()
    assert "readwrite" not in " ".join(lines)
    assert [line.split()[1] for line in lines if line.strip()] == ["read"]
    assert lines == ["topic read mesh/v1/riverside/#"]
    conf = files["etc/mosquitto/mosquitto.conf"].data.decode()
    # Each non-loopback listener is followed by the read-only ACL before the next listener.
    blocks = conf.split("listener ")[1:]
    for block in blocks:
        if not block.split()[1].startswith("127."):
            assert "acl_file /etc/mosquitto/meshd-mesh.acl" in block


@pytest.mark.parametrize("case", ["gateway", "ordinary"])
def test_secrets_in_the_bundle_are_not_world_readable(case):
    files = render(case)
    secret = (
        "etc/meshd/node.key",
        "etc/meshd/community.json",
        "etc/dropbear/authorized_keys",
        "etc/meshd/uci/wireless",  # the mesh passphrase
    )
    for name in secret:
        assert files[name].mode & 0o077 == 0, name


def test_ssh_key_lines_are_checked():
    assert ssh_key_problem(ADA_SSH) is None
    assert ssh_key_problem("ssh-ed25519") is not None
    assert ssh_key_problem("ssh-rsa " + ADA_SSH.split()[1]) is not None  # blob says ed25519
    assert ssh_key_problem("ssh-ed25519 !!!") is not None


def test_community_findings_name_what_leaves_a_node_open():
    data = community_data()
    assert admin_ssh_keys(data) == [ADA_SSH]
    where = [w for w, _, _ in open_findings(data)]
    assert "admins[].ssh_keys" not in where
    assert "radio.sae_passphrase" not in where  # kept in secrets/
    data["admins"][0]["ssh_keys"] = ["ssh-ed25519 nope"]
    data["radio"]["sae_passphrase"] = "an older folder kept it here"
    where = [w for w, _, _ in open_findings(data)]
    assert "admins[0].ssh_keys[0]" in where
    assert "admins[].ssh_keys" in where
    assert "radio.sae_passphrase" in where


def test_the_passphrase_is_rendered_from_secrets_not_the_shared_file():
    files = render("ordinary")
    assert b"sae_passphrase" not in files["etc/meshd/community.json"].data
    meshes = [w for w in sections(files, "wireless", "wifi-iface") if w["mode"] == "mesh"]
    assert {w["key"] for w in meshes} == {PASSPHRASE}
