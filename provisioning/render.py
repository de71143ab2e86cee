"""Render one node's OpenWrt configuration: a pure function of the stored community and node.

Board-specific parts of OpenWrt's config (radio `path`, switch ports of `br-lan`, the `wan`
device) are never written by us: the first-boot script (`meshd-apply` in the package feed) merges
our `network` and `wireless` sections into the board's defaults, mapping our `mm_radio_<band>`
placeholders onto whichever radio reports that band. `firewall`, `dhcp`, `babeld` and `meshd` are
ours entirely and replace the defaults.

netjsonconfig's OpenWrt backend builds the wireless and interface sections; our UCI writer
(provisioning.uci) turns its intermediate data into text, because netjsonconfig does not escape
single quotes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netjsonconfig import OpenWrt

from meshd import defaults
from meshd.community import Community
from meshd.encoding import canonical_json
from meshd.ids import SigningKey
from provisioning import uci
from provisioning.keys import KEY_HEADER
from provisioning.nodes import NodeEntry
from provisioning.profiles import DeviceProfile
from provisioning.security import BABEL_LOCAL_PORT, admin_ssh_keys
from provisioning.trustchain import Pin
from provisioning.zones import dhcp, firewall

METRICS_PORT = defaults.HTTP_PORT
PROBE_PORT = defaults.PROBE_PORT
APPLY_SRC = "/etc/meshd/uci"

_PROTOCOL = {"2g": "802.11n", "5g": "802.11ac", "6g": "802.11ax"}


@dataclass(frozen=True, slots=True)
class BundleFile:
    data: bytes
    mode: int = 0o644


def mesh_ifname(band: str) -> str:
    return f"mesh{band}"


def _width(htmode: str) -> int:
    return int("".join(ch for ch in htmode if ch.isdigit()) or 20)


def _protocol(band: str, htmode: str) -> str:
    if htmode.startswith("HE"):
        return "802.11ax"
    if htmode.startswith("VHT"):
        return "802.11ac"
    return "802.11n" if band == "2g" else _PROTOCOL[band]


def node_bands(community: Community, profile: DeviceProfile) -> list[str]:
    """Bands the mesh uses on this model: the model's radios that the community configures."""
    return [b for b in profile.bands if b in community.bands]


def _netjson(
    community: Community, node: NodeEntry, bands: list[str], passphrase: str
) -> dict[str, Any]:
    addr = node.addresses
    babel = community.routing == "babel"
    radios = []
    interfaces: list[dict[str, Any]] = []
    for band in bands:
        spec = community.bands[band]
        radios.append(
            {
                "name": f"mm_radio_{band}",
                "protocol": _protocol(band, spec.htmode),
                "channel": spec.channel,
                "channel_width": _width(spec.htmode),
                "country": community.country,
            }
        )
        mesh: dict[str, Any] = {
            "name": mesh_ifname(band),
            "type": "wireless",
            "network": f"mesh_{band}",
            "wireless": {
                "radio": f"mm_radio_{band}",
                "mode": "802.11s",
                "mesh_id": community.mesh_id,
                "network": [f"mesh_{band}"],
                "encryption": {
                    "protocol": "wpa3_personal",
                    "cipher": "ccmp",
                    "key": passphrase,
                    "ieee80211w": "2",
                },
            },
        }
        if babel:
            mesh["addresses"] = [
                {"proto": "static", "family": "ipv4", "address": str(addr.ipv4), "mask": 32},
                {"proto": "static", "family": "ipv6", "address": str(addr.ipv6), "mask": 128},
            ]
        interfaces.append(mesh)
        interfaces.append(
            {
                "name": f"ap{band}",
                "type": "wireless",
                "wireless": {
                    "radio": f"mm_radio_{band}",
                    "mode": "access_point",
                    "ssid": community.name,
                    "network": ["lan"],
                },
            }
        )
    if babel:
        client_v4 = addr.ipv4_client
        lan_v4 = {
            "proto": "static",
            "family": "ipv4",
            "address": str(client_v4.network_address + 1),
            "mask": client_v4.prefixlen,
        }
        lan_v6 = {
            "proto": "static",
            "family": "ipv6",
            "address": str(addr.ipv6_client.network_address + 1),
            "mask": 64,
        }
    else:
        # batman-adv: one layer-2 cloud; each node serves DHCP from its own block of the prefix.
        lan_v4 = {
            "proto": "static",
            "family": "ipv4",
            "address": str(addr.ipv4),
            "mask": community.ipv4.prefixlen,
        }
        lan_v6 = {
            "proto": "static",
            "family": "ipv6",
            "address": str(addr.ipv6),
            "mask": 64,
        }
    interfaces.append(
        {"name": "br-lan", "type": "ethernet", "network": "lan", "addresses": [lan_v4, lan_v6]}
    )
    return {"radios": radios, "interfaces": interfaces}


