"""Lint of the OpenWrt feed (openwrt/*/Makefile): the fields the build system and reviewers need.

Runs without an OpenWrt tree: it reads the Makefiles as text, the way `scripts/feeds` does for
metadata, and checks that every package can be fetched reproducibly (a real hash, or built from
this checkout), that it depends only on packages this feed defines or that openwrt-packages.txt
says come from OpenWrt, and that our packaged versions satisfy what the agent is tested with.
"""

from __future__ import annotations

import re
import shutil
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


def openwrt_packages() -> set[str]:
    lines = (FEED / "openwrt-packages.txt").read_text().splitlines()
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


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
                    "openwrt/openwrt-packages.txt"
                )
    for dep in depends(t.get("PKG_BUILD_DEPENDS", "")):
        if dep not in theirs and dep.split("/", 1)[0] not in ours:
            out.append(f"PKG_BUILD_DEPENDS: {dep} not listed in openwrt/openwrt-packages.txt")
    return out


def feed() -> dict[str, Makefile]:
    return {mk.path.parent.name: mk for mk in map(parse, MAKEFILES)}


def our_packages(makefiles: dict[str, Makefile]) -> set[str]:
    return {name for mk in makefiles.values() for name in mk.packages}


def test_the_feed_has_the_agent_and_its_python_dependencies():
    names = our_packages(feed())
    assert {
        "meshd",
        "python3-aiomqtt",
        "python3-paho-mqtt",
        "python3-zeroconf",
        "python3-ifaddr",
    } <= names


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
    assert checked >= 2  # aiomqtt and zeroconf come from this feed


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
    assert "python3-light" not in found  # listed in openwrt-packages.txt; @HAS_FPU is a symbol


SDIST = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"


def test_meshd_builds_from_what_build_prepare_copies(tmp_path):
    """The files Build/Prepare copies are enough for a wheel with everything the filespec keeps."""
    import subprocess
    import sys
    import tarfile

    text = (FEED / "meshd" / "Makefile").read_text()
    prepare = text[
        text.index("define Build/Prepare") : text.index("endef", text.index("define Build/Prepare"))
    ]
    copied = re.findall(r"\$\(MESHD_SOURCE_DIR\)/([A-Za-z0-9_.]+)", prepare.replace("\\\n", " "))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "pyproject.toml" in copied
    assert project["readme"] in copied  # setuptools only warns when it is missing
    tree = tmp_path / "src"
    tree.mkdir()
    for name in copied:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, tree / name)
    # The PEP 517 sdist hook of the same backend the router build uses: it fails on a bad
    # pyproject.toml or a missing readme, and lists the packages and entry points it found.
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-c", SDIST, str(out)],
        cwd=tree, capture_output=True, text=True, check=False, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        entry_points = next(m for m in tar.getmembers() if m.name.endswith("entry_points.txt"))
        entry_text = tar.extractfile(entry_points).read().decode()
    filespec = re.findall(r"\+\|\$\(PYTHON3_PKG_DIR\)/(\S+)", text)
    assert filespec
    for item in filespec:
        assert item in names or any(n.startswith(item + "/") for n in names), item
    assert "meshd = node_agent.__main__:main" in entry_text
