"""The community file check reports every problem at once, each with its path and a fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshd.community import parse_community
from meshd.errors import CommunityError
from meshd.ids import SigningKey

ADMIN = SigningKey.generate().public.text
GOOD: dict[str, Any] = {
    "name": "riverside",
    "mesh_id": "mm-riverside",
    "radio": {
        "country": "DE",
        "sae_passphrase": "correct horse battery",
        "bands": {"2g": {"channel": 6, "htmode": "HT20"}, "5g": {"channel": 36, "htmode": "VHT80"}},
    },
    "ipv4": {"prefix": "10.42.0.0/16"},
    "ipv6": {"prefix": "fd12:3456:789a::/48"},
    "routing": {"protocol": "babel"},
    "mqtt": {"port": 1883},
    "admins": [{"name": "ana", "key": ADMIN}],
    "threshold": 1,
    "contribution": {"base_share": 0.4, "consumption_share": 0.6},
}


def test_good_file_parses() -> None:
    community = parse_community(copy.deepcopy(GOOD))
    assert community.name == "riverside"
    assert community.bands["5g"].channel == 36
    assert community.trust.threshold == 1
    assert [a.key.text for a in community.admins] == [ADMIN]
    assert community.contribution.consumption_share == 0.6


def test_every_problem_is_reported_with_its_path() -> None:
    bad = copy.deepcopy(GOOD)
    bad["name"] = "River Side"
    bad["radio"]["bands"]["5g"]["channel"] = 6
    bad["ipv4"]["prefix"] = "192.168.1.0/24"
    bad["ipv6"]["prefix"] = "2001:db8::/48"
    bad["routing"]["protocol"] = "olsr"
    bad["admins"].append({"name": "bob", "key": "not-a-key"})
    bad["threshold"] = 5
    bad["colour"] = "blue"
    with pytest.raises(CommunityError) as info:
        parse_community(bad)
    paths = {p.path for p in info.value.problems}
    assert paths == {
        "name",
        "radio.bands.5g.channel",
        "ipv4.prefix",
        "ipv6.prefix",
        "routing.protocol",
        "admins[1].key",
        "threshold",
        "colour",
    }
    assert all(p.fix for p in info.value.problems)


def test_duplicate_admin_key_counts_once() -> None:
    bad = copy.deepcopy(GOOD)
    bad["admins"].append({"name": "ana-again", "key": ADMIN})
    with pytest.raises(CommunityError) as info:
        parse_community(bad)
    assert [p.path for p in info.value.problems] == ["admins[1].key"]


@pytest.mark.parametrize("data", [None, [], "name: x"])
def test_not_a_mapping(data: object) -> None:
    with pytest.raises(CommunityError) as info:
        parse_community(data)
    assert info.value.problems[0].path == "(file)"