def _netjsonconfig_packages(
    community: Community,
    node: NodeEntry,
    bands: list[str],
    ax: bool,
    passphrase: str,
) -> dict[str, uci.Package]:
    backend = OpenWrt(_netjson(community, node, bands, passphrase))
    backend.validate()
    backend.to_intermediate()
    data: Mapping[str, Any] = backend.intermediate_data
    out = {name: uci.from_intermediate(name, blocks) for name, blocks in data.items()}
    out["wireless"] = uci.Package(
        "wireless", tuple(_fix_wireless(s, ax) for s in out["wireless"].sections)
    )
    return out


def he_htmode(htmode: str) -> str:
    """The 802.11ax mode of the same width: on an AX radio VHT80 would switch 11ax off."""
    for old in ("VHT", "HT"):
        if htmode.startswith(old):
            return "HE" + htmode[len(old) :]
    return htmode


def _fix_wireless(section: uci.Section, ax: bool) -> uci.Section:
    """What netjsonconfig does not write: radios on, HE modes on AX radios, no HWMP under us."""
    if section.type == "wifi-device":
        # Radios ship disabled in OpenWrt's defaults; ours must come up.
        options = [
            (k, he_htmode(str(val)) if ax and k == "htmode" else val) for k, val in section.options
        ]
        return uci.Section(section.type, section.name, (*options, ("disabled", "0")))
    if dict(section.options).get("mode") == "mesh":
        # 802.11s forwards at layer 2 (HWMP) unless told not to: under babel that is double
        # routing with flat metrics, under batman-adv a second mesh below it. Gluon and
        # LibreMesh both switch it off.
        return uci.Section(section.type, section.name, (*section.options, ("mesh_fwding", "0")))
    return section


def _network(
    community: Community, node: NodeEntry, bands: list[str], passphrase: str
) -> uci.Package:
    base = _netjsonconfig_packages(community, node, bands, False, passphrase)["network"]
    if community.routing == "babel":
        return base
    # netjsonconfig writes no interface for an address-less mesh: batman-adv hard interfaces
    # are ours.
    extra = [
        uci.section("interface", "bat0", proto="batadv", routing_algo="BATMAN_IV", gw_mode="off"),
        *(
            uci.section(
                "interface",
                f"mesh_{band}",
                proto="batadv_hardif",
                master="bat0",
                device=mesh_ifname(band),
                mtu="1536",
            )
            for band in bands
        ),
    ]
    sections = [s for s in base.sections if not (s.name or "").startswith("mesh_")]
    return uci.Package("network", (*extra, *sections))


def _wireless(
    community: Community, node: NodeEntry, bands: list[str], profile: DeviceProfile, passphrase: str
) -> uci.Package:
    return _netjsonconfig_packages(community, node, bands, profile.ax, passphrase)["wireless"]


def _babeld(community: Community, node: NodeEntry, bands: list[str]) -> uci.Package:
    s = uci.section
    sections = [s("general", "general", local_port=str(BABEL_LOCAL_PORT))]
    # 802.11s vifs are radio links: without `type wireless` babeld treats them as wired and
    # uses split horizon, which breaks relaying over one radio once mesh_fwding is off.
    sections += [s("interface", f"mesh_{b}", ifname=mesh_ifname(b), type="wireless") for b in bands]
    sections += [
        s("filter", "own_ipv4", type="redistribute", ip=str(community.ipv4), action="allow"),
        s("filter", "own_ipv6", type="redistribute", ip=str(community.ipv6), action="allow"),
    ]
    if node.gateway:
        sections += [
            s(
                "filter",
                "default_ipv4",
                type="redistribute",
                ip="0.0.0.0/0",
                eq="0",
                action="allow",
            ),
        ]
        # No ::/0: clients get only ULA addresses and the gateway does no NAT66, so IPv6 to the
        # internet would not work; announcing it would only make clients wait for timeouts.
    sections += [
        s("filter", "no_other_local", type="redistribute", local="true", action="deny"),
        s("filter", "no_other", type="redistribute", action="deny"),
    ]
    return uci.Package("babeld", tuple(sections))


