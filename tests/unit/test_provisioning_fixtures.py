"""Fixed inputs for rendering tests: the same keys, community and nodes on every run."""

from __future__ import annotations

from typing import Any

from meshd.ids import SigningKey
from meshd.trust import Enrollment
from provisioning.addresses import AddressPlan
from provisioning.community import check, sign
from provisioning.nodes import NodeEntry
from provisioning.profiles import lookup
from provisioning.trustchain import Pin, propose

ADMIN = SigningKey(bytes(range(32)))
NODE_KEYS = {"bakery": SigningKey(bytes([7]) * 32), "library": SigningKey(bytes([9]) * 32)}


#: A well-formed ed25519 public key line (key bytes 0..31): not anyone's real key.
ADA_SSH = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f ada@laptop"
)


def community_data(routing: str = "babel") -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "riverside",
        "mesh_id": "riverside",
        "radio": {
            "country": "DE",
            "sae_passphrase": 'it\'s a \\ "tricky" pass',
            "bands": {
                "2g": {"channel": 6, "htmode": "HT20"},
                "5g": {"channel": 36, "htmode": "VHT80"},
            },
        },
        "ipv4": {"prefix": "10.174.0.0/16"},
        "ipv6": {"prefix": "fd12:3456:789a::/48"},
        "routing": {"protocol": routing},
        "mqtt": {"port": 1883},
        "admins": [{"name": "ada", "key": ADMIN.public.text, "ssh_keys": [ADA_SSH]}],
        "threshold": 1,
        "signatures": [],
    }
    return sign(data, ADMIN)


def node(hostname: str, *, gateway: bool, model: str = "cudy_wr3000-v1", routing: str = "babel"):
    community = check(community_data(routing), require_signatures=True)
    plan = AddressPlan(community.ipv4, community.ipv6)
    key = NODE_KEYS[hostname]
    cert = Enrollment.issue(
        ADMIN, community="riverside", hostname=hostname, key=key.public, expires=2_000_000_000
    )
    addresses = plan.allocate(key.public.raw, ())
    uplink = 40_000 if gateway else None
    entry = NodeEntry(hostname, key.public, model, gateway, None, addresses, cert, uplink)
    return community, entry, key, lookup(model)


def pin(routing: str = "babel") -> Pin:
    """The bundle's pin of the fixed community: its genesis, signed by the fixed admin."""
    return Pin.of([propose(community_data(routing), None).signed_by(ADMIN)])
