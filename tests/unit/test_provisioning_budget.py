"""The flash budget table: no accepted router is left with a negative overlay."""

from __future__ import annotations

import lzma
from pathlib import Path

from provisioning.budget import MIN_OVERLAY_KIB, OURS_KIB, PACKAGES_KIB
from provisioning.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[2]


def test_no_accepted_profile_has_a_negative_overlay():
    for p in PROFILES.values():
        b = p.budget
        if b.status != "refused":
            assert b.overlay_kib >= 0, p.profile
        if b.status == "ok":
            assert b.overlay_kib >= MIN_OVERLAY_KIB, p.profile
        if b.status != "ok":
            assert b.reason, p.profile


def test_the_boards_upstream_says_are_short_are_not_ok():
    assert PROFILES["tplink_eap225-outdoor-v1"].budget.status == "refused"  # 13.5 MiB partition
    assert PROFILES["xiaomi_mi-router-4a-gigabit"].budget.status != "ok"
    assert PROFILES["cudy_wr3000-v1"].flash_mb == 16
    assert PROFILES["ubnt_nanostation-m"].subtarget == "tiny"


def test_our_own_code_fits_its_line_in_the_budget():
    """What this repository ships (meshd, node_agent) is measured, not guessed."""
    raw = b"".join(
        path.read_bytes()
        for package in ("meshd", "node_agent")
        for path in sorted((ROOT / package).rglob("*.py"))
    )
    measured_kib = len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / 1024
    (line,) = [kib for name, kib, _ in PACKAGES_KIB if name.startswith("meshd + node_agent")]
    assert measured_kib * 2.5 <= line, f"meshd + node_agent is {measured_kib:.0f} KiB now: update"
    assert sum(kib for _, kib, _ in PACKAGES_KIB) == OURS_KIB
