"""Rendering: golden bundles, byte-identical rebuilds, UCI that parses back, firewall roles."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from netjsonconfig import OpenWrt

from provisioning import uci
from provisioning.bundle import tar_gz
from provisioning.render import render_node
from tests.unit.test_provisioning_fixtures import PASSPHRASE, community_data, node, pin

GOLDEN = Path(__file__).parent.parent / "golden"
CASES = {"gateway": ("bakery", True), "ordinary": ("library", False)}


def render(case: str, routing: str = "babel"):
    hostname, gateway = CASES[case]
    community, entry, key, profile = node(hostname, gateway=gateway, routing=routing)
    return render_node(
        community, community_data(routing), entry, key, profile, pin(routing), PASSPHRASE
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_files(case):
    files = render(case)
    root = GOLDEN / case
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(root, ignore_errors=True)
        for name, item in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(item.data)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(files), "run with UPDATE_GOLDEN=1 and review the diff"
    for name, item in files.items():
        assert (root / name).read_bytes() == item.data, name


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_inputs_give_byte_identical_bundles(case):
    first, second = tar_gz(render(case)), tar_gz(render(case))
    assert first == second
    assert gzip.decompress(first)  # a real gzip stream
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}
    key = next(m for m in members if m.name == "etc/meshd/node.key")
    assert key.mode == 0o600


def test_bundle_changes_when_an_input_changes():
    a = tar_gz(render("gateway"))
    hostname, _ = CASES["gateway"]
    community, entry, key, profile = node(hostname, gateway=False)
    b = tar_gz(render_node(community, community_data(), entry, key, profile, pin(), PASSPHRASE))
    assert a != b


@pytest.mark.parametrize("routing", ["babel", "batman-adv"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_uci_parses_back_to_the_same_values(case, routing):
    files = render(case, routing)
    uci_paths = [p for p in files if p.startswith("etc/meshd/uci/") or p == "etc/config/meshd"]
    assert len(uci_paths) >= 5
    for path in uci_paths:
        text = files[path].data.decode()
        package = uci.loads(text)
        assert package.name == path.rsplit("/", 1)[1]
        assert uci.dumps(package) == text


def test_wireless_keeps_the_passphrase_with_quotes_and_backslashes():
    files = render("ordinary")
    wireless = uci.loads(files["etc/meshd/uci/wireless"].data.decode())
    mesh = wireless.section("wifi_mesh5g")
    assert mesh.get("key") == 'it\'s a \\ "tricky" pass'
    assert mesh.get("encryption") == "sae+ccmp"
    assert mesh.get("ieee80211w") == "2"
    assert mesh.get("mode") == "mesh"
    assert {s.get("mode") for s in wireless.sections if s.type == "wifi-iface"} == {"mesh", "ap"}
    bands = {s.get("band") for s in wireless.sections if s.type == "wifi-device"}
    assert bands == {"2g", "5g"}


def test_netjsonconfig_parser_reads_our_network_and_wireless():
    files = render("gateway")
    native = files["etc/meshd/uci/network"].data.decode()
    parsed = OpenWrt(native=native).config
    by_name = {i["name"]: i for i in parsed["interfaces"]}
    _, entry, _, _ = node("bakery", gateway=True)
    mesh_addrs = {a["address"] for a in by_name["mesh5g"]["addresses"]}
    assert mesh_addrs == {str(entry.addresses.ipv4), str(entry.addresses.ipv6)}
    lan = by_name["br-lan"]["addresses"]
    assert str(entry.addresses.ipv4_client.network_address + 1) in {a["address"] for a in lan}


def firewall(case):
    return uci.loads(render(case)["etc/meshd/uci/firewall"].data.decode())


def test_only_gateways_masquerade_and_have_an_uplink_zone():
    gw, plain = firewall("gateway"), firewall("ordinary")
    masq = [s.get("name") for s in gw.sections if s.type == "zone" and s.get("masq") == "1"]
    assert masq == ["uplink"]
    assert not [s for s in plain.sections if s.type == "zone" and s.get("masq") == "1"]
    assert "uplink" not in {s.get("name") for s in plain.sections if s.type == "zone"}


def test_dhcp_and_ra_never_served_on_the_mesh():
    dhcp = uci.loads(render("ordinary")["etc/meshd/uci/dhcp"].data.decode())
    for band in ("2g", "5g"):
        sec = dhcp.section(f"mesh_{band}")
        assert sec.get("ignore") == "1"
        assert sec.get("ra") == "disabled"
        assert sec.get("dhcpv6") == "disabled"
    fw = firewall("ordinary")
    names = [s.name for s in fw.sections]
    # The RA block must come before the allow-all-ICMPv6 rule: first match wins.
    assert names.index("mesh_no_ra_in") < names.index("mesh_icmpv6")
    assert fw.section("client_no_dhcp_mesh").get("dest") == "mesh"


def test_gateway_redistributes_default_route_only_on_gateways():
    gw = uci.loads(render("gateway")["etc/meshd/uci/babeld"].data.decode())
    plain = uci.loads(render("ordinary")["etc/meshd/uci/babeld"].data.decode())
    assert "default_ipv4" in {s.name for s in gw.sections}
    assert "default_ipv4" not in {s.name for s in plain.sections}
    assert plain.sections[-1].get("action") == "deny"


def test_batman_variant_has_no_babeld_and_filters_dhcp_on_the_bridge():
    files = render("ordinary", "batman-adv")
    assert "etc/meshd/uci/babeld" not in files
    network = uci.loads(files["etc/meshd/uci/network"].data.decode())
    assert network.section("bat0").get("proto") == "batadv"
    assert network.section("mesh_5g").get("proto") == "batadv_hardif"
    assert b"udp dport { 67, 68, 546, 547 } drop" in files["etc/meshd/bridge-filter.nft"].data


def test_mosquitto_listens_on_mesh_addresses_and_only_local_writes():
    files = render("ordinary")
    conf = files["etc/mosquitto/mosquitto.conf"].data.decode()
    _, entry, _, _ = node("library", gateway=False)
    assert f"listener 1883 {entry.addresses.ipv4}" in conf
    assert f"listener 1883 {entry.addresses.ipv6}" in conf
    assert "listener 1883 127.0.0.1" in conf
    assert files["etc/mosquitto/meshd-mesh.acl"].data == b"topic read mesh/v1/riverside/#\n"
    assert b"readwrite" in files["etc/mosquitto/meshd-local.acl"].data


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_first_boot_script_is_shellcheck_clean(tmp_path):
    script = tmp_path / "90-meshd-node"
    script.write_bytes(render("gateway")["etc/uci-defaults/90-meshd-node"].data)
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
