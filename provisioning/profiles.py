"""Routers we know how to build for: OpenWrt target, Image Builder profile, radios, flash and RAM.

The model name given to `node add --model` is the OpenWrt Image Builder profile name, so the same
word works in `make image PROFILE=...`. Values are for OpenWrt 24.10; check `make info` in your
Image Builder if a build says the profile is unknown. Whether the agent fits is decided by the
flash budget (provisioning.budget), not by a flash-size floor.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshd.errors import FixableError

if TYPE_CHECKING:
    from provisioning.budget import Budget


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    profile: str  # Image Builder PROFILE, also our model name
    name: str  # what people call it
    target: str
    subtarget: str
    bands: tuple[str, ...]  # radios, one per band
    flash_mb: int
    ram_mb: int
    #: Space for kernel + rootfs + overlay: the target's IMAGE_SIZE (or, where named, the
    #: firmware partition of the flash layout; an estimate for UBI boards without IMAGE_SIZE).
    firmware_kib: int
    firmware_source: str
    ax: bool = False  # 802.11ax radios: HE htmodes
    note: str = ""

    @property
    def budget(self) -> Budget:
        from provisioning.budget import budget_for

        return budget_for(self)

    def why_not(self) -> str | None:
        """Why the Python agent cannot run on this model, or None when it can."""
        b = self.budget
        return b.reason if b.status == "refused" else None


# Sources: openwrt/openwrt target/linux/<target>/image/*.mk (IMAGE_SIZE), checked for the 16 MB
# boards against Gluon's targets/* and the DTS; see /work/shared/notes/openwrt-facts.md §1.
_PROFILES = (
    DeviceProfile(
        profile="tplink_archer-c7-v5",
        name="TP-Link Archer C7 v5",
        target="ath79",
        subtarget="generic",
        bands=("2g", "5g"),
        flash_mb=16,
        ram_mb=128,
        firmware_kib=15360,
        firmware_source="ath79/image/generic-tp-link.mk: IMAGE_SIZE := 15360k",
        ax=False,
        note="ath10k-ct 5 GHz radio",
    ),
    DeviceProfile(
        profile="xiaomi_mi-router-4a-gigabit",
        name="Xiaomi Mi Router 4A Gigabit",
        target="ramips",
        subtarget="mt7621",
        bands=("2g", "5g"),
        flash_mb=16,
        ram_mb=128,
        firmware_kib=14848,
        firmware_source="ramips/image/mt7621.mk: IMAGE_SIZE := 14848k",
        ax=False,
        note="the -v2 (MT7663) is another profile",
    ),
    DeviceProfile(
        profile="cudy_wr3000-v1",
        name="Cudy WR3000 v1",
        target="mediatek",
        subtarget="filogic",
        bands=("2g", "5g"),
        flash_mb=16,
        ram_mb=256,
        firmware_kib=15424,
        firmware_source="mediatek/image/filogic.mk: IMAGE_SIZE := 15424k (16 MB SPI-NOR)",
        ax=True,
        note="the 128 MB NAND boards are the WR3000S/E",
    ),
    DeviceProfile(
        profile="glinet_gl-b1300",
        name="GL.iNet GL-B1300",
        target="ipq40xx",
        subtarget="generic",
        bands=("2g", "5g"),
        flash_mb=32,
        ram_mb=256,
        firmware_kib=26624,
        firmware_source="ipq40xx/image/generic.mk: IMAGE_SIZE := 26624k",
        ax=False,
    ),
    DeviceProfile(
        profile="glinet_gl-mt3000",
        name="GL.iNet GL-MT3000 (Beryl AX)",
        target="mediatek",
        subtarget="filogic",
        bands=("2g", "5g"),
        flash_mb=256,
        ram_mb=512,
        firmware_kib=246272,
        firmware_source="mediatek/image/filogic.mk: IMAGE_SIZE := 246272k",
        ax=True,
    ),
    DeviceProfile(
        profile="linksys_e8450-ubi",
        name="Linksys E8450 (UBI layout)",
        target="mediatek",
        subtarget="mt7622",
        bands=("2g", "5g"),
        flash_mb=128,
        ram_mb=512,
        firmware_kib=102400,
        firmware_source="estimate: UBI on 128 MB NAND; mediatek/image/mt7622.mk sets no IMAGE_SIZE",
        ax=True,
    ),
    DeviceProfile(
        profile="netgear_r7800",
        name="Netgear Nighthawk X4S R7800",
        target="ipq806x",
        subtarget="generic",
        bands=("2g", "5g"),
        flash_mb=128,
        ram_mb=512,
        firmware_kib=98304,
        firmware_source="estimate: UBI on 128 MB NAND; ipq806x/image/generic.mk sets no IMAGE_SIZE",
        ax=False,
    ),
    DeviceProfile(
        profile="ubnt_unifiac-mesh",
        name="Ubiquiti UniFi AC Mesh (outdoor)",
        target="ath79",
        subtarget="generic",
        bands=("2g", "5g"),
        flash_mb=16,
        ram_mb=128,
        firmware_kib=15488,
        firmware_source="ath79/image/common-ubnt.mk Device/ubnt_unifiac: IMAGE_SIZE := 15488k",
        ax=False,
    ),
    DeviceProfile(
        profile="tplink_eap225-outdoor-v1",
        name="TP-Link EAP225-Outdoor v1",
        target="ath79",
        subtarget="generic",
        bands=("2g", "5g"),
        flash_mb=16,
        ram_mb=128,
        firmware_kib=13824,
        firmware_source="tplink-safeloader EAP225-OUTDOOR-V1: firmware 0x40000, 0xd80000",
        ax=False,
    ),
    DeviceProfile(
        profile="dynalink_dl-wrx36",
        name="Dynalink DL-WRX36",
        target="qualcommax",
        subtarget="ipq807x",
        bands=("2g", "5g"),
        flash_mb=256,
        ram_mb=1024,
        firmware_kib=225280,
        firmware_source="estimate: UBI on 256 MB NAND (qualcommax/image/ipq807x.mk)",
        ax=True,
    ),
    DeviceProfile(
        profile="zyxel_nwa50ax",
        name="Zyxel NWA50AX",
        target="ramips",
        subtarget="mt7621",
        bands=("2g", "5g"),
        flash_mb=128,
        ram_mb=256,
        firmware_kib=98304,
        firmware_source="estimate: UBI on 128 MB NAND (ramips/image/mt7621.mk)",
        ax=True,
        note="not the NWA50AX Pro (mediatek/filogic)",
    ),
    DeviceProfile(
        profile="tplink_tl-wr841n-v14",
        name="TP-Link TL-WR841N v14",
        target="ramips",
        subtarget="mt76x8",
        bands=("2g",),
        flash_mb=4,
        ram_mb=32,
        firmware_kib=3968,
        firmware_source="ramips/image/mt76x8.mk: IMAGE_SIZE := 3968k",
        ax=False,
        note="common in community networks; kept so the refusal is clear",
    ),
    DeviceProfile(
        profile="glinet_gl-ar150",
        name="GL.iNet GL-AR150",
        target="ath79",
        subtarget="generic",
        bands=("2g",),
        flash_mb=16,
        ram_mb=64,
        firmware_kib=16000,
        firmware_source="estimate: 16 MB NOR less u-boot and art",
        ax=False,
    ),
    DeviceProfile(
        profile="tplink_cpe510-v1",
        name="TP-Link CPE510 v1",
        target="ath79",
        subtarget="generic",
        bands=("5g",),
        flash_mb=8,
        ram_mb=64,
        firmware_kib=7680,
        firmware_source="estimate: 8 MB NOR less boot, config and radio partitions",
        ax=False,
    ),
    DeviceProfile(
        profile="ubnt_nanostation-m",
        name="Ubiquiti NanoStation M (XM)",
        target="ath79",
        subtarget="tiny",
        bands=("5g",),
        flash_mb=8,
        ram_mb=32,
        firmware_kib=7552,
        firmware_source="estimate: 8 MB NOR less boot, config and radio (tiny-ubnt.mk)",
        ax=False,
        note="one image for the M2 (2.4 GHz) and M5 (5 GHz)",
    ),
)

PROFILES: dict[str, DeviceProfile] = {p.profile: p for p in _PROFILES}


class UnknownModel(FixableError, LookupError):
    """A model name no profile has; the fix suggests the closest names."""

    def __init__(self, model: str) -> None:
        close = difflib.get_close_matches(model, PROFILES, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        super().__init__(
            f"unknown model {model!r}",
            "--model",
            f"{hint}list known models with `mutualmesh node models`",
        )
        self.model = model
        self.suggestions = close


def lookup(model: str) -> DeviceProfile:
    try:
        return PROFILES[model]
    except KeyError:
        raise UnknownModel(model) from None
