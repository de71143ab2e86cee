"""Lint of the OpenWrt feed (openwrt/*/Makefile): the fields the build system and reviewers need.

Runs without an OpenWrt tree: it reads the Makefiles as text, the way `scripts/feeds` does for
metadata, and checks that every package can be fetched reproducibly (a real hash, or built from
this checkout), that it depends only on packages this feed defines or that upstream-packages.txt
lists for every supported OpenWrt release, and that our packaged versions satisfy what the agent is
tested with. The facts of OpenWrt's python3-package.mk we rely on are encoded in
test_openwrt_python3_mk.py.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FEED = ROOT / "openwrt"
MAKEFILES = sorted(FEED.glob("*/Makefile"))
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ASSIGN = re.compile(r"^([A-Za-z0-9_]+)\s*(\?|:|\+)?=\s*(.*)$")


@dataclass
class Makefile:
    path: Path
    top: dict[str, str] = field(default_factory=dict)
    packages: dict[str, dict[str, str]] = field(default_factory=dict)  # define Package/<name>
    defines: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    includes: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> list[str]:
    """Join backslash continuations; drop comments (none of our values contain '#')."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.startswith("\t") else raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        out.append(pending + line.strip() if pending else line)
        pending = ""
    return out


def parse(path: Path) -> Makefile:
    mk = Makefile(path)
    block: str | None = None
    for line in _logical_lines(path.read_text()):
        if block is not None:
            if line.strip() == "endef":
                block = None
                continue
            m = ASSIGN.match(line.strip())
            if m and block.startswith("Package/") and "/" not in block[len("Package/") :]:
                mk.packages[block[len("Package/") :]][m.group(1)] = m.group(3).strip()
            continue
        if line.startswith("define "):
            block = line.split(None, 1)[1].strip()
            mk.defines.add(block)
            if block.startswith("Package/") and "/" not in block[len("Package/") :]:
                mk.packages[block[len("Package/") :]] = {}
            continue
        if line.startswith("include "):
            mk.includes.append(line.split(None, 1)[1].strip())
        elif line.startswith("$(eval $(call "):
            mk.calls.append(line)
        elif m := ASSIGN.match(line):
            mk.top[m.group(1)] = m.group(3).strip()
    return mk


def depends(value: str) -> list[str]:
    """Package names in a DEPENDS/PKG_BUILD_DEPENDS value: '+x', '@X', 'PACKAGE_y:x' forms."""
    names = []
    for token in value.split():
        token = token.lstrip("+")
        if token.startswith("@") or token.startswith("$("):
            continue  # a config symbol or a make expression, not a package
        names.append(token.rsplit(":", 1)[-1])
    return names


#: The releases the feed is for; 24.10 is the minimum (see README.md: 23.05's zeroconf is 0.97).
RELEASES = ("24.10", "25.12")


