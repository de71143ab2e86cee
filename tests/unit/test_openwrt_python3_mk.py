"""What OpenWrt's python3-package.mk does with our meshd Makefile, checked by building our wheel.

Facts from openwrt/packages `lang/python/python3-package.mk`, identical on the openwrt-24.10 and
openwrt-25.12 branches (and 23.05), read 2026-12-01:

- `PYTHON3_PKG_WHEEL_NAME ?= $(subst -,_,$(if $(PYPI_SOURCE_NAME),$(PYPI_SOURCE_NAME),$(PKG_NAME)))`
  and `PYTHON3_PKG_WHEEL_VERSION ?= $(PKG_VERSION)`;
- `Py3Build/Compile/Default` runs `python -m build --no-isolation --wheel --outdir
  $(PYTHON3_PKG_BUILD_DIR)/openwrt-build $(PYTHON3_PKG_BUILD_DIR)`: the host's own backend, no
  download of build requirements;
- `Py3Build/Install/Default` runs `python -m installer` on
  `openwrt-build/$(PYTHON3_PKG_WHEEL_NAME)-$(PYTHON3_PKG_WHEEL_VERSION)-*.whl`: a glob that must
  match the wheel, or the install step fails;
- `Py3Package/<name>/filespec` lines `+|path` keep those paths of the installed tree.

Host setuptools per release (`lang/python/python3-version.mk`, `python-setuptools/Makefile`):
23.05 65.5.0 (bundled), 24.10 79.0.1 (bundled), 25.12 80.9.0 (python-setuptools/host).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from tests.unit.test_openwrt_feed import FEED, ROOT, feed

HOST_SETUPTOOLS = {"23.05": "65.5.0", "24.10": "79.0.1", "25.12": "80.9.0"}
SUPPORTED = ("24.10", "25.12")


def wheel_name(top: dict[str, str]) -> str:
    """python3-package.mk's default, unless the Makefile sets PYTHON3_PKG_WHEEL_NAME."""
    if "PYTHON3_PKG_WHEEL_NAME" in top:
        return top["PYTHON3_PKG_WHEEL_NAME"]
    return (top.get("PYPI_SOURCE_NAME") or top["PKG_NAME"]).replace("-", "_")


def test_wheel_name_rule_as_upstream_states_it():
    assert wheel_name({"PKG_NAME": "python-paho-mqtt", "PYPI_SOURCE_NAME": "paho_mqtt"}) == (
        "paho_mqtt"
    )
    assert wheel_name({"PKG_NAME": "meshd"}) == "meshd"  # the bug: our wheel is mutualmesh-*
    assert wheel_name(feed()["meshd"].top) == "mutualmesh"


def test_setuptools_floor_is_met_by_every_supported_releases_host():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    (setuptools,) = [Requirement(r) for r in requires if r.startswith("setuptools")]
    for release in SUPPORTED:
        assert Version(HOST_SETUPTOOLS[release]) in setuptools.specifier, release


WHEEL = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
SDIST = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"


def _prepared_tree(tmp_path: Path) -> Path:
    """What meshd's Build/Prepare copies, copied the same way."""
    text = (FEED / "meshd" / "Makefile").read_text()
    start = text.index("define Build/Prepare")
    prepare = text[start : text.index("endef", start)].replace("\\\n", " ")
    tree = tmp_path / "src"
    tree.mkdir()
    for name in re.findall(r"\$\(MESHD_SOURCE_DIR\)/([A-Za-z0-9_.]+)", prepare):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tree / name)
    return tree


def _build(tree: Path, hook: str, out: Path) -> Path:
    # No isolation, like `python -m build --no-isolation`: the backend is the one installed.
    result = subprocess.run(
        [sys.executable, "-c", hook, str(out)],
        cwd=tree, capture_output=True, text=True, check=False, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return out / result.stdout.strip().splitlines()[-1]


def test_our_wheel_matches_the_install_glob_and_holds_only_the_router_side(tmp_path):
    mk = feed()["meshd"]
    tree = _prepared_tree(tmp_path)
    wheel = _build(tree, WHEEL, tmp_path / "openwrt-build")
    glob = f"{wheel_name(mk.top)}-{mk.top['PKG_VERSION']}-*.whl"
    assert fnmatch.fnmatch(wheel.name, glob), (wheel.name, glob)
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        entry_text = whl.read(entry).decode()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"meshd", "node_agent"}, tops  # no provisioning, no cli on the router
    filespec = re.findall(r"\+\|\$\(PYTHON3_PKG_DIR\)/(\S+)", (FEED / "meshd/Makefile").read_text())
    for item in filespec:
        assert any(n == item or n.startswith(item + "/") for n in names), item
    assert "meshd = node_agent.__main__:main" in entry_text
    # Py3Package/meshd/install copies usr/bin/meshd, made by installer from that entry point.
    assert "install" in (FEED / "meshd/Makefile").read_text()


def test_our_sdist_builds_from_the_prepared_tree(tmp_path):
    tree = _prepared_tree(tmp_path)
    sdist = _build(tree, SDIST, tmp_path / "dist")
    assert sdist.name == f"mutualmesh-{feed()['meshd'].top['PKG_VERSION']}.tar.gz"
