"""meshd-apply under BusyBox ash against a stock board config: bat0 bridged, stale sections gone.

The script runs in Debian's busybox (`ash` and the applets it calls: sed, grep, cp, mv, mktemp,
head, touch, rm) with a stand-in `uci` (tests/data/openwrt/fake_uci.py, libuci's staging and
anonymous-section naming). The starting point is tests/data/openwrt/stock-cudy_wr3000-v1.uci-show,
a factory config as `uci show` prints it, with br-lan's device section anonymous (as
config_generate makes it) and an anonymous wifi-iface (as LuCI adds one).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import uci
from tests.unit.test_provisioning_fixtures import PASSPHRASE, community_data, node, pin

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "openwrt"
APPLY = ROOT / "openwrt" / "meshd" / "files" / "meshd-apply.sh"
BUSYBOX = shutil.which("busybox")
APPLETS = ("sed", "grep", "cp", "mv", "mktemp", "head", "touch", "rm", "cat")

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="needs busybox (scripts/setup installs it)")


def stock_packages(path: Path) -> dict[str, uci.Package]:
    """`uci show` lines back into packages; `@type[i]` sections become anonymous."""
    order: dict[str, list[list]] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.split("=", 1)
        pkg, sec, *opt = key.split(".")
        sections = order.setdefault(pkg, [])
        if not opt:
            name = None if sec.startswith("@") else sec
            sections.append([value, name, sec, []])
            continue
        target = next(s for s in sections if s[2] == sec)
        values = shlex.split(value)
        target[3].append((opt[0], values[0] if len(values) == 1 else tuple(values)))
    return {
        pkg: uci.Package(pkg, tuple(uci.Section(t, n, tuple(o)) for t, n, _, o in sections))
        for pkg, sections in order.items()
    }


def rendered(routing: str) -> dict[str, bytes]:
    from provisioning.render import render_node

    community, entry, key, profile = node("bakery", gateway=True, routing=routing)
    files = render_node(
        community, community_data(routing), entry, key, profile, pin(routing), PASSPHRASE
    )
    return {name: item.data for name, item in files.items()}


def setup_router(tmp_path: Path, routing: str) -> tuple[Path, Path, dict[str, str]]:
    conf, src, bin_ = tmp_path / "etc-config", tmp_path / "meshd-uci", tmp_path / "bin"
    for d in (conf, src, bin_):
        d.mkdir()
    for pkg, package in stock_packages(DATA / "stock-cudy_wr3000-v1.uci-show").items():
        (conf / pkg).write_text(uci.dumps(package).split("\n", 2)[2])  # no `package` line
    files = rendered(routing)
    for name, data in files.items():
        if name.startswith("etc/meshd/uci/"):
            (src / name.rsplit("/", 1)[1]).write_bytes(data)
    (conf / "meshd").write_bytes(files["etc/config/meshd"])
    for applet in APPLETS:
        (bin_ / applet).symlink_to(BUSYBOX)
    (bin_ / "uci").write_text(
        f'#!{BUSYBOX} ash\nexec {sys.executable} {DATA / "fake_uci.py"} "$@"\n'
    )
    for stub in ("logger", "wifi"):
        (bin_ / stub).write_text(f"#!{BUSYBOX} ash\nexit 0\n")
    for script in bin_.iterdir():
        if not script.is_symlink():
            script.chmod(0o755)
    env = {"PATH": str(bin_), "MESHD_CONFIG_DIR": str(conf), "TMPDIR": str(tmp_path)}
    return conf, src, env


def apply(src: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        [BUSYBOX, "ash", str(APPLY), str(src)],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def config(conf: Path, pkg: str) -> uci.Package:
    text = (conf / pkg).read_text()
    return uci.loads(text if text.startswith("package") else f"package {pkg}\n{text}")


def snapshot(conf: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(conf.iterdir())}


@pytest.mark.parametrize("routing", ["babel", "batman-adv"])
def test_apply_on_a_stock_board_then_again(routing, tmp_path):
    conf, src, env = setup_router(tmp_path, routing)
    apply(src, env)
    first = snapshot(conf)
    assert not [n for n in first if n.startswith(".")], "changes left uncommitted"

    network = config(conf, "network")
    (bridge,) = [s for s in network.sections if s.type == "device" and s.get("name") == "br-lan"]
    ports = bridge.get("ports")
    if routing == "batman-adv":
        assert ports == ("lan1", "lan2", "lan3", "bat0")  # the mesh joins the client bridge
    else:
        assert ports == ("lan1", "lan2", "lan3")
    assert network.section("wan").get("proto") == "dhcp"  # the board's uplink stays

    wireless = config(conf, "wireless")
    ifaces = {s.name for s in wireless.sections if s.type == "wifi-iface"}
    assert ifaces == {
        "wifi_mesh2g",
        "wifi_ap2g",
        "wifi_mesh5g",
        "wifi_ap5g",
    }  # guest, defaults gone
    radios = {s.name: s for s in wireless.sections if s.type == "wifi-device"}
    assert set(radios) == {"radio0", "radio1"}  # mapped by band, no mm_radio_* left
    assert radios["radio0"].get("path") == "platform/soc/18000000.wifi"  # board's path kept
    assert radios["radio0"].get("disabled") == "0"
    assert radios["radio1"].get("htmode") == "HE80"
    meshes = [s for s in wireless.sections if s.get("mode") == "mesh"]
    assert {s.get("device") for s in meshes} == {"radio0", "radio1"}

    dropbear = config(conf, "dropbear")
    assert {s.get("PasswordAuth") for s in dropbear.sections} == {"0"}
    assert config(conf, "system").sections[0].get("hostname") == "bakery"
    assert config(conf, "meshd").section("main").get("enabled") == "1"

    apply(src, env)
    assert snapshot(conf) == first  # idempotent
