"""MQTT topic names: one retained message per (node, kind), so a broker holds a store."""

from __future__ import annotations

from meshd.ids import is_node_id
from meshd.records import Kind

ROOT = "mesh/v1"
REVOCATIONS = "_revocations"
STATUS = "status"
#: Replication at scale (docs/protocol.md §8): a relay publishes, not retained, into its
#: neighbour's broker: full records on `_push/<sender>`, header batches, digests, pulls and
#: prune/graft on `_ctl/<sender>`; `parse_topic` gives (community, `_push`|`_ctl`, sender).
PUSH = "_push"
CONTROL = "_ctl"


def record_topic(community: str, node_id: str, kind: Kind) -> str:
    return f"{ROOT}/{community}/{node_id}/{kind.value}"


#: The retained status a push-replication agent publishes instead of `online`: a neighbour that
#: reads plain `online` (or nothing) there runs v1 flooding and is read as a flooding link.
ONLINE_PUSH = b"online push"


def status_topic(community: str, node_id: str) -> str:
    """Retained `online` (or `online push`) / `offline` status; `offline` is also the MQTT
    last will."""
    return f"{ROOT}/{community}/{node_id}/{STATUS}"


def revocation_topic(community: str, node_id: str) -> str:
    return f"{ROOT}/{community}/{REVOCATIONS}/{node_id}"


def push_topic(community: str, sender: str) -> str:
    return f"{ROOT}/{community}/{PUSH}/{sender}"


def control_topic(community: str, sender: str) -> str:
    return f"{ROOT}/{community}/{CONTROL}/{sender}"


def community_filter(community: str) -> str:
    """Subscribe to everything of one community (records, statuses, revocations)."""
    return f"{ROOT}/{community}/#"


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """(community, node_id or `_revocations`/`_push`/`_ctl`, kind or status or node_id) or None
    if foreign: anything else, or a sender that is not a node id, is refused."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        return None
    community, middle, last = parts[2], parts[3], parts[4]
    if middle in (REVOCATIONS, PUSH, CONTROL):
        return (community, middle, last) if is_node_id(last) else None
    if not is_node_id(middle):
        return None
    if last != STATUS and last not in {k.value for k in Kind}:
        return None
    return community, middle, last
