"""The community file (community.yaml) as a checked value.

`parse_community` takes the already-loaded mapping (YAML parsing is the caller's edge) and reports
every problem at once, each with its field path and a fix, so an admin can correct a file in one
pass instead of one error per run.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshd.errors import CommunityError, KeyFormatError, Problem
from meshd.ids import PublicKey
from meshd.trust import Trust, community_message, valid_signers

_SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
BANDS = {"2g": range(1, 15), "5g": range(32, 178), "6g": range(1, 234)}
HTMODES = ("HT20", "HT40", "VHT20", "VHT40", "VHT80", "VHT160", "HE20", "HE40", "HE80", "HE160")
ROUTING = ("babel", "batman-adv")
TOP_FIELDS = frozenset(
    {
        "name",
        "mesh_id",
        "radio",
        "ipv4",
        "ipv6",
        "routing",
        "mqtt",
        "admins",
        "threshold",
        "contribution",
        "signatures",
    }
)


@dataclass(frozen=True, slots=True)
class Band:
    channel: int
    htmode: str


@dataclass(frozen=True, slots=True)
class Admin:
    name: str
    key: PublicKey


@dataclass(frozen=True, slots=True)
class ContributionPolicy:
    """How the cost share and contribution scores weigh each kind of help (Guifi.net style)."""

    base_share: float = 0.5  # part of the costs split equally among members
    consumption_share: float = 0.5  # part split in proportion to what each consumed
    relay_weight: float = 1.0
    gateway_weight: float = 2.0
    uptime_weight: float = 0.5


@dataclass(frozen=True, slots=True)
class Community:
    name: str
    mesh_id: str
    country: str
    sae_passphrase: str
    bands: Mapping[str, Band]
    ipv4: ipaddress.IPv4Network
    ipv6: ipaddress.IPv6Network
    routing: str
    mqtt_port: int
    admins: tuple[Admin, ...]
    threshold: int
    contribution: ContributionPolicy = field(default_factory=ContributionPolicy)
    signatures: tuple[Mapping[str, str], ...] = ()

    @property
    def trust(self) -> Trust:
        return Trust(self.name, frozenset(a.key for a in self.admins), self.threshold)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, fix: str) -> None:
        self.problems.append(Problem(path, message, fix))

    def section(self, data: Mapping[str, Any], key: str, fix: str) -> Mapping[str, Any]:
        value = data.get(key)
        if not isinstance(value, dict):
            self.add(key, "missing" if value is None else "must be a mapping", fix)
            return {}
        return value

    def text(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        fix: str,
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            self.add(path, "missing" if value is None else "must be a non-empty string", fix)
            return ""
        if pattern is not None and not pattern.match(value):
            self.add(path, f"{value!r} is not allowed", fix)
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        lo: int,
        hi: int,
        fix: str,
        default: int | None = None,
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, "missing" if value is None else "must be a whole number", fix)
            return lo
        if not lo <= value <= hi:
            self.add(path, f"{value} is outside {lo}..{hi}", fix)
        return value

    def fraction(
        self, data: Mapping[str, Any], key: str, path: str, default: float, hi: float = 1.0
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= hi:
            self.add(
                path,
                f"must be a number from 0 to {hi:g}",
                f"set {path} to a value such as {default}",
            )
            return default
        return float(value)


def parse_community(data: Any) -> Community:
    """Check a loaded community file; raises CommunityError listing every problem found."""
    c = _Checker()
    if not isinstance(data, dict):
        raise CommunityError(
            [Problem("(file)", "must be a YAML mapping", "start from `mutualmesh community init`")]
        )
    for key in sorted(set(data) - TOP_FIELDS):
        c.add(
            str(key), "unknown field", f"remove it; known fields: {', '.join(sorted(TOP_FIELDS))}"
        )

    name = c.text(
        data,
        "name",
        "name",
        "use 1-32 lowercase letters, digits and hyphens, e.g. riverside",
        _SLUG,
    )
    mesh_id = c.text(
        data, "mesh_id", "mesh_id", "use 1-32 lowercase letters, digits and hyphens", _SLUG
    )

    radio = c.section(data, "radio", "add a radio section with country, sae_passphrase and bands")
    country = (
        c.text(
            radio,
            "country",
            "radio.country",
            "use the two-letter ISO code, e.g. DE",
            re.compile(r"^[A-Z]{2}$"),
        )
        if radio
        else ""
    )
    passphrase = (
        c.text(
            radio,
            "sae_passphrase",
            "radio.sae_passphrase",
            "use 8-63 printable ASCII characters",
            re.compile(r"^[ -~]{8,63}$"),
        )
        if radio
        else ""
    )
    bands: dict[str, Band] = {}
    raw_bands = radio.get("bands") if radio else None
    if radio and (not isinstance(raw_bands, dict) or not raw_bands):
        c.add(
            "radio.bands",
            "must list at least one band",
            "add e.g. `5g: {channel: 36, htmode: VHT80}`",
        )
    elif isinstance(raw_bands, dict):
        for band, spec in sorted(raw_bands.items()):
            path = f"radio.bands.{band}"
            if band not in BANDS:
                c.add(path, "unknown band", f"use one of {', '.join(BANDS)}")
                continue
            if not isinstance(spec, dict):
                c.add(path, "must be a mapping", "write `{channel: N, htmode: MODE}`")
                continue
            channel = c.integer(
                spec, "channel", f"{path}.channel", 1, 233, "pick a channel allowed in your country"
            )
            if channel not in BANDS[band]:
                c.add(
                    f"{path}.channel",
                    f"channel {channel} is not in the {band} band",
                    "pick a channel of that band",
                )
            htmode = spec.get("htmode", "HT20")
            if htmode not in HTMODES:
                c.add(
                    f"{path}.htmode",
                    f"{htmode!r} is not a known htmode",
                    f"use one of {', '.join(HTMODES)}",
                )
            bands[band] = Band(channel, str(htmode))

    ipv4_sec = c.section(data, "ipv4", "add `ipv4: {prefix: 10.N.0.0/16}`")
    ipv4 = ipaddress.IPv4Network("10.0.0.0/16")
    if ipv4_sec:
        try:
            ipv4 = ipaddress.IPv4Network(str(ipv4_sec.get("prefix")))
            if not ipv4.subnet_of(ipaddress.IPv4Network("10.0.0.0/8")) or ipv4.prefixlen > 24:
                c.add(
                    "ipv4.prefix",
                    f"{ipv4} must be a /8../24 inside 10.0.0.0/8",
                    "use e.g. 10.42.0.0/16",
                )
        except ValueError as exc:
            c.add(
                "ipv4.prefix",
                f"not an IPv4 network: {exc}",
                "use e.g. 10.42.0.0/16 (host bits zero)",
            )
    ipv6_sec = c.section(data, "ipv6", "add `ipv6: {prefix: fdXX:XXXX:XXXX::/48}`")
    ipv6 = ipaddress.IPv6Network("fd00::/48")
    if ipv6_sec:
        try:
            ipv6 = ipaddress.IPv6Network(str(ipv6_sec.get("prefix")))
            if not ipv6.subnet_of(ipaddress.IPv6Network("fd00::/8")) or ipv6.prefixlen != 48:
                c.add(
                    "ipv6.prefix",
                    f"{ipv6} must be a ULA /48 inside fd00::/8 (RFC 4193)",
                    "generate one with `mutualmesh community init`",
                )
        except ValueError as exc:
            c.add("ipv6.prefix", f"not an IPv6 network: {exc}", "use e.g. fd12:3456:789a::/48")

    routing_sec = c.section(data, "routing", "add `routing: {protocol: babel}`")
    routing = "babel"
    if routing_sec:
        routing = str(routing_sec.get("protocol"))
        if routing not in ROUTING:
            c.add(
                "routing.protocol",
                f"{routing!r} is not supported",
                f"use one of {', '.join(ROUTING)}",
            )
    mqtt_sec = data.get("mqtt", {}) if isinstance(data.get("mqtt", {}), dict) else {}
    if not isinstance(data.get("mqtt", {}), dict):
        c.add("mqtt", "must be a mapping", "write `mqtt: {port: 1883}`")
    mqtt_port = c.integer(
        mqtt_sec, "port", "mqtt.port", 1, 65535, "use a TCP port, normally 1883", 1883
    )

    admins: list[Admin] = []
    raw_admins = data.get("admins")
    if not isinstance(raw_admins, list) or not raw_admins:
        c.add(
            "admins",
            "must list at least one admin",
            "add `admins: [{name: you, key: <public key>}]` (see `community add-admin`)",
        )
        raw_admins = []
    seen: set[PublicKey] = set()
    for i, entry in enumerate(raw_admins):
        path = f"admins[{i}]"
        if not isinstance(entry, dict):
            c.add(path, "must be a mapping with name and key", "write `{name: NAME, key: KEY}`")
            continue
        admin_name = c.text(entry, "name", f"{path}.name", "give the admin a name")
        try:
            key = PublicKey.from_text(str(entry.get("key", "")), f"{path}.key")
        except KeyFormatError as exc:
            c.add(
                f"{path}.key",
                str(exc),
                "paste the admin's public key as printed by `community add-admin`",
            )
            continue
        if key in seen:
            c.add(
                f"{path}.key",
                "the same key is listed twice",
                "remove the duplicate: each admin counts once",
            )
        seen.add(key)
        admins.append(Admin(admin_name, key))
    threshold = c.integer(
        data,
        "threshold",
        "threshold",
        1,
        max(1, len(raw_admins)),
        "set threshold to a number from 1 to the number of admins",
        1,
    )

    contrib_sec = data.get("contribution", {})
    if not isinstance(contrib_sec, dict):
        c.add("contribution", "must be a mapping", "remove it to use the defaults")
        contrib_sec = {}
    defaults = ContributionPolicy()
    policy = ContributionPolicy(
        base_share=c.fraction(
            contrib_sec, "base_share", "contribution.base_share", defaults.base_share
        ),
        consumption_share=c.fraction(
            contrib_sec,
            "consumption_share",
            "contribution.consumption_share",
            defaults.consumption_share,
        ),
        relay_weight=c.fraction(
            contrib_sec, "relay_weight", "contribution.relay_weight", defaults.relay_weight, 100
        ),
        gateway_weight=c.fraction(
            contrib_sec,
            "gateway_weight",
            "contribution.gateway_weight",
            defaults.gateway_weight,
            100,
        ),
        uptime_weight=c.fraction(
            contrib_sec, "uptime_weight", "contribution.uptime_weight", defaults.uptime_weight, 100
        ),
    )
    if abs(policy.base_share + policy.consumption_share - 1.0) > 1e-9 and not any(
        p.path.startswith("contribution.") for p in c.problems
    ):
        c.add(
            "contribution",
            "base_share + consumption_share must be 1",
            "e.g. base_share: 0.5, consumption_share: 0.5",
        )

    raw_sigs = data.get("signatures", [])
    if not isinstance(raw_sigs, list):
        c.add("signatures", "must be a list", "let `mutualmesh community sign` write it")
        raw_sigs = []

    if c.problems:
        raise CommunityError(c.problems)
    return Community(
        name=name,
        mesh_id=mesh_id,
        country=country,
        sae_passphrase=passphrase,
        bands=bands,
        ipv4=ipv4,
        ipv6=ipv6,
        routing=routing,
        mqtt_port=mqtt_port,
        admins=tuple(admins),
        threshold=threshold,
        contribution=policy,
        signatures=tuple(s for s in raw_sigs if isinstance(s, dict)),
    )


@dataclass(frozen=True, slots=True)
class Review:
    """A community file checked as a whole: the community (None when its structure is broken),
    every problem found, and which of its admins validly signed it."""

    community: Community | None
    problems: tuple[Problem, ...]
    signers: frozenset[PublicKey] = frozenset()
    signatures_present: int = 0

    @property
    def signed(self) -> bool:
        return self.community is not None and len(self.signers) >= self.community.threshold


SIGN_FIX = "ask admins to run `mutualmesh community sign --dir DIR --admin-key KEY`"


def review_community(data: Any, *, require_signatures: bool = False) -> Review:
    """The one check of a loaded community file: structure, then k-of-n admin signatures.

    Signatures, when present, must reach the threshold; with `require_signatures` they must be
    there at all (what a node, and the CLI's read side, demand before trusting the admin keys).
    """
    try:
        community = parse_community(data)
    except CommunityError as exc:
        return Review(None, tuple(exc.problems))
    raw = data.get("signatures") or []
    try:
        signers = valid_signers(community_message(data), raw, community.trust.admins)
    except (TypeError, ValueError):
        signers = frozenset()
    problems: tuple[Problem, ...] = ()
    if (raw or require_signatures) and len(signers) < community.threshold:
        problems = (
            Problem(
                "signatures",
                f"{len(signers)} distinct valid admin signature(s) of {len(raw)} present, "
                f"{community.threshold} needed (signatures cover the whole file: any change "
                "needs new ones)",
                SIGN_FIX,
            ),
        )
    return Review(community, problems, signers, len(raw))
