"""Routers we know how to build for: OpenWrt target, Image Builder profile, radios, flash and RAM.

The model name given to `node add --model` is the OpenWrt Image Builder profile name, so the same
word works in `make image PROFILE=...`. Values are for OpenWrt 23.05; check `make info` in your
Image Builder if a build says the profile is unknown.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

# CPython plus our agent and mosquitto need about 10 MB of flash and 40-60 MB of RAM at run time;
# LibreMesh recommends the same 16 MB / 128 MB floor for its heavier packages.
MIN_FLASH_MB = 16
MIN_RAM_MB = 128


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    profile: str  # Image Builder PROFILE, also our model name
    name: str  # what people call it
    target: str
    subtarget: str
    bands: tuple[str, ...]  # radios, one per band
    flash_mb: int
    ram_mb: int
    note: str = ""

    @property
    def fits_agent(self) -> bool:
        return self.flash_mb >= MIN_FLASH_MB and self.ram_mb >= MIN_RAM_MB

    def why_not(self) -> str | None:
        """Why the Python agent cannot run on this model, or None when it can."""
        short = []
        if self.flash_mb < MIN_FLASH_MB:
            short.append(f"{self.flash_mb} MB flash (needs {MIN_FLASH_MB} MB)")
        if self.ram_mb < MIN_RAM_MB:
            short.append(f"{self.ram_mb} MB RAM (needs {MIN_RAM_MB} MB)")
        if not short:
            return None
        return (
            f"{self.name} has only {' and '.join(short)}: CPython, the meshd agent and mosquitto "
            "do not fit (same floor as LibreMesh's recommendation)"
        )


_PROFILES = (
    DeviceProfile(
        "tplink_archer-c7-v5",
        "TP-Link Archer C7 v5",
        "ath79",
        "generic",
        ("2g", "5g"),
        16,
        128,
        "ath10k 5 GHz: the non-ct firmware meshes more reliably",
    ),
    DeviceProfile(
        "xiaomi_mi-router-4a-gigabit",
        "Xiaomi Mi Router 4A Gigabit",
        "ramips",
        "mt7621",
        ("2g", "5g"),
        16,
        128,
    ),
    DeviceProfile(
        "cudy_wr3000-v1", "Cudy WR3000 v1", "mediatek", "filogic", ("2g", "5g"), 128, 256
    ),
    DeviceProfile(
        "glinet_gl-b1300", "GL.iNet GL-B1300", "ipq40xx", "generic", ("2g", "5g"), 32, 256
    ),
    DeviceProfile(
        "glinet_gl-mt3000",
        "GL.iNet GL-MT3000 (Beryl AX)",
        "mediatek",
        "filogic",
        ("2g", "5g"),
        256,
        512,
    ),
    DeviceProfile(
        "linksys_e8450-ubi",
        "Linksys E8450 (UBI layout)",
        "mediatek",
        "mt7622",
        ("2g", "5g"),
        128,
        512,
    ),
    DeviceProfile(
        "netgear_r7800",
        "Netgear Nighthawk X4S R7800",
        "ipq806x",
        "generic",
        ("2g", "5g"),
        128,
        512,
    ),
    DeviceProfile(
        "ubnt_unifiac-mesh",
        "Ubiquiti UniFi AC Mesh (outdoor)",
        "ath79",
        "generic",
        ("2g", "5g"),
        16,
        128,
    ),
    DeviceProfile(
        "tplink_eap225-outdoor-v1",
        "TP-Link EAP225-Outdoor v1",
        "ath79",
        "generic",
        ("2g", "5g"),
        16,
        128,
    ),
    DeviceProfile(
        "dynalink_dl-wrx36",
        "Dynalink DL-WRX36",
        "qualcommax",
        "ipq807x",
        ("2g", "5g"),
        256,
        1024,
    ),
    DeviceProfile("zyxel_nwa50ax", "Zyxel NWA50AX", "ramips", "mt7621", ("2g", "5g"), 128, 256),
    # Common in community networks but too small for a Python agent: kept so the refusal is clear.
    DeviceProfile(
        "tplink_tl-wr841n-v14", "TP-Link TL-WR841N v14", "ramips", "mt76x8", ("2g",), 4, 32
    ),
    DeviceProfile("glinet_gl-ar150", "GL.iNet GL-AR150", "ath79", "generic", ("2g",), 16, 64),
    DeviceProfile("tplink_cpe510-v1", "TP-Link CPE510 v1", "ath79", "generic", ("5g",), 8, 64),
    DeviceProfile(
        "ubnt_nanostation-m", "Ubiquiti NanoStation M (XM)", "ath79", "generic", ("5g",), 8, 32
    ),
)

PROFILES: dict[str, DeviceProfile] = {p.profile: p for p in _PROFILES}


class UnknownModel(LookupError):
    def __init__(self, model: str) -> None:
        close = difflib.get_close_matches(model, PROFILES, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        super().__init__(f"unknown model {model!r}; {hint}list them with `mutualmesh node models`")
        self.model = model
        self.suggestions = close


def lookup(model: str) -> DeviceProfile:
    try:
        return PROFILES[model]
    except KeyError:
        raise UnknownModel(model) from None