def _meshd(community: Community, node: NodeEntry, bands: list[str]) -> uci.Package:
    options: dict[str, object] = {
        "enabled": True,
        "key": "/etc/meshd/node.key",
        "cert": "/etc/meshd/cert.json",
        "community_file": "/etc/meshd/community.json",
        "trust_file": "/etc/meshd/trust.json",
        "state_dir": "/etc/meshd/state",
        "status_file": "/tmp/meshd/status.json",
        "mesh_iface": [mesh_ifname(b) for b in bands],
        "wifi_iface": [mesh_ifname(b) for b in bands],  # 802.11s: per-station counters
        "routing": community.routing,
        "batman_iface": "bat0" if community.routing == "batman-adv" else None,
        "mesh_network": [f"mesh_{b}" for b in bands],  # restart triggers
        "address": [str(node.addresses.ipv4), str(node.addresses.ipv6)],
        "hostname": node.hostname,
        "model": node.model,
        "broker_port": str(community.mqtt_port),
        "babel_port": str(BABEL_LOCAL_PORT),
        "metrics_port": str(METRICS_PORT),
        "probe_port": str(PROBE_PORT),
        "client_network": "lan",
        "gateway_network": "wan" if node.gateway else None,
        "gateway_kbit": str(node.uplink_kbit) if node.gateway and node.uplink_kbit else None,
        "log_level": "info",
    }
    return uci.Package("meshd", (uci.section("meshd", "main", **options),))


def _dropbear() -> uci.Package:
    """Key-only SSH: password and root-password login off (keys in authorized_keys)."""
    return uci.Package(
        "dropbear",
        (
            uci.section(
                "dropbear",
                "main",
                PasswordAuth="0",
                RootPasswordAuth="0",
                RootLogin="1",
                Port="22",
            ),
        ),
    )


def _mosquitto(community: Community, node: NodeEntry) -> str:
    port = community.mqtt_port
    lines = [
        f"# mutualmesh: broker of {node.hostname}. Rendered by `mutualmesh node add`;",
        "# edits are lost when the node is rendered again.",
        "per_listener_settings true",
        "persistence false",
        "max_queued_messages 1000",
        "",
        "# The local agent: the only writer.",
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "acl_file /etc/mosquitto/meshd-local.acl",
    ]
    for address in (node.addresses.ipv4, node.addresses.ipv6):
        lines += [
            "",
            "# Neighbours' agents: read only (meshd-mesh.acl).",
            f"listener {port} {address}",
            "allow_anonymous true",
            "acl_file /etc/mosquitto/meshd-mesh.acl",
        ]
    return "\n".join(lines) + "\n"


def _bridge_filter() -> str:
    return """# mutualmesh: clients' DHCP and router advertisements stay off the batman-adv mesh.
table bridge meshd_filter
delete table bridge meshd_filter
table bridge meshd_filter {
\tchain forward {
\t\ttype filter hook forward priority 0; policy accept;
\t\toifname "bat0" udp dport { 67, 68, 546, 547 } drop
\t\toifname "bat0" icmpv6 type { nd-router-advert, nd-router-solicit } drop
\t}
\tchain output {
\t\ttype filter hook output priority 0; policy accept;
\t\toifname "bat0" udp sport { 67, 547 } drop
\t\toifname "bat0" icmpv6 type nd-router-advert drop
\t}
}
"""


UCI_DEFAULTS = """#!/bin/sh
# mutualmesh: merge this node's rendered configuration into the board defaults on first boot.
# Idempotent; the logic lives in the meshd package so image and `node push` share it.
[ -x /usr/libexec/meshd-apply ] || exit 1
exec /usr/libexec/meshd-apply /etc/meshd/uci
"""


