"""The procd init script turns /etc/config/meshd into meshd flags that meshd accepts.

The real init script runs under `sh` with OpenWrt's config_* / procd_* functions replaced by
small stand-ins that read a rendered UCI file and print the command line procd would run; that
command line is then parsed by meshd's own argument parser.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from node_agent.config import build_parser
from provisioning import uci
from provisioning.render import render_node
from tests.unit.test_provisioning_fixtures import community_data, node, pin

ROOT = Path(__file__).resolve().parents[2]
INIT = ROOT / "openwrt" / "meshd" / "files" / "meshd.init"
DEFAULTS = ROOT / "openwrt" / "meshd" / "files" / "meshd.config"
# Flags that have no place on a router: a YAML config instead of UCI, lab-only mDNS shortcut.
NOT_MAPPED = {"--config", "--mdns-fast", "-h", "--help", "--version"}
# Options the init script reads for procd itself, not as flags.
NOT_FLAGS = {"enabled", "mesh_network"}

STUBS = r"""
config_load() { :; }
_opt() { eval "printf '%s' \"\${UCI_$1:-}\""; }
config_get() {
	local v; v=$(_opt "$3"); [ -n "$v" ] || v="$4"; eval "$1=\$v"
}
config_get_bool() {
	local v; v=$(_opt "$3"); [ -n "$v" ] || v="$4"
	case "$v" in 1|on|true|yes|enabled) v=1 ;; *) v=0 ;; esac; eval "$1=\$v"
}
config_list_foreach() {
	local items fn="$3" item; items=$(_opt "$2"); shift 3
	for item in $items; do "$fn" "$item" "$@"; done
}
network_get_device() { eval "$1=dev-$2"; }
network_get_physdev() { return 1; }
procd_open_instance() { :; }
procd_close_instance() { :; }
procd_set_param() { [ "$1" = command ] || return 0; shift; for a in "$@"; do echo "$a"; done; }
procd_append_param() { [ "$1" = command ] || return 0; shift; for a in "$@"; do echo "$a"; done; }
mkdir() { :; }
chmod() { :; }
"""


def run_init(package: uci.Package, tmp_path: Path) -> list[str]:
    """argv procd would run for this /etc/config/meshd (list items must not contain spaces)."""
    script = INIT.read_text()
    script = script.replace(". /lib/functions.sh", ". ./stubs.sh")
    script = script.replace(". /lib/functions/network.sh", ":")
    (tmp_path / "stubs.sh").write_text(STUBS)
    (tmp_path / "meshd.init").write_text(script)
    env = {"PATH": "/usr/bin:/bin"}
    for key, value in package.section("main").options:
        env[f"UCI_{key}"] = " ".join(value) if isinstance(value, tuple) else str(value)
    proc = subprocess.run(
        ["sh", "-c", ". ./meshd.init; start_service"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert not proc.stderr, proc.stderr
    return proc.stdout.splitlines()


def rendered(routing: str) -> uci.Package:
    community, entry, key, profile = node("bakery", gateway=True, routing=routing)
    files = render_node(community, community_data(routing), entry, key, profile, pin(routing))
    return uci.loads(files["etc/config/meshd"].data.decode())


pytestmark = pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")


@pytest.mark.parametrize("routing", ["babel", "batman-adv"])
def test_a_rendered_node_starts_meshd_with_every_option(routing, tmp_path):
    package = rendered(routing)
    argv = run_init(package, tmp_path)
    assert argv[0] == "/usr/bin/meshd"
    ns = build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown flag
    main = package.section("main")
    assert ns.trust_file == Path("/etc/meshd/trust.json")
    assert ns.mesh_ifaces == ns.wifi_ifaces == list(main.get("mesh_iface") or ())
    assert ns.routing == routing
    assert ns.batman_iface == ("bat0" if routing == "batman-adv" else None)
    assert ns.gateway_iface == "dev-wan"
    assert ns.client_ifaces == ["dev-lan"]
    assert ns.nft is None  # on unless switched off
    assert ns.hostname == "bakery"


def test_every_option_maps_to_a_flag_and_every_flag_to_an_option(tmp_path):
    """Options only the init script can read (the agent's defaults for the rest) would drift."""
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("-")}
    script = INIT.read_text()
    unmapped = sorted(f for f in flags - NOT_MAPPED if not re.search(rf"\s{f}(\s|$)", script))
    assert not unmapped, f"meshd flags the init script cannot set: {unmapped}"

    options = set(re.findall(r"^\s*(?:option|list) (\w+) ", DEFAULTS.read_text(), re.M))
    assert {"trust_file", "routing", "nft", "mdns"} <= options
    for routing in ("babel", "batman-adv"):
        options |= {k for k, _ in rendered(routing).section("main").options}
    # an option is read when changing it changes the command line
    package = uci.Package("meshd", (uci.section("meshd", "main"),))
    base = run_init(package, tmp_path)
    unread = []
    for option in sorted(options - NOT_FLAGS):
        one = uci.Package("meshd", (uci.section("meshd", "main", **{option: "0"}),))
        if run_init(one, tmp_path) == base:
            unread.append(option)
    assert not unread, f"options in /etc/config/meshd the init script ignores: {unread}"


def test_switches_turn_nft_and_mdns_off(tmp_path):
    package = uci.Package(
        "meshd",
        (
            uci.section(
                "meshd",
                "main",
                nft="0",
                mdns="0",
                static_neighbour=("abcdefghijklmnop@192.0.2.1:1883",),
            ),
        ),
    )
    argv = run_init(package, tmp_path)
    ns = build_parser().parse_args(argv[1:])
    assert ns.nft is False
    assert ns.mdns is False
    assert ns.static_neighbours == ["abcdefghijklmnop@192.0.2.1:1883"]
    assert shlex.join(argv).count("--trust-file") == 1
