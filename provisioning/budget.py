"""Flash budget per router: firmware partition minus base image minus our packages = overlay.

Sizes are squashfs (xz) bytes. What we ship ourselves is measured (`shipped_kib`) by
tests/unit/test_provisioning_budget.py, which fails if our code outgrows its line here; the rest
are estimates (named so) from /work/shared/notes/openwrt-facts.md §7: CPython 3.11 stdlib
compiled to .pyc and binaries stripped on x86_64, compressed with `xz -9e`; MIPS and ARM builds
are of the same order, not equal. Only a real Image Builder run (`check-size`) proves a fit.
"""

from __future__ import annotations

import importlib.util
import lzma
import marshal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioning.profiles import DeviceProfile

#: The packages the feed installs on the router (openwrt/meshd/Makefile's filespec).
ROUTER_PACKAGES = ("meshd", "node_agent")


def shipped_kib(root: Path) -> float:
    """KiB of xz (-9e) of what the feed installs from `root`: every module as .pyc (what
    python3-package.mk ships; .py goes to meshd-src), compiled by this interpreter, and every
    other package file (py.typed, the members' web assets) as is. squashfs compresses per
    block, so this is a slight underestimate; the budget line keeps headroom above it."""
    blob = bytearray()
    for package in ROUTER_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if path.suffix == ".py":
                code = compile(path.read_bytes(), str(path.relative_to(root)), "exec")
                blob += importlib.util.MAGIC_NUMBER + bytes(12)
                blob += marshal.dumps(code)
            else:
                blob += path.read_bytes()
    return len(lzma.compress(bytes(blob), preset=9 | lzma.PRESET_EXTREME)) / 1024


#: (component, KiB of squashfs, how the number was obtained)
PACKAGES_KIB: tuple[tuple[str, int, str], ...] = (
    ("python3-light (pure-Python stdlib part)", 1843, "estimate: measured on x86_64, xz -9e"),
    ("libpython3 + lib-dynload, without python3-codecs", 2200, "estimate: x86_64 stripped"),
    ("python3-asyncio, -logging, -urllib, -uuid", 460, "estimate: x86_64, xz -9e"),
    # Not shipped: python3-openssl + libopenssl3 + ca-certs (about 1430 KiB): the agent speaks
    # plain MQTT and runs without ssl (node_agent/lean.py stand_in_for_ssl).
    ("python3-zeroconf 0.131 (Cython build) + ifaddr", 800, "estimate: compiled modules"),
    ("python3-aiomqtt + paho-mqtt", 200, "estimate: pure Python, xz -9e"),
    # Measured by shipped_kib (the test fails above this line): 177 KiB after the agent split,
    # 218 KiB with the members' page (node_agent/web/*, webapi), respondd and metrics merged.
    ("meshd + node_agent (this repository, .pyc + package data)", 260, "measured, + headroom"),
    # Not shipped: python3-yaml + libyaml (about 150 KiB): the bundle's community file is JSON.
    ("python3-pynacl + libsodium + cffi", 450, "estimate"),
    ("mosquitto-nossl, babeld, wpad-mesh over wpad-basic", 220, "estimate"),
    ("ip-full + libbpf + libelf", 350, "estimate: ipk sizes"),
)
OURS_KIB = sum(kib for _, kib, _ in PACKAGES_KIB)

#: Base image (kernel + default rootfs, no LuCI) by target, KiB; estimates.
BASE_KIB: dict[str, int] = {
    "ath79": 6144,
    "ramips": 6144,
    "ipq40xx": 6656,
    "ipq806x": 6656,
    "mediatek": 6656,
    "qualcommax": 7680,
}
#: JFFS2/UBIFS needs room for config, the agent's state and a few erase blocks.
MIN_OVERLAY_KIB = 1024
MIN_RAM_MB = 128
SAFE_RAM_MB = 256
#: The agent's RSS in MB, steady state with 200 nodes' records (603 held) and 8 neighbours, no
#: ssl/_hashlib/yaml (as on the router), measured by `bench/agent_footprint.py --router` on a
#: 32-bit CPython 3.11 (Debian bookworm's python3:i386, unpacked and run by its own ld.so, see
#: the bench's docstring): 23.3 MB (26.6 MB with ssl; 64-bit: 26.9 and 31.3 MB). MIPS and ARM
#: builds are of the same order, not equal; mosquitto and babeld come on top (a few MB).
AGENT_RSS_MB_32BIT = 23.3


@dataclass(frozen=True, slots=True)
class Budget:
    firmware_kib: int
    base_kib: int
    packages_kib: int
    status: str  # "ok", "experimental" or "refused"
    reason: str = ""

    @property
    def overlay_kib(self) -> int:
        return self.firmware_kib - self.base_kib - self.packages_kib


def budget_for(p: DeviceProfile) -> Budget:
    base = BASE_KIB.get(p.target, 7680)
    overlay = p.firmware_kib - base - OURS_KIB
    parts = (p.firmware_kib, base, OURS_KIB)
    if p.ram_mb < MIN_RAM_MB:
        why = (
            f"{p.name} has {p.ram_mb} MB RAM: CPython, the agent, mosquitto and the Wi-Fi "
            f"stack need at least {MIN_RAM_MB} MB"
        )
        return Budget(*parts, "refused", why)
    if overlay < 0:
        why = (
            f"{p.name}: the image (about {(base + OURS_KIB) / 1024:.1f} MiB) does not fit its "
            f"{p.firmware_kib / 1024:.1f} MiB firmware partition"
        )
        return Budget(*parts, "refused", why)
    if overlay < MIN_OVERLAY_KIB:
        why = (
            f"about {overlay} KiB of overlay left (needs {MIN_OVERLAY_KIB}): settings and the "
            "agent's state may not fit; use extroot (USB) or expect a failed build"
        )
        return Budget(*parts, "experimental", why)
    if p.ram_mb < SAFE_RAM_MB:
        why = (
            f"{p.ram_mb} MB RAM leaves little headroom for the agent (about "
            f"{AGENT_RSS_MB_32BIT:.0f} MB measured on 32-bit, more with a larger mesh) and Wi-Fi"
        )
        return Budget(*parts, "experimental", why)
    return Budget(*parts, "ok")