def render_node(
    community: Community,
    community_data: Mapping[str, Any],
    node: NodeEntry,
    node_key: SigningKey,
    profile: DeviceProfile,
    pin: Pin,
    sae_passphrase: str | None = None,
) -> dict[str, BundleFile]:
    """Every file of the node's bundle, keyed by path relative to the router's root.

    `pin` (the community's genesis and the version the admin verified) goes to
    /etc/meshd/trust.json: a later community file must chain from it (meshd.trustchain).
    `sae_passphrase` comes from the folder's secrets/ (older communities: community.yaml).
    """
    passphrase = sae_passphrase or community.sae_passphrase
    if not passphrase:
        raise ValueError(f"{node.hostname}: no mesh passphrase to render the wireless config")
    if node_key.public != node.key:
        raise ValueError(f"{node.hostname}: the key file does not match the registry")
    bands = node_bands(community, profile)
    packages = [
        _network(community, node, bands, passphrase),
        _wireless(community, node, bands, profile, passphrase),
        firewall(community, node, bands),
        dhcp(community, node, bands),
    ]
    if community.routing == "babel":
        packages.append(_babeld(community, node, bands))
    packages.append(_dropbear())
    # wireless holds the mesh passphrase: owner only, like the node key.
    files: dict[str, BundleFile] = {
        f"{APPLY_SRC.lstrip('/')}/{p.name}": BundleFile(
            uci.dumps(p).encode(), 0o600 if p.name == "wireless" else 0o644
        )
        for p in packages
    }
    files["etc/config/meshd"] = BundleFile(uci.dumps(_meshd(community, node, bands)).encode())
    files["etc/meshd/node.key"] = BundleFile(
        (KEY_HEADER + node_key.seed_text + "\n").encode(), 0o600
    )
    files["etc/meshd/cert.json"] = BundleFile(
        (json.dumps(node.cert.to_json(), indent=2, sort_keys=True) + "\n").encode()
    )
    # JSON, the canonical form admins sign (meshd.trust.community_message covers the parsed
    # content, not the YAML text): it verifies as the YAML does, and the router needs no PyYAML.
    files["etc/meshd/community.json"] = BundleFile(
        canonical_json(dict(community_data)) + b"\n", 0o600
    )
    files["etc/meshd/trust.json"] = BundleFile(
        (json.dumps(pin.to_json(), indent=2, sort_keys=True) + "\n").encode()
    )
    # dropbear on OpenWrt reads root's keys from here; 0600 like ~/.ssh/authorized_keys.
    files["etc/dropbear/authorized_keys"] = BundleFile(
        "".join(f"{line}\n" for line in admin_ssh_keys(community_data)).encode(), 0o600
    )
    files["etc/mosquitto/mosquitto.conf"] = BundleFile(_mosquitto(community, node).encode())
    files["etc/mosquitto/meshd-local.acl"] = BundleFile(b"topic readwrite mesh/v1/#\n")
    # Neighbours only read: records, and the pushes the agent addresses to each of them on
    # `_push/<id>`/`_ctl/<id>` (docs/protocol.md §8.3); nobody on the mesh writes here.
    c = community.name
    files["etc/mosquitto/meshd-mesh.acl"] = BundleFile(f"topic read mesh/v1/{c}/#\n".encode())
    # mosquitto binds to the router address before Wi-Fi is up.
    files["etc/sysctl.d/90-meshd.conf"] = BundleFile(
        b"net.ipv4.ip_nonlocal_bind=1\nnet.ipv6.ip_nonlocal_bind=1\n"
    )
    files["etc/uci-defaults/90-meshd-node"] = BundleFile(UCI_DEFAULTS.encode(), 0o755)
    if community.routing == "batman-adv":
        files["etc/meshd/bridge-filter.nft"] = BundleFile(_bridge_filter().encode())
    return files


#: Every package `node image` may add to the Image Builder's defaults, and why (a leading '-'
#: removes one). tests/unit/test_openwrt_feed.py checks each exists upstream on every release.
EXTRA_IMAGE_PACKAGES: dict[str, str] = {
    "meshd": "the agent (this feed)",
    "mosquitto-nossl": "each node's broker; the mesh's MQTT is plain TCP",
    "ip-full": "`ip -j` for per-station accounting; BusyBox ip has no -j",
    "babeld": "routing, babel communities",
    "kmod-batman-adv": "routing, batman-adv communities",
    "batctl-default": "batman-adv neighbour and originator tables",
    "kmod-nft-bridge": "the bridge filter keeping clients' DHCP and RAs off bat0",
    "-wpad-basic-mbedtls": "the default wpad has no 802.11s",
    "wpad-mesh-mbedtls": "802.11s with SAE",
}


def image_packages(community: Community, node: NodeEntry) -> list[str]:
    """Packages to add to the Image Builder's defaults (a leading '-' removes one)."""
    routing = (
        ["babeld"]
        if community.routing == "babel"
        else ["kmod-batman-adv", "batctl-default", "kmod-nft-bridge"]
    )
    return [
        "meshd",
        "mosquitto-nossl",
        "ip-full",
        *routing,
        "-wpad-basic-mbedtls",
        "wpad-mesh-mbedtls",
    ]
