"""The one rule for a node's state, shared by the audit, the CLI views and every export.

"Online" must mean the same on the `nodes` table, in the audit's stale-node finding and on a
meshviewer map, so it is decided here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum

from meshd import defaults
from meshd.topology import MeshView, NodeView


class NodeState(StrEnum):
    ONLINE = "online"
    ISOLATED = "isolated"  # publishing, but no neighbour in the graph
    STALE = "stale"  # no fresh record within the stale threshold
    OFFLINE = "offline"  # its broker's retained status says so

    @property
    def reachable(self) -> bool:
        """Up and publishing: what a map draws as online."""
        return self in (NodeState.ONLINE, NodeState.ISOLATED)


def node_state(
    view: MeshView, nv: NodeView, stale_after_s: float = defaults.STALE_AFTER_S
) -> NodeState:
    if nv.status == "offline":
        return NodeState.OFFLINE
    if view.now - nv.last_seen > stale_after_s:
        return NodeState.STALE
    if not view.neighbours(nv.node_id) and len(view.nodes) > 1:
        return NodeState.ISOLATED
    return NodeState.ONLINE