def upstream_by_release() -> dict[str, set[str]]:
    """upstream-packages.txt: `name releases... source`, one package a line."""
    out: dict[str, set[str]] = {r: set() for r in RELEASES}
    for line in (FEED / "upstream-packages.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, rest = line.split(None, 1)
        releases = rest.split("openwrt/", 1)[0].split()
        assert releases, line
        assert "openwrt/" in rest, f"no source named: {line}"
        for release in releases:
            out[release].add(name)
    return out


def openwrt_packages() -> set[str]:
    """Names OpenWrt provides on every supported release."""
    by_release = upstream_by_release()
    return set.intersection(*by_release.values())


def openwrt_build_packages() -> set[str]:
    """Host build dependencies: on some releases they come with python3/host (see the list)."""
    return set.union(*upstream_by_release().values())


def problems(mk: Makefile, ours: set[str], theirs: set[str]) -> list[str]:
    """Everything wrong with one Makefile, as readable sentences."""
    out: list[str] = []
    t = mk.top
    for name in ("PKG_NAME", "PKG_VERSION", "PKG_RELEASE", "PKG_LICENSE", "PKG_MAINTAINER"):
        if not t.get(name):
            out.append(f"{name} missing")
    if t.get("PKG_RELEASE") and not t["PKG_RELEASE"].isdigit():
        out.append("PKG_RELEASE must be a whole number")
    if "example.invalid" in mk.path.read_text():
        out.append("placeholder example.invalid URL")
    downloads = "PYPI_NAME" in t or "PKG_SOURCE_URL" in t
    if t.get("PKG_SOURCE_PROTO") == "git":
        if not re.fullmatch(r"[0-9a-f]{40}", t.get("PKG_SOURCE_VERSION", "")):
            out.append("a git source needs PKG_SOURCE_VERSION pinned to a full commit id")
        if not HEX64.match(t.get("PKG_MIRROR_HASH", "")):
            out.append("a git source needs PKG_MIRROR_HASH (sha256 of the tarball made from it)")
    elif downloads:
        if not HEX64.match(t.get("PKG_HASH", "")):
            out.append(f"PKG_HASH must be a sha256, not {t.get('PKG_HASH')!r}")
    else:
        # Built from this checkout: no download, so Build/Prepare must bring the sources.
        if "Build/Prepare" not in mk.defines:
            out.append("no source: neither a download with a hash nor a Build/Prepare")
        if "PKG_HASH" in t and t["PKG_HASH"] == "skip":
            out.append("PKG_HASH:=skip")
    if "PYPI_NAME" in t:
        pypi = [i for i in mk.includes if i.endswith("pypi.mk")]
        package = [i for i in mk.includes if i.endswith("/package.mk")]
        if not pypi or mk.includes.index(pypi[0]) > mk.includes.index(package[0]):
            out.append("pypi.mk must be included before package.mk")
    if not mk.packages:
        out.append("defines no Package/<name>")
    for name, fields in mk.packages.items():
        for key in ("SECTION", "CATEGORY", "TITLE"):
            if not fields.get(key):
                out.append(f"Package/{name}: {key} missing")
        if f"$(eval $(call BuildPackage,{name}))" not in mk.calls:
            out.append(f"Package/{name} is never built (BuildPackage)")
        for dep in depends(fields.get("DEPENDS", "")):
            if dep not in ours and dep not in theirs:
                out.append(
                    f"Package/{name}: depends on {dep}, neither in this feed nor listed in "
                    "openwrt/upstream-packages.txt for every supported release"
                )
    for dep in depends(t.get("PKG_BUILD_DEPENDS", "")):
        if dep not in openwrt_build_packages() and dep.split("/", 1)[0] not in ours:
            out.append(f"PKG_BUILD_DEPENDS: {dep} not listed in openwrt/upstream-packages.txt")
    return out


def feed() -> dict[str, Makefile]:
    return {mk.path.parent.name: mk for mk in map(parse, MAKEFILES)}


def our_packages(makefiles: dict[str, Makefile]) -> set[str]:
    return {name for mk in makefiles.values() for name in mk.packages}


def test_the_feed_has_the_agent_and_its_python_dependencies():
    names = our_packages(feed())
    assert names == {"meshd", "python3-aiomqtt", "python3-paho-mqtt"}


def test_what_upstream_packages_is_taken_from_upstream():
    """No private copy of a package OpenWrt already ships (zeroconf, ifaddr on 24.10+)."""
    names = our_packages(feed())
    assert not names & openwrt_packages()
    assert {"python3-zeroconf", "python3-ifaddr", "ip-full"} <= openwrt_packages()


def test_meshd_depends_on_what_the_agent_runs_and_nothing_it_does_not():
    deps = depends(feed()["meshd"].packages["meshd"]["DEPENDS"])
    assert "ip-full" in deps  # `ip -j neigh` (node_agent/radio.py): BusyBox ip has no -j
    assert "python3-codecs" not in deps  # CJK codecs and unicodedata only; nothing imports them
    assert "python3-zeroconf" in deps
    # the bundle's community file is JSON (test_agent_config.py runs the agent without yaml)
    assert "python3-yaml" not in deps
    # plain MQTT only: the agent runs without ssl (test_agent_config.py, test_agent_lean.py)
    aiomqtt = depends(feed()["python3-aiomqtt"].packages["python3-aiomqtt"]["DEPENDS"])
    assert "python3-openssl" not in deps + aiomqtt


def test_image_packages_exist_upstream():
    """What `node image` adds to an Image Builder call is an upstream package on every release."""
    from provisioning.render import EXTRA_IMAGE_PACKAGES

    theirs = openwrt_packages() | our_packages(feed())
    for name in EXTRA_IMAGE_PACKAGES:
        assert name.lstrip("-") in theirs or name.startswith("-"), name


@pytest.mark.parametrize("path", MAKEFILES, ids=lambda p: p.parent.name)
def test_makefile_lint(path):
    makefiles = feed()
    found = problems(makefiles[path.parent.name], our_packages(makefiles), openwrt_packages())
    assert not found, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(found)


def test_meshd_version_is_the_projects():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert feed()["meshd"].top["PKG_VERSION"] == project["version"]


def test_packaged_versions_satisfy_the_agents_requirements():
    """The router gets versions inside the ranges the agent is tested with (pyproject extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["optional-dependencies"]["router"]]
    by_pypi = {
        mk.top["PYPI_NAME"]: mk.top["PKG_VERSION"]
        for mk in feed().values()
        if "PYPI_NAME" in mk.top
    }
    checked = 0
    for req in requirements:
        if req.name in by_pypi:
            assert Version(by_pypi[req.name]) in req.specifier, (req, by_pypi[req.name])
            checked += 1
    assert checked >= 1  # aiomqtt comes from this feed
    # zeroconf comes from OpenWrt: its 24.10/25.12 version must satisfy the agent's range too.
    zeroconf = next(r for r in requirements if r.name == "zeroconf")
    assert Version("0.131.0") in zeroconf.specifier


BROKEN = """include $(TOPDIR)/rules.mk
PKG_NAME:=python-thing
PKG_VERSION:=1.0
PKG_RELEASE:=x
PYPI_NAME:=thing
PKG_HASH:=skip
include $(INCLUDE_DIR)/package.mk
include $(TOPDIR)/feeds/packages/lang/python/pypi.mk
define Package/python3-thing
  SECTION:=lang
  CATEGORY:=Languages
  DEPENDS:=+python3-light \\
	+python3-nonesuch @HAS_FPU
endef
"""


def test_the_lint_catches_what_it_claims_to(tmp_path):
    path = tmp_path / "python3-thing" / "Makefile"
    path.parent.mkdir()
    path.write_text(BROKEN)
    found = "\n".join(problems(parse(path), {"python3-thing"}, openwrt_packages()))
    for expected in (
        "PKG_LICENSE missing",
        "PKG_MAINTAINER missing",
        "PKG_RELEASE must be a whole number",
        "PKG_HASH must be a sha256, not 'skip'",
        "pypi.mk must be included before package.mk",
        "TITLE missing",
        "never built",
        "depends on python3-nonesuch",
    ):
        assert expected in found, expected
    assert "python3-light" not in found  # listed in upstream-packages.txt; @HAS_FPU is a symbol
